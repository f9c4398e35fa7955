"""alloctrace: trace a program's memory system calls and explain who made them.

>>> import alloctrace
>>> trace = alloctrace.load("trace.jsonl")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracer.errors import AlloctraceError

if TYPE_CHECKING:
    from alloctrace.api import Trace, import_strace, load, run

__version__ = "0.1.0"
__all__ = ["AlloctraceError", "Trace", "__version__", "import_strace", "load", "run"]

# The library face loads on first use, so `import alloctrace` (and every CLI start, which
# imports this package) does not pay for pyelftools, the demangler or pandas.
_LAZY = frozenset({"Trace", "import_strace", "load", "run"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from alloctrace import api

        return getattr(api, name)
    raise AttributeError(f"module 'alloctrace' has no attribute {name!r}")
