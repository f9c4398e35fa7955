"""The markdown report: the same sections as the text report, as GitHub-flavoured markdown."""

from __future__ import annotations

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


def render_report(summary: Summary) -> str:
    """The report of one trace as markdown."""
    return render(report_document(summary))


def render_diff(diff: Diff) -> str:
    """A diff of two or more variants as markdown."""
    return render(diff_document(diff))


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def _table(block: Table) -> list[str]:
    return table_text(block, "pipe", escape="|").splitlines()


def _facts(block: Facts) -> list[str]:
    return [f"- **{name}**: {_escape(value)}" for name, value in block.pairs]


def render(doc: Document) -> str:
    """A laid-out document as markdown."""
    lines = [f"# {doc.title}", "", *_facts(doc.facts)]
    for section in doc.sections:
        lines += ["", f"## {section.title}"]
        for block in section.blocks:
            lines.append("")
            if isinstance(block, Bullets):
                lines += [f"- {item}" for item in block.items]
            elif isinstance(block, Table):
                lines += _table(block)
            elif isinstance(block, Facts):
                lines += _facts(block)
            elif isinstance(block, Note):
                lines.append(block.text)
    return "\n".join(line.rstrip() for line in lines) + "\n"
