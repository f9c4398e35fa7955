"""The text report: what ``alloctrace`` prints on a terminal.

Tables are drawn by tabulate; sentences are wrapped at 100 columns. With ``color`` (the command
decides: a terminal, ``--color``, ``NO_COLOR``), what stands for a category — the category
column of the phase table, the titles of the sections about one category, the headers of the
diff's mmap sources — is drawn in that category's colour (alloctrace.palette, as in the plots).
Without it the output is plain text, byte for byte the same as before colours existed.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace

from alloctrace.palette import ansi
from alloctrace.reporters.layout import (
    Bullets,
    Document,
    Facts,
    Note,
    Table,
    diff_document,
    report_document,
    table_text,
)
from analyzers.diff import Diff
from analyzers.summarize import Summary

WIDTH = 100


def render_report(summary: Summary, color: bool = False) -> str:
    """The report of one trace as text (categories coloured with ``color``)."""
    return render(report_document(summary), color)


def render_diff(diff: Diff, color: bool = False) -> str:
    """A diff of two or more variants as text (categories coloured with ``color``)."""
    return render(diff_document(diff), color)


class TextReporter:
    """The text reporter with colours on or off (what ``reporter(Format.TEXT, color)`` gives)."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def render_report(self, summary: Summary) -> str:
        """The report of one trace."""
        return render_report(summary, self.color)

    def render_diff(self, diff: Diff) -> str:
        """Variants side by side."""
        return render_diff(diff, self.color)


def _facts(block: Facts) -> list[str]:
    width = max((len(name) for name, _ in block.pairs), default=0)
    return [f"{name.ljust(width)}  {value}" for name, value in block.pairs]


def _colored(block: Table) -> Table:
    """``block`` with its category cells and headers wrapped in colour escapes (tabulate
    measures cells without them, so the columns still line up)."""
    column = block.category_column
    rows = [
        [ansi(cell, cell) if i == column and cell else cell for i, cell in enumerate(row)]
        for row in block.rows
    ]
    headers = [
        ansi(block.header_categories[i], h) if i in block.header_categories else h
        for i, h in enumerate(block.headers)
    ]
    return replace(block, rows=rows, headers=headers)


def _table(block: Table, color: bool) -> list[str]:
    return table_text(_colored(block) if color else block, "simple").splitlines()


def _title(text: str, underline: str, category: str | None, color: bool) -> list[str]:
    lines = [text, underline * len(text)]
    if color and category:
        return [ansi(category, line) for line in lines]
    return lines


def render(doc: Document, color: bool = False) -> str:
    """A laid-out document as text; with ``color``, categories in their ANSI colours."""
    lines = [doc.title, "=" * len(doc.title), *_facts(doc.facts)]
    for section in doc.sections:
        lines += ["", *_title(section.title, "-", section.category, color)]
        for i, block in enumerate(section.blocks):
            if i:
                lines.append("")
            if isinstance(block, Bullets):
                for item in block.items:
                    lines += textwrap.wrap(item, WIDTH, initial_indent="* ", subsequent_indent="  ")
            elif isinstance(block, Table):
                lines += _table(block, color)
            elif isinstance(block, Facts):
                lines += _facts(block)
            elif isinstance(block, Note):
                lines += textwrap.wrap(block.text, WIDTH)
    return "\n".join(line.rstrip() for line in lines) + "\n"
