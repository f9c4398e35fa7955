"""alloctrace: trace a program's memory system calls and explain who made them.

>>> import alloctrace
>>> trace = alloctrace.load("trace.jsonl")
"""

from __future__ import annotations

from alloctrace.api import Trace, load
from tracer.errors import AlloctraceError

__version__ = "0.1.0"
__all__ = ["AlloctraceError", "Trace", "__version__", "load"]
