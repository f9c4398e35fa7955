"""Plots of a trace (matplotlib, Agg; never pyplot, so no global state is touched).

* ``address_map``: each mapping a horizontal bar from the call that created it to the one that
  removed it, in address order, coloured by category (alloctrace.palette) and labelled by the
  object it maps or its owner and role.
* ``upfront_calls``: the calls made before ``main``, per category, one stacked bar per trace —
  what a diff of allocators shows at a glance.

Both return a Plot: it shows itself in a notebook (PNG) and saves as PNG or SVG.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from alloctrace.palette import CATEGORY_COLORS, color
from tracer.errors import AlloctraceError

if TYPE_CHECKING:
    from alloctrace.api import Trace
    from alloctrace.mappings import Lifetime

FORMATS = ("png", "svg", "pdf")
_WIDTH = 11.0  # inches
_ROW = 0.24  # inches per bar
_DPI = 100


class Plot:
    """A rendered chart: ``figure`` and ``axes`` to adjust, ``save`` to write it."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.axes = figure.axes

    def save(self, path: str | os.PathLike[str], dpi: int = _DPI) -> None:
        """Write the chart; the format comes from the extension (.png, .svg, .pdf)."""
        name = os.fspath(path)
        fmt = os.path.splitext(name)[1].lower().lstrip(".")
        if fmt not in FORMATS:
            raise AlloctraceError(f"{name}: cannot plot to .{fmt} (use .png, .svg or .pdf)")
        try:
            self.figure.savefig(name, format=fmt, dpi=dpi)
        except OSError as exc:
            raise AlloctraceError(f"cannot write {name}: {exc.strerror or exc}") from exc

    def to_bytes(self, fmt: str = "png", dpi: int = _DPI) -> bytes:
        """The chart as PNG, SVG or PDF bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format=fmt, dpi=dpi)
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.to_bytes("png")


def _figure(rows: int, ax: Any) -> tuple[Figure, Any]:
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=(_WIDTH, 1.4 + _ROW * max(rows, 3)), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _size(n: int) -> str:
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= unit:
            value = n / unit
            return f"{value:.0f} {name}" if value == int(value) else f"{value:.1f} {name}"
    return f"{n} B"


def _label(life: Lifetime) -> str:
    if life.object and life.category == "loader":
        what = os.path.basename(life.object) + (f" {life.segment}" if life.segment else "")
    elif life.syscall == "brk":
        what = f"{life.owner} heap (brk)"
    else:
        what = f"{life.owner} {life.role}"
    if len(what) > 40:
        what = what[:39] + "…"
    return f"{what}  {_size(life.end - life.start)}"


def address_map(trace: Trace, pid: int | None = None, limit: int = 60, ax: Any = None) -> Plot:
    """Each mapping of process ``pid`` (default: the first) as a bar over time, by address.

    With more than ``limit`` mappings, the ``limit`` largest are drawn (the title says so).
    Time is in ms when the trace has timestamps, else in event numbers (``seq``).
    """
    lives = trace.lifetimes()
    pids = list(dict.fromkeys(life.pid for life in lives))
    if pid is None:
        pid = pids[0] if pids else None
    mine = [life for life in lives if life.pid == pid]
    total = len(mine)
    if total > limit:
        mine = sorted(mine, key=lambda life: life.end - life.start, reverse=True)[:limit]
    mine.sort(key=lambda life: (life.start, life.created_seq))
    events = trace.records
    timed = any(e.ts_ns for e in events)
    scale = 1e6 if timed else 1.0

    def x_of(seq: int | None, ns: int | None) -> float:
        return (ns or 0) / scale if timed else float(seq or 0)

    last = events[-1] if events else None
    end_x = x_of(last.seq, last.ts_ns) if last is not None else 1.0
    start_x = x_of(events[0].seq, events[0].ts_ns) if events else 0.0
    minimum = max(end_x - start_x, 1e-9) * 0.004
    figure, axes = _figure(len(mine), ax)
    ys = list(range(len(mine)))
    lefts = [x_of(life.created_seq, life.created_ns) for life in mine]
    rights = [
        end_x if life.removed_seq is None else x_of(life.removed_seq, life.removed_ns)
        for life in mine
    ]
    widths = [max(r - left, minimum) for left, r in zip(lefts, rights, strict=True)]
    colors = [color(life.category) for life in mine]
    axes.barh(ys, widths, left=lefts, color=colors, height=0.72, linewidth=0)
    axes.set_yticks(ys, [_label(life) for life in mine], fontsize=7)
    axes.set_ylim(max(len(mine), 1) - 0.5, -0.5)  # low addresses at the top, as in /proc/PID/maps
    if not mine:
        axes.text(0.5, 0.5, "no mappings", transform=axes.transAxes, ha="center", va="center")
    axes.set_xlabel("time since the trace started (ms)" if timed else "event (seq)")
    shown = (
        f"the {len(mine)} largest of {total} mappings"
        if total > len(mine)
        else (f"{total} mappings")
    )
    program = os.path.basename(trace.header.program) or os.path.basename(trace.path)
    axes.set_title(f"Address space of {program} (pid {pid}): {shown}, in address order")
    present = [c for c in CATEGORY_COLORS if any(life.category == c for life in mine)]
    present += sorted({life.category for life in mine} - set(present))
    if present:
        axes.legend(
            handles=[Patch(color=color(c), label=c) for c in present],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            fontsize=8,
        )
    axes.grid(axis="x", alpha=0.3)
    return Plot(figure)


def upfront_calls(
    traces: Sequence[Trace], labels: Sequence[str] | None = None, ax: Any = None
) -> Plot:
    """Calls made before ``main`` per category: one stacked bar per trace (first on top)."""
    from alloctrace.api import _unique_labels

    names = _unique_labels(list(traces), labels)
    counts = [t.upfront() for t in traces]
    categories = [c for c in CATEGORY_COLORS if any(c in n for n in counts)]
    categories += sorted({c for n in counts for c in n} - set(categories))
    figure, axes = _figure(len(traces) * 2, ax)
    ys = list(range(len(traces)))
    lefts = [0] * len(traces)
    for category in categories:
        values = [n.get(category, 0) for n in counts]
        bars = axes.barh(ys, values, left=lefts, color=color(category), label=category, height=0.6)
        labels_in = [str(v) if v else "" for v in values]
        axes.bar_label(bars, labels=labels_in, label_type="center", fontsize=8, color="white")
        lefts = [left + v for left, v in zip(lefts, values, strict=True)]
    for y, total in zip(ys, lefts, strict=True):
        axes.text(total, y, f"  {total}", va="center", fontsize=9)
    axes.set_yticks(ys, names)
    axes.set_ylim(len(traces) - 0.5, -0.5)
    axes.set_xlim(0, max([*lefts, 1]) * 1.12)
    axes.set_xlabel("memory syscalls before main")
    axes.set_title("Upfront cost: calls before main, by category")
    if categories:
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    return Plot(figure)
