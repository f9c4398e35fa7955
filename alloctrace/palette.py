"""One colour per category, shared by the plots and (later) the terminal output.

Hex colours for matplotlib, picked to stay apart for the common kinds of colour blindness
(Okabe-Ito palette); ``ansi`` gives the same colour as a 24-bit terminal escape.
"""

from __future__ import annotations

from typing import Final

CATEGORY_COLORS: Final[dict[str, str]] = {
    "loader": "#0072B2",  # blue
    "allocator": "#D55E00",  # vermillion
    "thread-stack": "#009E73",  # green
    "runtime": "#CC79A7",  # purple
    "user": "#E69F00",  # orange
    "other": "#999999",  # grey
}
UNKNOWN_COLOR: Final = "#555555"


def color(category: str | None) -> str:
    """The hex colour of ``category`` (dark grey for one this table does not know)."""
    return CATEGORY_COLORS.get(category or "", UNKNOWN_COLOR)


def ansi(category: str | None, text: str) -> str:
    """``text`` in the category's colour, as a 24-bit ANSI terminal escape sequence."""
    value = color(category).lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"\x1b[38;2;{red};{green};{blue}m{text}\x1b[0m"
