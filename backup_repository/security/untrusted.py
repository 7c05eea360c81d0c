"""Parsing untrusted JSON within bounds: a deeply nested document is refused before the parser recurses into it.

Python's json module recurses once per nesting level; a few kilobytes of ``[[[[...`` make it raise RecursionError.
Every JSON document that comes from a client (login bodies, scopes, token claims) goes through ``load_json``.
"""

import json
import re

#: Deeper than any document of the API needs (a login with a scope nests 4 levels).
MAX_DEPTH = 32

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class TooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, not counting brackets inside strings."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def load_json(text, max_depth: int = MAX_DEPTH):
    """``json.loads`` for untrusted input; raises ValueError (never RecursionError) for anything unacceptable."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if nesting_depth(text) > max_depth:
        raise TooDeep(f"the JSON document is nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # belt and braces: the depth check above should make this unreachable
        raise TooDeep(f"the JSON document is nested deeper than {max_depth} levels") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")
