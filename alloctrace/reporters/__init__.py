"""Reporters: each module turns what the library computed into one output format."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from analyzers.diff import Diff
    from analyzers.summarize import Summary


class Format(enum.StrEnum):
    """The output formats of ``--format``."""

    TEXT = "text"
    MARKDOWN = "markdown"
    JSON = "json"


class Reporter(Protocol):
    """What every output module provides (alloctrace/reporters/text.py, markdown.py, json.py)."""

    def render_report(self, summary: Summary) -> str:
        """The report of one trace."""

    def render_diff(self, diff: Diff) -> str:
        """Variants side by side."""


def reporter(fmt: Format | str, color: bool = False) -> Reporter:
    """What writes ``fmt`` (imported only when asked for). ``color``: category colours in the
    text format (ANSI escapes, for a terminal); markdown and JSON are never coloured."""
    chosen = Format(fmt)
    if chosen is Format.MARKDOWN:
        from alloctrace.reporters import markdown

        return markdown
    if chosen is Format.JSON:
        from alloctrace.reporters import json

        return json
    from alloctrace.reporters import text

    return text.TextReporter(color)
