"""The ground floor: everything that produces a trace, and the trace format itself."""
