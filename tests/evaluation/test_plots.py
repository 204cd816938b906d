import math

import numpy as np
import pyarrow as pa
import pytest

from tasks.core.history import HISTORY_SCHEMA, plot_trend
from tasks.core.plots import ema, plot_curves

PNG = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000  # a drawn figure, not an empty canvas
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]


def test_plot_curves_draws_panels_with_sparse_and_long_series(tmp_path):
    steps = list(range(1, 101))
    panels = {
        "loss": {
            "train": (steps, np.exp(-np.arange(100) / 30.0)),
            "valid": ([25, 50, 100], [0.5, None, 0.1]),  # None: not computed, dropped
        },
        "reward": {"reward": (steps, [math.nan] * 10 + list(np.linspace(0, 1, 90)))},
    }
    out = plot_curves(panels, tmp_path / "sub" / "curves.png", title="t")
    assert out == tmp_path / "sub" / "curves.png"
    _assert_png(out)


def test_plot_curves_overwrites_and_tolerates_an_empty_series(tmp_path):
    target = tmp_path / "c.png"
    target.write_bytes(b"old")
    _assert_png(plot_curves({"kl": {"kl": ([1, 2], [None, None])}, "x": {"x": ([1, 2], [1, 2])}}, target))


def test_plot_curves_rejects_no_panel_and_ragged_series(tmp_path):
    with pytest.raises(ValueError, match="at least one panel"):
        plot_curves({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'loss' has 3 values for 2 x positions"):
        plot_curves({"loss": {"loss": ([0, 1], [1, 2, 3])}}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_ema_follows_the_values_and_keeps_its_mean_over_nan():
    out = ema(np.array([1.0, math.nan, 3.0]), span=1)  # alpha 1: the last value
    assert out.tolist() == [1.0, 1.0, 3.0]


def test_plot_trend_one_panel_per_k(tmp_path):
    rows = [
        {
            "evaluated_at": t,
            "model_stage": "rl",
            "model_key": "k",
            **{
                f.name: None
                for f in HISTORY_SCHEMA
                if f.name not in ("evaluated_at", "model_stage", "model_key")
            },
            "split": "valid",
            "metric": "pass@k",
            "k": k,
            "value": v,
        }
        for t, k, v in [("t1", 1, 0.1), ("t1", 10, 0.3), ("t2", 1, 0.2)]
    ]
    history = pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA)
    _assert_png(plot_trend(history, "valid", "pass@k", tmp_path / "trend.png"))
    assert plot_trend(history, "test", "pass@k", tmp_path / "none.png") is None
