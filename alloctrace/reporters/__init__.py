"""Reporters: each module turns what the library computed into one output format."""
