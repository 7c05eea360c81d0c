"""Documentation moves with the code: every flag and variable is documented."""

from backup_repository.settings import OPTIONS
from tests.support import ROOT


def test_every_flag_and_variable_is_in_the_configuration_docs():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for option in OPTIONS:
        assert f"`{', '.join(option.flags)}`" in text, option.flags
        if option.env:
            assert f"`{option.env}`" in text, option.env
    for command in ("--encode-password", "--hash-jwt", "--validate-config"):
        assert command in text


def test_every_test_named_in_the_security_docs_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    named = set(re.findall(r"`(test_\w+)`", (root / "docs" / "security.md").read_text()))
    defined = set()
    for path in (root / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text(), re.M))
    assert named and not named - defined, sorted(named - defined)


def test_every_test_named_in_the_scaling_docs_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    named = set(re.findall(r"`(test_\w+)`", (root / "docs" / "scaling.md").read_text()))
    source = "".join(path.read_text() for path in (root / "tests" / "integration").glob("test_*.py"))
    missing = {name for name in named if f"def {name}(" not in source}
    assert named and not missing, missing
