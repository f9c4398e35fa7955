"""The JSON report: every figure of the text report, as documented by report.schema.json.

``{"format": "alloctrace-report", "version": 1, "report": {...}}`` for one trace and
``{"format": "alloctrace-diff", "version": 1, "diff": {...}}`` for a diff. Sizes are bytes,
times nanoseconds, the fields those of analyzers.summarize.Summary and analyzers.diff.Diff.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Any

from analyzers.diff import Diff
from analyzers.summarize import Summary

VERSION = 1
SCHEMA = "report.schema.json"


def report_object(summary: Summary) -> dict[str, Any]:
    """The JSON object of one trace's report."""
    return {
        "format": "alloctrace-report",
        "version": VERSION,
        "report": dataclasses.asdict(summary),
    }


def diff_object(diff: Diff) -> dict[str, Any]:
    """The JSON object of a diff."""
    return {"format": "alloctrace-diff", "version": VERSION, "diff": dataclasses.asdict(diff)}


def render_report(summary: Summary) -> str:
    """The report of one trace as JSON."""
    return json.dumps(report_object(summary), indent=2) + "\n"


def render_diff(diff: Diff) -> str:
    """A diff as JSON."""
    return json.dumps(diff_object(diff), indent=2) + "\n"


def schema() -> dict[str, Any]:
    """The JSON Schema of both documents (shipped as package data)."""
    text = resources.files("alloctrace.reporters").joinpath(SCHEMA).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
