"""``python -m bench``: every benchmark, one table each (see docs/performance.md)."""

from bench import record

print(record.run())
