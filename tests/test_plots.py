"""Plots: the address-space map and the upfront-calls chart, rendered to PNG and SVG and checked."""

from __future__ import annotations

import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.patches import Rectangle

import alloctrace
from alloctrace.palette import CATEGORY_COLORS, ansi, color
from alloctrace.plots import Plot, address_map, upfront_calls
from tests.recorded import loaded, trace_file
from tracer.errors import AlloctraceError

DATA = Path(__file__).parent / "data" / "strace"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _pixels_of(path: Path, hex_color: str) -> int:
    """How many pixels of the PNG have exactly this colour."""
    image = matplotlib.image.imread(str(path))[:, :, :3]
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.all(np.abs(image - rgb) < 1 / 255, axis=2).sum())


def _svg_fills(path: Path) -> dict[str, int]:
    """Filled shapes per fill colour in an SVG written by matplotlib."""
    counts: dict[str, int] = {}
    for element in ET.parse(path).getroot().iter():
        style = element.get("style", "")
        for part in style.split(";"):
            key, _, value = part.partition(":")
            if key.strip() == "fill" and value.strip().startswith("#"):
                fill = value.strip().lower()
                counts[fill] = counts.get(fill, 0) + 1
    return counts


def test_address_map_png_has_a_bar_per_mapping(tmp_path: Path) -> None:
    trace = loaded("seed-jemalloc")
    chart = trace.plot()
    bars = [p for p in chart.axes[0].patches if isinstance(p, Rectangle) and p.get_width() > 0]
    lives = trace.lifetimes()
    assert len(bars) == len(lives) == len(trace.mappings)
    out = tmp_path / "map.png"
    chart.save(out)
    width, height = _png_size(out)
    assert width == 1100 and height == round(100 * (1.4 + 0.24 * len(lives)))
    assert out.stat().st_size > 20_000
    # Both categories the trace has are drawn, in proportion: loader bars far outnumber.
    loader = _pixels_of(out, CATEGORY_COLORS["loader"])
    allocator = _pixels_of(out, CATEGORY_COLORS["allocator"])
    assert loader > 20_000 and allocator > 1_000 and loader > allocator
    assert _pixels_of(out, CATEGORY_COLORS["thread-stack"]) == 0
    labels = [t.get_text() for t in chart.axes[0].get_yticklabels()]
    assert any(label.startswith("libjemalloc.so.2 span") for label in labels)
    assert any(label.startswith("jemalloc ") for label in labels)


def test_address_map_svg(tmp_path: Path) -> None:
    trace = loaded("threads", "8")
    out = tmp_path / "map.svg"
    trace.plot().save(out)
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg") and root.get("width") == "792pt"
    fills = _svg_fills(out)
    by_category: dict[str, int] = {}
    for life in trace.lifetimes():
        by_category[life.category] = by_category.get(life.category, 0) + 1
    for category, count in by_category.items():
        # one shape per bar, plus its legend swatch
        assert fills.get(CATEGORY_COLORS[category].lower(), 0) == count + 1, category
    assert out.stat().st_size > 20_000


def test_address_map_limits_and_picks_the_largest() -> None:
    trace = loaded("threads", "8")
    chart = address_map(trace, limit=5)
    assert len(chart.axes[0].patches) == 5
    title = chart.axes[0].get_title()
    assert "the 5 largest of" in title
    sizes = sorted((life.end - life.start for life in trace.lifetimes()), reverse=True)[:5]
    assert min(sizes) >= 64 << 20


def test_address_map_without_timestamps_uses_seq(tmp_path: Path) -> None:
    trace = alloctrace.import_strace(DATA / "article-glibc.log", tmp_path / "t.jsonl")
    chart = trace.plot()
    assert chart.axes[0].get_xlabel() == "event (seq)"
    assert len(chart.axes[0].patches) == 8
    assert chart.to_bytes("png")[:8] == PNG_MAGIC


def test_upfront_chart(tmp_path: Path) -> None:
    glibc, jemalloc = loaded("seed"), loaded("seed-jemalloc")
    chart = glibc.plot_upfront(jemalloc)
    axes = chart.axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == [glibc.label, jemalloc.label]
    totals = {t.get_text().strip() for t in axes.texts}
    assert {str(sum(glibc.upfront().values())), str(sum(jemalloc.upfront().values()))} <= totals
    widths = [
        round(p.get_width()) for p in axes.patches if isinstance(p, Rectangle) and p.get_width()
    ]
    assert sorted(widths) == sorted(n for t in (glibc, jemalloc) for n in t.upfront().values() if n)
    out = tmp_path / "upfront.svg"
    chart.save(out)
    fills = _svg_fills(out)
    assert fills.get(CATEGORY_COLORS["allocator"].lower(), 0) >= 2  # a segment and its swatch
    png = tmp_path / "upfront.png"
    upfront_calls([glibc, jemalloc], labels=["glibc", "jemalloc"]).save(png)
    assert _png_size(png)[0] == 1100 and _pixels_of(png, CATEGORY_COLORS["allocator"]) > 500


def test_plot_shows_itself_in_a_notebook() -> None:
    chart = loaded("seed").plot()
    assert isinstance(chart, Plot)
    assert chart._repr_png_()[:8] == PNG_MAGIC
    assert b"<svg" in chart.to_bytes("svg")


def test_save_rejects_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(AlloctraceError, match=r"cannot plot to \.gif"):
        loaded("seed").plot().save(tmp_path / "x.gif")


def test_cli_plot(tmp_path: Path) -> None:
    def plot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alloctrace", "plot", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    seed = str(trace_file("seed"))
    jemalloc = str(trace_file("seed-jemalloc"))
    ok = plot(seed, "-o", str(tmp_path / "map.svg"))
    assert ok.returncode == 0, ok.stderr
    assert ET.parse(tmp_path / "map.svg").getroot().tag.endswith("svg")
    ok = plot(seed, jemalloc, "-o", str(tmp_path / "up.png"))
    assert ok.returncode == 0 and _png_size(tmp_path / "up.png")[0] == 1100
    bad = plot(seed, "-o", str(tmp_path / "x.bmp"))
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1
    assert "cannot plot to .bmp" in bad.stderr
    two = plot(seed, jemalloc, "--kind", "map", "-o", str(tmp_path / "x.png"))
    assert two.returncode != 0 and "draws one trace" in two.stderr


def test_palette() -> None:
    assert color("loader") == CATEGORY_COLORS["loader"] and color("nonsense").startswith("#")
    assert ansi("allocator", "x") == "\x1b[38;2;213;94;0mx\x1b[0m"
    assert len(set(CATEGORY_COLORS.values())) == len(CATEGORY_COLORS)


def test_a_trace_without_calls_still_draws(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(
        '{"kind":"header","format":"alloctrace","version":1,"program":"x","argv":["x"]}\n'
        '{"kind":"footer","outcome":"exited","duration_ns":0,"events":0,"status":0}\n'
    )
    trace = alloctrace.load(path)
    assert list(trace.mappings.columns)[:3] == ["pid", "start", "end"] and trace.mappings.empty
    assert trace.events.empty and len(trace.events.columns) == 34
    chart = trace.plot()
    assert [t.get_text() for t in chart.axes[0].texts] == ["no mappings"]
    chart.save(tmp_path / "empty.png")
    trace.plot_upfront(trace, labels=["a", "b"]).save(tmp_path / "empty.svg")
    assert _png_size(tmp_path / "empty.png")[0] == 1100
