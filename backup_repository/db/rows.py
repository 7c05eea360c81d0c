"""What the parts of the repository stand on, the same on both backends: the primitives a backend offers them
(``Primitives``: SQL in the ``%s`` parameter style) and what a row's values come back as."""

from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from typing import Any, Optional, Protocol, Sequence, overload


class Statements(Protocol):
    """Statements run one by one (each in a transaction of its own), or inside ``Primitives.transaction()``."""

    async def execute(self, sql: str, params: Sequence = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def fetchone(self, sql: str, params: Sequence = ()) -> Any:
        """The first row of a query (a tuple of its values), or None."""
        ...

    async def fetchall(self, sql: str, params: Sequence = ()) -> list:
        """Every row of a query."""
        ...


class Primitives(Statements, Protocol):
    """A backend's primitives: statements, and ``async with db.transaction() as tx`` for several in one."""

    def transaction(self) -> AbstractAsyncContextManager[Statements]:
        ...


@overload
def timestamp(value: None) -> None: ...
@overload
def timestamp(value: datetime | str) -> datetime: ...


def timestamp(value: Optional[datetime | str]) -> Optional[datetime]:
    """A time as an aware datetime: aggregates lose SQLite's column type, so MAX() of a timestamp comes back as its
    text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value
