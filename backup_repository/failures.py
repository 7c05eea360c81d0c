"""The failures of the infrastructure: what db/ and storage/ raise when the database or the store fails, and what
the server's start-up raises when it cannot begin to serve.

They sit below every infrastructure package and beside the domain, never in it: the domain decides and knows no
I/O, so it has no word for a database that went away. ``http/errors.py`` maps each of them to one answer, as it
maps the domain's errors. Their messages go to the log and to an operator, never to a client.
"""


class DatabaseError(Exception):
    """The database cannot be reached or refused an operation; the message says what to check (raised by db/)."""


class DatabaseUnavailable(DatabaseError):
    """The database went away while serving (stopped, restarted, unreachable): answered 503 until it is back."""


class LeaseLost(DatabaseError):
    """An upload's pending row was taken over by the janitor (the upload's lease ran out): the upload may no longer
    register its version (raised by db/, docs/scaling.md#what-is-guaranteed)."""


class StorageError(Exception):
    """The object store cannot be reached or refused an operation (raised by storage/)."""


class StartupError(Exception):
    """The server cannot start: the configuration, the database or the store cannot be opened as configured
    (raised by ``AppContext.open``, from the failure of the step that failed); the message says what to check."""
