"""``alloctrace allocators``: the malloc implementations this machine has, to use with
``--allocator``. Also how ``--allocator NAME|PATH`` becomes the environment of a run.

glibc's malloc is always there (nothing to inject). The others are found at their standard
library paths (Debian: libjemalloc2, libtcmalloc-minimal4, libmimalloc2.0); any path to a shared
object also works, and is injected the same way, with ``LD_PRELOAD``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import fail
from tracer.errors import AlloctraceError

LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/lib",
)
# name -> library file names to look for, preferred first.
KNOWN: dict[str, tuple[str, ...]] = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc.so"),
}
GLIBC = "glibc"
_ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class AllocatorLibrary:
    """A malloc this machine can run a program with."""

    name: str
    path: str | None  # the library to preload; None for glibc (the default malloc)
    version: str | None

    @property
    def preload(self) -> str | None:
        """The LD_PRELOAD value that injects it (None: nothing to inject)."""
        return self.path


def _glibc() -> AllocatorLibrary:
    version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    match = re.search(r"(\d+\.\d+)", version)
    return AllocatorLibrary(GLIBC, None, match.group(1) if match else None)


def _find(names: tuple[str, ...]) -> str | None:
    for directory in LIBRARY_DIRS:
        for name in names:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def libc_path() -> str | None:
    """Where glibc's malloc lives (libc.so.6), for the listing."""
    return _find(("libc.so.6",))


def identify(path: str) -> tuple[str, str | None] | None:
    """(name, version) of a known allocator library (analyzers/allocators.py, loaded lazily)."""
    from analyzers.allocators import identify as identify_library

    return identify_library(path)


def available() -> list[AllocatorLibrary]:
    """glibc, then every known allocator found at its standard path."""
    out = [_glibc()]
    for name, files in KNOWN.items():
        path = _find(files)
        if path is not None:
            found = identify(path)
            out.append(AllocatorLibrary(name, path, found[1] if found else None))
    return out


def resolve(spec: str) -> AllocatorLibrary:
    """``glibc``, a known name (``jemalloc``) or a path to a shared object."""
    if spec == GLIBC:
        return _glibc()
    if spec in KNOWN:
        path = _find(KNOWN[spec])
        if path is None:
            wanted = " or ".join(KNOWN[spec])
            raise AlloctraceError(f"--allocator {spec}: {wanted} not found in {LIBRARY_DIRS[0]}")
        found = identify(path)
        return AllocatorLibrary(spec, path, found[1] if found else None)
    if "/" not in spec and not spec.endswith(".so") and ".so." not in spec:
        names = ", ".join([GLIBC, *KNOWN])
        raise AlloctraceError(f"--allocator {spec}: unknown allocator (known: {names}, or a path)")
    library = Path(spec)
    try:
        with library.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise AlloctraceError(f"--allocator {spec}: {exc.strerror}") from exc
    if magic != _ELF_MAGIC:
        raise AlloctraceError(f"--allocator {spec}: not a shared object (no ELF header)")
    absolute = str(library.resolve())
    found = identify(absolute)
    name = found[0] if found else re.sub(r"^lib|\.so.*$", "", library.name) or library.name
    return AllocatorLibrary(name, absolute, found[1] if found else None)


def environment(allocator: AllocatorLibrary | None, base: dict[str, str]) -> dict[str, str]:
    """``base`` with LD_PRELOAD set to inject ``allocator`` (removed for glibc)."""
    env = dict(base)
    if allocator is None:
        return env
    env.pop("LD_PRELOAD", None)
    if allocator.preload is not None:
        env["LD_PRELOAD"] = allocator.preload
    return env


def allocators() -> None:
    """List the malloc implementations usable with --allocator.

    Any path to a shared object also works as --allocator; it is injected with LD_PRELOAD.

    Examples:

    \b
        alloctrace allocators
        # Trace the seed fixture under one of them, by name...
        alloctrace --allocator tcmalloc -o tcmalloc.jsonl -- fixtures/build/seed
        # ...or by the path of its library
        alloctrace --allocator /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 \\
            fixtures/build/seed
    """
    from tabulate import tabulate

    rows = []
    for found in available():
        path = found.path or f"{libc_path() or 'libc.so.6'} (the default; nothing injected)"
        rows.append([found.name, path, found.version or "?"])
    typer.echo(tabulate(rows, headers=["name", "library", "version"], tablefmt="simple"))


def check_allocator(spec: str | None) -> AllocatorLibrary | None:
    """Resolve ``--allocator`` for a command: one ``alloctrace: ...`` line when it is wrong."""
    if spec is None:
        return None
    try:
        return resolve(spec)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None


AllocatorOption = Annotated[
    str | None,
    typer.Option(
        "--allocator",
        metavar="NAME|PATH",
        help="Run with this malloc: glibc, jemalloc, tcmalloc, mimalloc (see `alloctrace "
        "allocators`) or a path to a shared object, injected with LD_PRELOAD.",
    ),
]
