"""What the RL trainers share: their task (:class:`RLTask`: inputs, input checks, reward), the
result record and the output layout.

Contract: :func:`write_outputs` writes ``out_dir/model`` (``save_pretrained`` of model and
tokenizer, swapped in by rename), ``metrics.parquet`` (one row per step, float64 columns, the
union of the rows' keys) and ``rl_curve.png`` (one panel per curve key), each atomically
(:mod:`tasks.core.io`), so a crash leaves either the previous artifact or none, never a partial
one. The beta check the trainers share lives on their parameters' base,
:class:`tasks.core.hparams.KLPenalty`; their reward is :func:`tasks.core.rl.rewards.make_reward`.
Limits: metrics rows are flat ``{name: float}`` dicts; :func:`numeric_row` drops non-numeric values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.device import Placement
from tasks.core.io import save_model, write_metrics
from tasks.core.jobs import LimitPolicy
from tasks.core.rl.rewards import ExecutionReward, RewardSettings, make_reward

ProgressFn = Callable[[int, int, Mapping[str, float]], None]
"""``progress(step, total_steps, metrics_of_that_step)``; called after each optimiser step."""

MODEL_DIR = "model"
METRICS_FILE = "metrics.parquet"
PLOT_FILE = "rl_curve.png"
CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class RLResult:
    model_dir: Path
    steps: int
    metrics_path: Path
    plot_path: Path
    final_reward_mean: float
    resumed_from_step: int | None
    # compute spent on optimizer updates, for the compute-matched SFT-continue baseline; None
    # where a trainer does not count it (then ``steps`` are its optimizer steps)
    optimizer_steps: int | None = None
    train_tokens: int | None = None
    device: dict[str, str] | None = None  # where it ran: Placement.metrics() (+ the generator)


@dataclass(frozen=True)
class RLTask:
    """What every RL trainer is given besides its params; the one trainer signature is
    ``train_<algorithm>(task, params) -> RLResult``."""

    model_dir: Path  # the stage-2 model: the policy's start and the frozen KL reference
    problems: Sequence[Any]  # the RL split, never the SFT prompts; names unique
    judge: Any  # ``run_many(jobs) -> list[JobResult]``, the sandbox Judge
    out_dir: Path
    format_prompt: Callable[[Any], str]
    extract_program: Callable[[str], str]
    progress: ProgressFn | None = None
    policy: LimitPolicy | None = None  # the limits rewards run under (evaluation's; see make_reward)
    placement: Placement | None = None  # where to train (tasks.core.device); None: auto, resolved then

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    def start(self, params: RewardSettings, trainer: str) -> ExecutionReward:
        """The checks every trainer makes before loading anything (a saved model, some
        problems), then its reward (:func:`~tasks.core.rl.rewards.make_reward`)."""
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} has no config.json; pass a save_pretrained model dir")
        if not self.problems:
            raise ValueError(f"{trainer} needs at least one problem")
        return make_reward(params, self.judge, self.problems, self.extract_program, self.policy)


def numeric_row(row: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value)
    return out


@dataclass(frozen=True)
class Outputs:
    model_dir: Path
    metrics_path: Path
    plot_path: Path


def write_outputs(
    out_dir: Path,
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, float]],
    curve_keys: Sequence[str],
    title: str,
    extra: Callable[[Path], None] | None = None,
) -> Outputs:
    """The final model (plus ``extra(model_tmp_dir)``), the metrics table and the curve figure."""
    from tasks.core.plots import plot_curves

    model_dir = save_model(model, tokenizer, out_dir / MODEL_DIR, extra=extra)
    metrics = write_metrics(out_dir / METRICS_FILE, rows)
    panels = {}
    for key in curve_keys:
        points = [(row["step"], row[key]) for row in rows if key in row]
        if points:
            panels[key] = {key: ([x for x, _ in points], [y for _, y in points])}
    plot = plot_curves(panels or {"no data": {}}, out_dir / PLOT_FILE, title=title)
    return Outputs(model_dir, metrics, plot)
