"""The text report: what ``alloctrace`` prints on a terminal.

Tables are drawn by tabulate; sentences are wrapped at 100 columns.
"""

from __future__ import annotations

import textwrap

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


def render_report(summary: Summary) -> str:
    """The report of one trace as plain text."""
    return render(report_document(summary))


def render_diff(diff: Diff) -> str:
    """A diff of two or more variants as plain text."""
    return render(diff_document(diff))


def _facts(block: Facts) -> list[str]:
    width = max((len(name) for name, _ in block.pairs), default=0)
    return [f"{name.ljust(width)}  {value}" for name, value in block.pairs]


def _table(block: Table) -> list[str]:
    return table_text(block, "simple").splitlines()


def render(doc: Document) -> str:
    """A laid-out document as text."""
    lines = [doc.title, "=" * len(doc.title), *_facts(doc.facts)]
    for section in doc.sections:
        lines += ["", section.title, "-" * len(section.title)]
        for i, block in enumerate(section.blocks):
            if i:
                lines.append("")
            if isinstance(block, Bullets):
                for item in block.items:
                    lines += textwrap.wrap(item, WIDTH, initial_indent="* ", subsequent_indent="  ")
            elif isinstance(block, Table):
                lines += _table(block)
            elif isinstance(block, Facts):
                lines += _facts(block)
            elif isinstance(block, Note):
                lines += textwrap.wrap(block.text, WIDTH)
    return "\n".join(line.rstrip() for line in lines) + "\n"
