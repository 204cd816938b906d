"""Choosing settings on a selection split (``valid``, or ``valid_rl`` for RL): candidates trained
on their training split, scored on that split only, one table with intervals.

Contract: a *study* is a TOML file ``data/studies/<name>.toml`` of named candidates, each a
table of config overrides (``[candidates.<name>]`` with dotted keys, as ``--set`` takes them).
:func:`load_study` validates it (a bad file or an empty study names the file and the fix).
:func:`study_rows` takes each candidate's per-problem ``valid`` pass@1 and the baseline's, and
gives per candidate: pass@1 with a family-clustered bootstrap 95% CI, the paired difference from
the baseline with its family-clustered paired CI, the paired difference from the candidate's own
compute-matched baseline where it has one (SFT-continue for its optimizer steps: a setting that
only beats stage 2 may just be more training), and the problems and families behind them. The
winner (``best``; baselines excluded) is the candidate with the largest point estimate of its
gain over its matched baseline, or, in a study without matched baselines, of pass@1.
:func:`write_study` writes ``study.parquet`` and ``report.md``. No test split is read anywhere in a study.
Limits: the winner is a point estimate; whether it is distinguishable from the runner-up, or
from zero, is for the intervals, which the table shows beside it. Each model's temperature is
the caller's choice (``alphacode study`` scores every model at its own best one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from tasks.core.io import atomic_write_text, write_parquet
from tasks.core.metrics import family_bootstrap_ci, family_paired_bootstrap
from tasks.core.report import markdown_table
from tasks.core.tables import rows_table

STUDIES_DIR = Path(__file__).resolve().parents[2] / "data" / "studies"
STUDY_FILE = "study.parquet"


def load_study(name: str) -> dict[str, dict[str, Any]]:
    """The candidates of study ``name`` (a shipped study's name, or the path of a ``.toml`` file):
    candidate name -> overrides (see the module docstring)."""
    path = Path(name) if name.endswith(".toml") else STUDIES_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))) or "none"
        raise ValueError(
            f"unknown study {name!r}: choose one of {known} (studies live in {STUDIES_DIR}) "
            "or give the path of a .toml file"
        )
    candidates = tomllib.loads(path.read_text()).get("candidates")
    if not isinstance(candidates, dict) or not candidates:
        raise ValueError(f"{path} has no [candidates.<name>] tables: add at least one")
    return {str(k): dict(v) for k, v in candidates.items()}


def study_rows(
    values: Mapping[str, Mapping[str, float]],
    baseline: str,
    family_of: Mapping[str, str],
    n_boot: int = 1000,
    seed: int = 0,
    matched: Mapping[str, str] | None = None,
) -> list[dict]:
    """One row per entry of ``values`` (name -> problem -> pass@1), the baseline's first.

    ``matched`` maps a candidate to its compute-matched baseline (an entry of ``values``, e.g.
    SFT-continue for the candidate's optimizer steps): the candidate's row then also carries the
    paired difference from it (``vs matched``, ``matched lo``/``hi``) and ``beats matched`` (that
    interval above zero). Matched baselines get rows of their own but never win; the winner is
    then the candidate with the largest ``vs matched`` (see the module docstring)."""
    matched = dict(matched or {})
    baselines = {baseline, *matched.values()}
    rows = []
    for name in [baseline, *sorted(n for n in values if n != baseline)]:
        row = _row(values, name, baseline, family_of, n_boot, seed)
        if name in matched:
            d = _paired(values, name, matched[name], family_of, n_boot, seed)
            row |= {"matched": matched[name], "vs matched": d.difference, "matched lo": d.lo}
            row |= {"matched hi": d.hi, "beats matched": d.lo > 0}
        rows.append(row)
    eligible = [r for r in rows if r["candidate"] not in baselines]
    winner = max(eligible, key=lambda r: _rank(r, bool(matched)), default=None)  # ties: first by name
    for r in rows:
        r["best"] = r is winner
    return rows


def _rank(row: dict, by_matched: bool) -> tuple[float, float]:
    """With matched baselines, the largest gain over its own matched baseline wins (RL must beat
    more SFT, not only stage 2); then, and without them, the best pass@1."""
    margin = row.get("vs matched", float("-inf")) if by_matched else 0.0
    return (margin, row["valid pass@1"])


def _row(values, name: str, baseline: str, family_of, n_boot: int, seed: int) -> dict:
    ids = sorted(p for p in values[name] if p in values[baseline])
    x = np.array([values[name][p] for p in ids])
    families = [family_of.get(p, p) for p in ids]
    lo, hi, n_fam = family_bootstrap_ci(x, families, n_boot=n_boot, seed=seed)
    row = {"candidate": name, "valid pass@1": float(x.mean()), "lo": lo, "hi": hi}
    if name != baseline:
        d = _paired(values, name, baseline, family_of, n_boot, seed)
        row |= {f"vs {baseline}": d.difference, "diff lo": d.lo, "diff hi": d.hi}
    return row | {"problems": len(ids), "families": n_fam}


def _paired(values, a: str, b: str, family_of, n_boot: int, seed: int):
    ids = sorted(p for p in values[a] if p in values[b])
    x, y = [values[a][p] for p in ids], [values[b][p] for p in ids]
    families = [family_of.get(p, p) for p in ids]
    return family_paired_bootstrap(np.array(x), np.array(y), families, n_boot=n_boot, seed=seed)


def write_study(
    directory: Path, name: str, rows: list[dict], sources: Mapping[str, str], split: str = "valid"
) -> Path:
    """``study.parquet`` and ``report.md`` into ``directory``; ``sources``: candidate -> where its
    figures come from (temperature and evaluation path); ``split``: the selection split scored."""
    directory.mkdir(parents=True, exist_ok=True)
    write_parquet(directory / STUDY_FILE, rows_table(rows))  # the baseline's row lacks the `vs` keys
    shown = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    text = [
        f"# Study `{name}`: candidates scored on `{split}` only",
        "",
        f"pass@1 on the hidden tests of `{split}`, each model at its own best temperature there, with family-clustered 95% CIs; `vs` columns: the paired "
        "difference from the baseline and, where a candidate has one, from its compute-matched "
        "baseline (`matched`: SFT-continue for the candidate's optimizer steps; families resampled, "
        "then problems within each). `beats matched`: that interval lies above zero.",
        "",
        markdown_table(shown),
        "",
        *[f"- {cand}: {path}" for cand, path in sources.items()],
        "",
    ]
    atomic_write_text(directory / "report.md", "\n".join(text))
    return directory / "report.md"
