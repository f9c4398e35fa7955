"""Classification rules as data: loading the TOML rule files and matching frames against them."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.errors import AlloctraceError

_DEFAULT = Path(__file__).parent / "rules" / "default.toml"
EXE = "{exe}"  # in `objects`: the process's own executable
# in `objects`: the executable when statically linked, so carrying that libc
STATIC_EXES = {"{static-glibc}": "glibc", "{static-musl}": "musl"}


class Globs:
    """Shell globs, matched as one regular expression compiled when first needed.

    A trace's stacks reach few of the rules' roles and contexts: 22 to 40 of the default rules'
    58 patterns get compiled for the traces measured, which takes 7% off analysing the 106 calls
    of ``python3 -c "import json"`` (instructions counted).
    """

    __slots__ = ("_regex", "globs")

    def __init__(self, globs: tuple[str, ...]) -> None:
        self.globs = globs
        self._regex: re.Pattern[str] | None = None

    def fullmatch(self, text: str) -> bool:
        """Does ``text`` match one of the globs, whole?"""
        if self._regex is None:
            self._regex = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in self.globs))
        return self._regex.fullmatch(text) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Globs) and other.globs == self.globs

    def __hash__(self) -> int:
        return hash(self.globs)

    def __repr__(self) -> str:
        return f"Globs({self.globs!r})"


def _pattern(globs: list[str]) -> Globs | None:
    return Globs(tuple(globs)) if globs else None


@dataclass(frozen=True)
class Role:
    """A role within a rule: chosen when a stack frame and the syscall match."""

    name: str
    functions: Globs | None
    syscalls: frozenset[str]


@dataclass(frozen=True)
class Rule:
    """One ordered rule: which decider frames it claims and what it calls them."""

    id: str
    category: str
    owner: str
    role: str
    objects: Globs | None
    exe: bool  # `objects` includes {exe}
    static_libcs: frozenset[str]  # `objects` includes {static-glibc} or {static-musl}
    functions: Globs | None
    context: Globs | None
    roles: tuple[Role, ...]
    source: str
    unnamed: bool = False  # claims only frames without a function name (stripped code)
    defer: bool = False  # the frame cannot tell: leave the event to region and heuristics

    def claims(
        self, object_name: str, is_exe: bool, function: str | None, static: str | None = None
    ) -> bool:
        """Does the decider frame (object file name, function) belong to this rule?
        ``static``: the libc ("glibc", "musl") of the statically linked executable the frame
        is in."""
        if self.unnamed and function is not None:
            return False
        if self.objects is not None or self.exe or self.static_libcs:
            in_objects = self.objects is not None and self.objects.fullmatch(object_name)
            static_exe = is_exe and static in self.static_libcs
            if not (in_objects or (is_exe and self.exe) or static_exe):
                return False
        if self.functions is not None:
            return function is not None and self.functions.fullmatch(function)
        return True


@dataclass(frozen=True)
class RuleSet:
    """Wrappers to skip and the ordered rules."""

    wrappers: frozenset[str]
    rules: tuple[Rule, ...]

    def extended(self, other: RuleSet) -> RuleSet:
        """User rules go first, so they can override the defaults."""
        return RuleSet(self.wrappers | other.wrappers, other.rules + self.rules)


def _strings(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AlloctraceError(f"{where}: `{key}` must be a list of strings")
    return value


def parse_rules(text: str, source: str) -> RuleSet:
    """Rules from TOML text; a malformed file is one AlloctraceError naming it."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AlloctraceError(f"{source}: not valid TOML ({exc})") from exc
    wrappers = frozenset(_strings(doc.get("wrappers", {}), "functions", f"{source} [wrappers]"))
    rules = []
    for i, table in enumerate(doc.get("rule", [])):
        where = f"{source} rule {i + 1}"
        missing = [k for k in ("id", "category", "owner", "role") if k not in table]
        if missing:
            raise AlloctraceError(f"{where}: missing {', '.join(missing)}")
        objects = _strings(table, "objects", where)
        roles = tuple(
            Role(
                str(r["role"]),
                _pattern(_strings(r, "functions", where)),
                frozenset(_strings(r, "syscalls", where)),
            )
            for r in table.get("roles", [])
        )
        rules.append(
            Rule(
                id=str(table["id"]),
                category=str(table["category"]),
                owner=str(table["owner"]),
                role=str(table["role"]),
                objects=_pattern([o for o in objects if o != EXE and o not in STATIC_EXES]),
                exe=EXE in objects,
                static_libcs=frozenset(STATIC_EXES[o] for o in objects if o in STATIC_EXES),
                functions=_pattern(_strings(table, "functions", where)),
                context=_pattern(_strings(table, "context", where)),
                roles=roles,
                source=source,
                unnamed=bool(table.get("unnamed", False)),
                defer=bool(table.get("defer", False)),
            )
        )
    return RuleSet(wrappers, tuple(rules))


def default_rules() -> RuleSet:
    """The rules shipped with alloctrace (analyzers/rules/default.toml)."""
    return parse_rules(_DEFAULT.read_text(), "default.toml")


def load_rules(paths: list[Path]) -> RuleSet:
    """The default rules extended by user rule files (``--rules FILE``), theirs first."""
    ruleset = default_rules()
    for path in paths:
        try:
            text = path.read_text()
        except OSError as exc:
            raise AlloctraceError(f"{path}: cannot read rules ({exc.strerror})") from exc
        ruleset = ruleset.extended(parse_rules(text, str(path)))
    return ruleset
