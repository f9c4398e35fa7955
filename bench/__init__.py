"""Benchmarks: every figure is a ratio against a reference run measured in the same run."""
