"""The stage bars count work items (samples, programs), so their rate and ETA are in those units."""

from __future__ import annotations

import flows.stages as stages
from tasks.progress import StageProgress


class Recording(StageProgress):
    made: list = []

    def __init__(self, total, description, unit="it", **kw):
        super().__init__(total, description, unit=unit, **kw)
        self.steps: list[int] = []
        Recording.made.append(self)

    def advance(self, amount: int = 1) -> None:
        self.steps.append(amount)
        super().advance(amount)


def test_run_units_counts_items_not_calls(monkeypatch):
    monkeypatch.setattr(stages, "StageProgress", Recording)
    Recording.made.clear()
    calls = [dict(x=1), dict(x=2), dict(x=3)]
    out = stages._run_units(lambda x: x * 10, calls, False, "stage 3 sampling", [250, 250, 100], "sample")
    assert out == [10, 20, 30]
    (bar,) = Recording.made
    assert (bar.total, bar.steps, bar.done) == (600, [250, 250, 100], 600)
    assert bar.bar.unit == "sample"


def test_run_units_defaults_to_one_shard_per_call(monkeypatch):
    monkeypatch.setattr(stages, "StageProgress", Recording)
    Recording.made.clear()
    stages._run_units(lambda: None, [{}, {}], False, "shards")
    (bar,) = Recording.made
    assert (bar.total, bar.steps, bar.bar.unit) == (2, [1, 1], "shard")
