"""Evaluation: pass@k and n@k on the hidden tests, from the Parquet stores alone.

Contract:
* Every distinct program of a sample store is judged on its problem's hidden tests (private +
  generated) in sharded units (test set ``hidden``); duplicates inherit the verdict.
* :func:`problem_outcomes` joins, per sample: passed public tests (stage 4), cluster id
  (stage 5; -1 when filtered out) and passed hidden tests. :func:`metric_rows` computes, per
  split and overall, pass@k with the unbiased estimator (Chen et al. 2021) and n@k
  (AlphaCode: n submissions chosen from k samples by filtering + clustering), each with a
  family-clustered percentile-bootstrap 95% interval (families resampled, then problems within
  each; ``families`` says how many families stand behind it; a problem without a family tag is
  its own family, which makes it the problem-level bootstrap). Everything is recomputable from the Parquet
  files this stage and its upstream stages published (a test does exactly that).
* Outputs: ``per_sample.parquet``, ``metrics.parquet`` (label, split, metric, k, value, lo,
  hi, problems, families), ``report.md`` and PNG plots (pass@k vs k, n@k vs k, filter funnel, cluster
  sizes).
Limits: the n@k subsampling uses ``draws`` random k-subsets per problem when k < n (exact
when k == n); k larger than the samples per problem is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.execution import program_summary, read_executions
from tasks.core.io import write_parquet
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.metrics import ProblemSamples, family_bootstrap_ci, n_at_k_per_problem, pass_at_k
from tasks.core.report import (
    markdown_table,
    plot_cluster_sizes,
    plot_filter_funnel,
    plot_n_at_k,
    plot_pass_at_k,
)
from tasks.core.stages import PER_SAMPLE_FILE, REPORT_FILE, Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.cluster import CLUSTERS_FILE
from tasks.core.stages.filter import EXEC_DIR, FUNNEL_PLOT, VERDICTS_FILE, per_sample, programs_of
from tasks.core.stages.problems import load_split
from tasks.core.stages.sample import eval_problems

if TYPE_CHECKING:
    from tasks.core.config import EvalConfig, JudgeConfig
    from tasks.core.problems import Problem

METRICS_FILE = "metrics.parquet"
BY_GROUP_FILE = "by_group.parquet"
UNKNOWN = "unknown"  # the group of a problem without that tag

METRIC_SCHEMA = pa.schema(
    [
        ("label", pa.string()),
        ("split", pa.string()),
        ("metric", pa.string()),
        ("k", pa.int32()),
        ("value", pa.float64()),
        ("lo", pa.float64()),
        ("hi", pa.float64()),
        ("problems", pa.int32()),
        ("families", pa.int32()),
    ]
)


@dataclass(frozen=True)
class Outcomes:
    problem_id: str
    split: str
    samples: ProblemSamples
    family: str = ""  # what the interval resamples as a cluster; "" = the problem is its own

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def c(self) -> int:
        return int(self.samples.hidden_pass.sum())


def per_sample_table(samples: Manifest, filtered: Manifest, clusters: Manifest, hidden_dir: Path) -> pa.Table:
    """One row per sample: problem_id, sample_id, code_hash, passed_public, cluster_id, passed_hidden."""
    programs = programs_of(samples)
    hidden = program_summary(read_executions(hidden_dir), programs)
    table = per_sample(samples, hidden, "passed_hidden")
    public = pq.read_table(filtered.file(VERDICTS_FILE), columns=["problem_id", "sample_id", "passed_public"])
    table = table.join(public, keys=["problem_id", "sample_id"], join_type="left outer")
    cl = pq.read_table(clusters.file(CLUSTERS_FILE), columns=["problem_id", "code_hash", "cluster_id"])
    table = table.join(cl, keys=["problem_id", "code_hash"], join_type="left outer")
    return table.sort_by([("problem_id", "ascending"), ("sample_id", "ascending")])


def problem_outcomes(
    table: pa.Table, split_of: dict[str, str], family_of: dict[str, str] | None = None
) -> list[Outcomes]:
    """Per problem: its split, family (``family_of``; a problem without one is its own family)
    and the (public pass, hidden pass, cluster) outcome of each sample."""
    family_of = family_of or {}
    cols = {
        c: table.column(c).to_pylist() for c in ("problem_id", "passed_public", "passed_hidden", "cluster_id")
    }
    grouped: dict[str, list[tuple[bool, bool, int]]] = {}
    for pid, pub, hid, cid in zip(
        cols["problem_id"], cols["passed_public"], cols["passed_hidden"], cols["cluster_id"]
    ):
        grouped.setdefault(pid, []).append((bool(pub), bool(hid), -1 if cid is None or not pub else int(cid)))
    out = []
    for pid in sorted(grouped):
        pub, hid, cid = (np.array(x) for x in zip(*grouped[pid]))
        out.append(
            Outcomes(
                pid,
                split_of.get(pid, UNKNOWN),
                ProblemSamples(pub, hid, cid.astype(np.int64)),
                family_of.get(pid) or f"problem:{pid}",
            )
        )
    return out


def _ci(values: np.ndarray, group: list[Outcomes], cfg: EvalConfig) -> tuple[float, float, int]:
    """Family-clustered percentile bootstrap interval (families resampled, then problems within
    each drawn family) and the number of families behind it."""
    families = [o.family or f"problem:{o.problem_id}" for o in group]
    if values.size < 2:
        return float(values.mean()), float(values.mean()), len(set(families))
    return tuple(family_bootstrap_ci(values, families, n_boot=cfg.bootstrap, seed=cfg.seed))


def metric_rows(label: str, outcomes: list[Outcomes], cfg: EvalConfig) -> list[dict]:
    rows = []
    splits = sorted({o.split for o in outcomes})
    for split in [*splits, "all"]:
        group = [o for o in outcomes if split in ("all", o.split)]
        if not group:
            continue
        n_min = min(o.n for o in group)
        for k in (k for k in cfg.ks if k <= n_min):
            values = np.array([pass_at_k(o.n, o.c, k) for o in group])
            rows.append(_row(label, split, "pass@k", k, values, group, cfg))
        for k in (k for k in cfg.n_at_k if k <= n_min):
            values = n_at_k_per_problem([o.samples for o in group], cfg.n_submissions, k, seed=cfg.seed)
            rows.append(_row(label, split, f"{cfg.n_submissions}@k", k, values, group, cfg))
    return rows


def _row(
    label: str, split: str, metric: str, k: int, values: np.ndarray, group: list[Outcomes], cfg: EvalConfig
) -> dict:
    lo, hi, families = _ci(values, group, cfg)
    return {
        "label": label,
        "split": split,
        "metric": metric,
        "k": k,
        "value": float(values.mean()),
        "lo": lo,
        "hi": hi,
        "problems": int(values.size),
        "families": families,
    }


def curves(rows: list[dict], metric: str, split: str, label_suffix: str = "") -> dict:
    out: dict = {}
    for label in sorted({r["label"] for r in rows}):
        sel = sorted(
            (r for r in rows if r["label"] == label and r["metric"] == metric and r["split"] == split),
            key=lambda r: r["k"],
        )
        if sel:
            out[label + label_suffix] = (
                [r["k"] for r in sel],
                [r["value"] for r in sel],
                [r["lo"] for r in sel],
                [r["hi"] for r in sel],
            )
    return out


def write_report(
    directory: Path,
    label: str,
    rows: list[dict],
    filtered: Manifest,
    clusters: Manifest,
    n_sub: int,
    by_group: list[dict] | None = None,
) -> None:
    fm = filtered.metrics
    funnel = [
        ("samples", fm["samples"]),
        ("distinct programs", fm["distinct_programs"]),
        ("samples passing public tests", fm["surviving_samples"]),
        ("submissions (one per cluster)", clusters.metrics["selected"]),
    ]
    plot_filter_funnel(funnel, directory / FUNNEL_PLOT)
    sizes = clusters.metrics.get("cluster_sizes") or []
    if sizes:  # no survivor, no cluster: nothing to draw
        plot_cluster_sizes(sizes, directory / "cluster_sizes.png", highlight=n_sub)
    plot_pass_at_k(curves(rows, "pass@k", "all"), directory / "pass_at_k.png")
    plot_n_at_k(curves(rows, f"{n_sub}@k", "all"), directory / "n_at_k.png")
    text = [
        f"# Evaluation: {label}",
        "",
        "## Metrics (hidden tests, 95% family-clustered bootstrap CI; `families` per interval)",
        "",
        markdown_table(
            [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
        ),
        "",
        "## Filter funnel",
        "",
        markdown_table([{"stage": s, "count": c} for s, c in funnel]),
        "",
        f"Problems without any sample passing the public tests: {fm['problems_without_survivors']} of {fm['problems']}.",
        "",
        f"![pass@k](pass_at_k.png) ![n@k](n_at_k.png) ![funnel]({FUNNEL_PLOT})"
        + (" ![clusters](cluster_sizes.png)" if sizes else "\n\nNo program survived filtering: no clusters."),
        "",
    ]
    for kind in sorted({r["group_by"] for r in by_group or []}):
        sel = [
            {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in r.items()
                if k not in ("label", "group_by")
            }
            for r in by_group
            if r["group_by"] == kind
        ]
        text += [f"## pass@1 by {kind} (groups of two or more problems)", "", markdown_table(sel), ""]
    (directory / REPORT_FILE).write_text("\n".join(text))


def group_rows(
    label: str, outcomes: list[Outcomes], groups: dict[str, dict[str, str]], cfg: EvalConfig
) -> list[dict]:
    """pass@1 per group (e.g. family, difficulty) with a bootstrap CI over its problems; a group
    of one problem has no interval to show and is left out."""
    rows = []
    for kind, group_of in sorted(groups.items()):
        by_group: dict[str, list[Outcomes]] = {}
        for o in outcomes:
            by_group.setdefault(group_of.get(o.problem_id, UNKNOWN), []).append(o)
        for name, members in sorted(by_group.items()):
            if len(members) < 2:
                continue
            values = np.array([pass_at_k(o.n, o.c, 1) for o in members])
            lo, hi, families = _ci(values, members, cfg)
            rows.append(
                {
                    "label": label,
                    "group_by": kind,
                    "group": name,
                    "pass@1": float(values.mean()),
                    "lo": lo,
                    "hi": hi,
                    "problems": len(members),
                    "families": families,
                }
            )
    return rows


def split_of(problems: Manifest, splits: tuple[str, ...]) -> dict[str, str]:
    """The evaluation split of each problem (a name in two splits counts in the later one)."""
    return {p.name: split for split in splits for p in load_split(problems, split)}


def groups_of(problems: Manifest, splits: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """The groups pass@1 is broken down by: each problem's family and difficulty."""
    by_id = {p.name: p for p in eval_problems(problems, splits)}
    return {
        "family": {pid: p.tags.get("family", UNKNOWN) for pid, p in by_id.items()},
        "difficulty": {pid: str(p.cf_rating or p.difficulty) for pid, p in by_id.items()},
    }


