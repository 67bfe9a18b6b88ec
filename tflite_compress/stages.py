"""The stage machinery every pipeline runs: an ordered list of stages over a frozen state.

A pipeline is a tuple of `Stage`s and a frozen state dataclass (a subclass of `PipelineState`).
Each stage is a function `run(state, log) -> state` that returns a *new* state
(`state.replace(...)`, `state.record(name, ...)`); nothing is mutated in place. `run_stages`
prints the `[n/N] ...` progress lines (the stage writes the text after the prefix with
`log.step(...)`, and detail lines with `log.detail(...)`) and records each stage's wall time.

    STAGES = (Stage("tokenizer", tokenizer_stage), Stage("teacher", teacher_stage), ...)
    final = run_stages(STAGES, initial_state, log)
    final.records["teacher"], final.timings["teacher"]

The classifier pipeline (`pipeline.py`: demo and compress, text and arrays) and the language
model pipeline run this machinery; a new pipeline brings its own state and stage functions.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence, TypeVar

S = TypeVar("S", bound="PipelineState")


def log_stderr(msg: str) -> None:
    """The default log: one line on stderr, flushed (stdout stays free for --json)."""
    print(msg, file=sys.stderr, flush=True)


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineState:
    """What every pipeline state carries: the report record of each stage and its timing.

    Subclasses add their own frozen fields (data, models, arrays) and are passed from stage to
    stage; `records` becomes `report["stages"]`, `timings` `report["timings_s"]`.
    """

    records: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=lambda: _frozen({}))
    timings: Mapping[str, float] = dataclasses.field(default_factory=lambda: _frozen({}))

    def replace(self: S, **changes) -> S:
        return dataclasses.replace(self, **changes)

    def record(self: S, name: str, values: Mapping[str, Any], **changes) -> S:
        """A new state with `values` as stage `name`'s report record (and any other field changes)."""
        return dataclasses.replace(self, records=_frozen({**self.records, name: dict(values)}), **changes)

    def timed(self: S, name: str, seconds: float) -> S:
        return dataclasses.replace(self, timings=_frozen({**self.timings, name: seconds}))

    def records_dict(self) -> dict:
        """The records as plain dicts (for report.json)."""
        return {k: dict(v) for k, v in self.records.items()}


class StageLog:
    """The log a stage writes through: `step` after the `[n/N]` prefix, `detail` indented under it."""

    INDENT = " " * 6

    def __init__(self, prefix: str, sink: Callable[[str], None]):
        self.prefix = prefix
        self.sink = sink

    def step(self, msg: str) -> None:
        self.sink(f"{self.prefix} {msg}")

    def detail(self, msg: str) -> None:
        self.sink(f"{self.INDENT}{msg}")

    def __call__(self, msg: str) -> None:  # a plain log line (library helpers take a callable)
        self.sink(msg)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a pipeline: `name` keys its timing; `run(state, log)` returns the new state."""

    name: str
    run: Callable[[Any, StageLog], Any]


def run_stages(stages: Sequence[Stage], state: S, log: Callable[[str], None] = log_stderr) -> S:
    """Run `stages` in order on `state`; `[n/N]` progress and per-stage wall time come from here."""
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names repeat: {names}")
    total = len(stages)
    for i, stage in enumerate(stages, 1):
        t0 = time.perf_counter()
        new = stage.run(state, StageLog(f"[{i}/{total}]", log))
        if not isinstance(new, type(state)):
            raise TypeError(f"stage {stage.name!r} returned {type(new).__name__}, expected {type(state).__name__}")
        state = new.timed(stage.name, time.perf_counter() - t0)
    return state
