"""Pure functions over recorded traces: symbols, classification, summaries, diffs."""
