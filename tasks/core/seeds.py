"""Repeating stages 2-6 under other seeds, and the spread of the report across them.

Contract: :func:`seed_overrides` gives the config overrides that reseed every stage from 2 on
for one seed ``s``: fine-tuning's data order and init-independent randomness
(``finetune.train.seed``), every sampling run (``sample.sampling.seed``, which the temperature
grid and the test evaluations inherit), the RL algorithm's own seed and the clustering's
generated inputs (``cluster.seed``). Problems, pretraining (stage 1) and the bootstrap's seed
(``evaluate.seed``) stay fixed, so the spread is that of stages 2-6 alone. Every seed's stages
are content-addressed by their config, so all seeds share one run directory and the stages they
have in common. :func:`spread_rows` joins the seeds' report comparisons: per split and metric,
each seed's difference from the best baseline with its interval, the mean and the smallest, and
``holds`` (every seed's 95% interval above zero), which is what a claimed gain needs.
Limits: seed s sets those seeds to s whatever the profile says; the seeds share stage 1's model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.core.io import atomic_write_text, write_parquet
from tasks.core.report import markdown_table
from tasks.core.tables import rows_table

SPREAD_FILE = "spread.parquet"


def seed_overrides(algorithm: str, seed: int) -> dict[str, Any]:
    """Overrides that reseed stages 2-6 (see the module docstring); ``algorithm`` is ``rl.algorithm``."""
    return {
        "finetune": {"train": {"seed": seed}},
        "sample": {"sampling": {"seed": seed}},
        "rl": {algorithm.replace("-", "_"): {"seed": seed}},
        "cluster": {"seed": seed},
    }


def spread_rows(comparisons: Mapping[int, list[dict]]) -> list[dict]:
    """Per (split, metric): each seed's difference and interval, their mean, min and ``holds``."""
    keyed: dict[tuple[str, str], dict[int, dict]] = {}
    for seed, rows in comparisons.items():
        for r in rows:
            keyed.setdefault((r["split"], r["metric"]), {})[seed] = r
    out = []
    for (split, metric), by_seed in sorted(keyed.items()):
        diffs = [r["difference"] for r in by_seed.values()]
        row: dict[str, Any] = {"split": split, "metric": metric, "seeds": len(by_seed)}
        for seed, r in sorted(by_seed.items()):
            row[f"seed {seed}"] = (
                f"{r['difference']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] vs {r['best baseline']}"
            )
        row |= {
            "mean difference": sum(diffs) / len(diffs),
            "min difference": min(diffs),
            "holds": len(by_seed) >= 2 and all(r["lo"] > 0 for r in by_seed.values()),
        }
        out.append(row)
    return out


def write_spread(directory: Path, comparisons: Mapping[int, list[dict]], reports: Mapping[int, str]) -> Path:
    """``spread.parquet`` and ``report.md`` of the seeds' comparisons into ``directory``."""
    rows = spread_rows(comparisons)
    directory.mkdir(parents=True, exist_ok=True)
    write_parquet(directory / SPREAD_FILE, rows_table(rows))  # a seed may lack a (split, metric)
    text = [
        "# RL against the best compute-matched baseline, across seeds",
        "",
        "Each cell: RL minus the best baseline on that split, with its family-clustered 95% CI. "
        "`holds`: at least two seeds and every seed's interval above zero.",
        "",
        markdown_table(
            [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
        ),
        "",
        "Reports:",
        "",
        *[f"- seed {seed}: {path}" for seed, path in sorted(reports.items())],
        "",
    ]
    atomic_write_text(directory / "report.md", "\n".join(text))
    return directory / "report.md"
