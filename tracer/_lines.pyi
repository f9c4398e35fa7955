"""tracer/_lines.c: the line scan of the trace reader (tracer.traceformat)."""

def scan(
    chunk: bytes | bytearray, start: int, stop: int, prefix: bytes, /
) -> tuple[list[int], list[int], int]:
    """Of the lines of chunk[start:stop]: where each line that does not begin with prefix
    starts, its number (0 for the first line), and how many lines end with a newline."""