def finish(
    plan: StagePlan,
    cfg: EvalConfig,
    label: str,
    problems: Manifest,
    splits: tuple[str, ...],
    samples: Manifest,
    filtered: Manifest,
    clusters: Manifest,
) -> Manifest:
    """Reduce the hidden-test executions to per-sample outcomes, metrics, plots and a report."""
    table = per_sample_table(samples, filtered, clusters, plan.dir / EXEC_DIR)
    write_parquet(plan.dir / PER_SAMPLE_FILE, table)
    groups = groups_of(problems, splits)
    tagged = {pid: fam for pid, fam in groups["family"].items() if fam != UNKNOWN}  # untagged: own family
    outcomes = problem_outcomes(table, split_of(problems, splits), tagged)
    rows = metric_rows(label, outcomes, cfg)
    write_parquet(plan.dir / METRICS_FILE, pa.Table.from_pylist(rows, schema=METRIC_SCHEMA))
    by_group = group_rows(label, outcomes, groups, cfg)
    if by_group:
        write_parquet(plan.dir / BY_GROUP_FILE, pa.Table.from_pylist(by_group))
    write_report(plan.dir, label, rows, filtered, clusters, cfg.n_submissions, by_group)
    headline = {f"{r['split']}/{r['metric']}/{r['k']}": round(r["value"], 4) for r in rows}
    return plan.publish(list_files(plan.dir), metrics={"label": label, **headline})


@dataclass(frozen=True)
class EvaluateInputs(StageInputs):
    """Evaluation: every distinct program of ``samples`` on its problem's hidden tests, reduced
    with the filter and cluster stages' choices to pass@k and n@k under ``label``."""

    STAGE = Stage.EVALUATE
    evaluate: EvalConfig
    judge: JudgeConfig
    label: str
    splits: tuple[str, ...]
    samples: Manifest
    filtered: Manifest
    clusters: Manifest
    problems: Manifest

    def by_id(self) -> dict[str, Problem]:
        return {p.name: p for p in eval_problems(self.problems, self.splits)}

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return finish(
            plan,
            self.evaluate,
            self.label,
            self.problems,
            self.splits,
            self.samples,
            self.filtered,
            self.clusters,
        )
