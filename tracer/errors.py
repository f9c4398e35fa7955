"""The one error type alloctrace raises for bad input, and its trace-file flavour."""

from __future__ import annotations


class AlloctraceError(Exception):
    """Bad input or an unusable environment: the message is one line meant for the user."""


class TraceFormatError(AlloctraceError):
    """A trace file that cannot be read: names the file, the line and what is wrong."""

    def __init__(self, path: str, line: int | None, why: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {why}")
        self.path = path
        self.line = line
        self.why = why


def not_built(what: str) -> AlloctraceError:
    """The error for a C part the install did not compile (``what``: its source, and where it
    was looked for): one line, naming the fix."""
    return AlloctraceError(
        f"{what} is not built: reinstall alloctrace "
        "(`make setup`, or `pip install -e .` in the repository)"
    )
