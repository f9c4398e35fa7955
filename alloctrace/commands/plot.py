"""``alloctrace plot``: the address-space map of a trace, or upfront calls of several, to a file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import fail
from tracer.errors import AlloctraceError

KINDS = ("map", "upfront")


def plot(
    traces: Annotated[
        list[Path],
        typer.Argument(help="One trace (address-space map) or several (upfront calls compared)."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="out.png, out.svg or out.pdf.")],
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            metavar="map|upfront",
            help="map: each mapping a bar over time (default for one trace); upfront: calls "
            "before main per category, one bar per trace (default for several).",
        ),
    ] = None,
    pid: Annotated[
        int | None, typer.Option("--pid", help="The process to map (default: the first).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Map at most this many (largest) mappings.")
    ] = 60,
) -> None:
    """Draw a trace's address space, or compare several traces.

    One trace: each mapping as a bar over time. Several: their calls before main, per category.
    PNG, SVG or PDF, by the output's extension; bars are coloured by category, as the text
    report is on a terminal. Needs matplotlib: pip install 'alloctrace[notebook]'.

    Examples:

    \b
        # Each mapping of the seed fixture as a bar over time, in address order
        alloctrace plot seed.jsonl -o seed.svg
        # Calls before main per category, one bar per trace
        alloctrace plot glibc.jsonl jemalloc.jsonl -o upfront.png
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise fail("plots need matplotlib: pip install 'alloctrace[notebook]'")
    chosen = kind or ("map" if len(traces) == 1 else "upfront")
    if chosen not in KINDS:
        raise fail(f"--kind {chosen}: choose {' or '.join(KINDS)}")
    if chosen == "map" and len(traces) != 1:
        raise fail("--kind map draws one trace; give one, or use --kind upfront")
    from alloctrace.api import load
    from alloctrace.plots import address_map, upfront_calls

    try:
        loaded = [load(t) for t in traces]
        if chosen == "map":
            chart = address_map(loaded[0], pid=pid, limit=limit)
        else:
            chart = upfront_calls(loaded)
        chart.save(output)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"alloctrace: {chosen} written to {output}", err=True)
