"""One call that runs every analyzer over a trace: what the report and the notebook API share."""

from __future__ import annotations

from dataclasses import dataclass

from analyzers.allocators import AllocatorInfo, detect
from analyzers.arenas import Arena, arenas
from analyzers.classify import Classifier, frames_resolver
from analyzers.loader import LoadedObject, loaded_objects
from analyzers.model import Classified
from analyzers.rules import RuleSet
from analyzers.symbols import Symbolizer
from tracer.traceformat import TraceData, collector_paused


@dataclass
class Analysis:
    """Everything alloctrace knows about a trace once it has been analyzed."""

    trace: TraceData
    events: list[Classified]  # every syscall in order, classified
    objects: list[LoadedObject]  # per process, each object the loader (or kernel) mapped
    allocators: dict[int, AllocatorInfo]  # pid -> the malloc that served it
    arenas: list[Arena]  # heaps, segments, stacks: each tied to the thread that made it


def analyze(
    trace: TraceData, rules: RuleSet | None = None, symbolizer: Symbolizer | None = None
) -> Analysis:
    """Symbolize, classify, attribute loader work, detect allocators, list arenas."""
    with collector_paused():  # an object or more per event, none in a cycle
        frames_of = frames_resolver(trace, symbolizer)
        events = Classifier(rules).classify(trace, frames_of)
        objects = loaded_objects(trace, events, frames_of)
        return Analysis(trace, events, objects, detect(trace, objects, events), arenas(events))
