"""The layout of a pipeline run directory, read-only: its stage directories and the stores of a model.

Contract:
* A *run directory* holds content-addressed stage directories ``<run>/<stage>/<key>/``
  (:mod:`tasks.core.manifest`). :func:`scan_run` lists every one of them; a directory whose
  ``manifest.json`` is missing, unreadable or lists a missing/resized file is reported as
  *incomplete* and is never read as a finished store.
* A *model* is one complete ``sample`` store: ``sft`` is a sample store whose manifest's
  upstream names ``finetune``, ``sft-continue``, ``oracle-sft`` and ``rl`` one whose upstream
  names that stage, and any other value is a sample key (or a unique prefix of one). A model has
  several stores in a run (the valid temperature grid, the RL split's difficulty estimate, the
  test evaluations); a model name reads the one the newest complete report evaluated for pass@k
  and n@k (its ``contenders[i].wide`` evaluation), or, in a run without a report or a model the
  report does not show, the last written. Name a sample key (``samples runs`` lists them) to read
  another. Stages of a run finish in parallel, so "last written" alone would be an accident of
  scheduling. :func:`resolve_stores` pairs it with
  the newest complete ``filter`` whose ``upstream["sample"]`` is that key, the newest complete
  ``cluster`` naming both, and the newest complete ``evaluate`` naming all three
  (:class:`ModelStores`; missing downstream stages are None).
* Stage and file names come from the stage modules (:mod:`tasks.core.stages`), never retyped.
* A run in an object store (``s3://bucket/prefix``, :mod:`tasks.core.store`) is read through its
  node-local mirror: :func:`resolve_run` and :func:`find_runs` first pull every stage directory
  complete in the store into it, then read it as a local run directory.
Limits: read-only, no locking (a stage being written while it is read may be seen as incomplete).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tasks.core.manifest import MANIFEST_NAME, Manifest, Upstream, read_manifest
from tasks.core.rl.artifacts import METRICS_FILE as RL_METRICS_FILE
from tasks.core.samplestore import SampleStore
from tasks.core.stages import STAGES, Stage
from tasks.core.stages.cluster import CLUSTERS_FILE
from tasks.core.stages.evaluate import PER_SAMPLE_FILE
from tasks.core.stages.filter import VERDICTS_FILE
from tasks.core.stages.sample import STORE as STORE_DIR
from tasks.core.store import Remote, is_url

MODEL_UPSTREAM = {
    "sft": Stage.FINETUNE,
    "sft-continue": Stage.SFT_CONTINUE,
    "oracle-sft": Stage.ORACLE_SFT,
    "rl": Stage.RL,
}
# the main Parquet payload of each stage, counted in ``runs`` (footer row counts only)
MAIN_FILES = {
    Stage.FILTER: VERDICTS_FILE,
    Stage.CLUSTER: CLUSTERS_FILE,
    Stage.EVALUATE: PER_SAMPLE_FILE,
    Stage.RL: RL_METRICS_FILE,
}
SUMMARY_METRICS = {
    Stage.PROBLEMS: (),
    Stage.SAMPLE: ("problems", "samples", "unique_programs", "generated_tokens"),
    Stage.FILTER: ("samples", "distinct_programs", "surviving_samples", "problems_without_survivors"),
    Stage.CLUSTER: ("problems_clustered", "clusters", "largest_cluster", "selected"),
    Stage.EVALUATE: ("label",),
    Stage.RL: ("algorithm", "steps", "optimizer_steps", "final_reward_mean"),
    Stage.SFT_CONTINUE: ("steps", "tokens_seen", "rl_optimizer_steps", "rl_train_tokens"),
    Stage.ORACLE_SFT: ("steps", "tokens_seen", "rl_optimizer_steps", "rl_train_tokens"),
    Stage.SELECT: ("label", "pass1_temperature", "wide_temperature"),
}


class InspectError(ValueError):
    """Bad input for an inspection: the message names the thing and the fix."""


# ------------------------------------------------------------------ run layout


@dataclass(frozen=True)
class StageEntry:
    """One ``<run>/<stage>/<key>/`` directory; ``manifest`` fields are empty when incomplete."""

    stage: str
    key: str
    dir: Path
    complete: bool
    created_at: str = ""
    upstream: tuple[Upstream, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """``sft``/``sft-continue``/``oracle-sft``/``rl`` for a sample store (from its upstream), else ``""``."""
        if self.stage != Stage.SAMPLE:
            return ""
        for label, stage in MODEL_UPSTREAM.items():
            if any(u.stage == stage for u in self.upstream):
                return label
        return ""

    def rows(self) -> int | None:
        """Rows of the stage's main Parquet payload, from file footers (None if it has none)."""
        if not self.complete:
            return None
        if self.stage == Stage.SAMPLE:
            files = sample_files(self.dir)
        elif self.stage in MAIN_FILES and (self.dir / MAIN_FILES[self.stage]).is_file():
            files = [self.dir / MAIN_FILES[self.stage]]
        else:
            return None
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    def summary(self) -> dict[str, Any]:
        """The key metrics of the stage's manifest (for evaluate: label and every @1 value)."""
        keys = SUMMARY_METRICS.get(self.stage, ())
        out = {k: self.metrics[k] for k in keys if k in self.metrics}
        if self.stage == Stage.EVALUATE:
            out.update({k: v for k, v in self.metrics.items() if k.startswith("all/") and k.endswith("/1")})
        return out


@dataclass(frozen=True)
class RunInfo:
    root: Path
    entries: tuple[StageEntry, ...]

    def of(self, stage: str, complete_only: bool = True) -> list[StageEntry]:
        """Entries of ``stage``, newest first (incomplete ones last)."""
        found = [e for e in self.entries if e.stage == stage and (e.complete or not complete_only)]
        return sorted(found, key=lambda e: (e.complete, e.created_at), reverse=True)


def _entry(stage: str, directory: Path) -> StageEntry:
    manifest = read_manifest(directory)
    if manifest is None:
        return StageEntry(stage=stage, key=directory.name, dir=directory, complete=False)
    return StageEntry(
        stage=stage,
        key=manifest.key,
        dir=directory,
        complete=True,
        created_at=manifest.created_at,
        upstream=manifest.upstream,
        metrics=dict(manifest.metrics),
    )


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / s).is_dir() for s in STAGES)


def scan_run(run_dir: Path | str) -> RunInfo:
    """Every stage directory of a run, complete or not, in stage order then key order."""
    root = Path(run_dir)
    if not is_run_dir(root):
        raise InspectError(
            f"{root} is not a run directory (no stage directories such as {root}/sample); "
            "pass a run directory like runs/default (list them with `alphacode samples runs`)"
        )
    entries = [
        _entry(stage, d)
        for stage in STAGES
        if (root / stage).is_dir()
        for d in sorted((root / stage).iterdir())
        if d.is_dir() and not d.name.startswith(".") and not d.is_symlink()
    ]
    return RunInfo(root=root, entries=tuple(entries))


LATEST = "latest"


def point_latest(manifest: Manifest) -> Path:
    """``<run>/<stage>/latest``: a relative symlink to ``manifest``'s directory (replaced
    atomically), so the path a user types to read a run's newest report needs no key."""
    link = manifest.dir.parent / LATEST
    tmp = link.with_name(f".{LATEST}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(manifest.dir.name, target_is_directory=True)
    os.replace(tmp, link)
    return link


def find_runs(root: Path | str) -> list[RunInfo]:
    """``root`` itself if it is a run directory, else each run directory directly under it
    (a store URL: that run, pulled into its mirror)."""
    if is_url(root):
        return [scan_run(_pulled(str(root)))]
    root = Path(root)
    if not root.is_dir():
        raise InspectError(
            f"runs root {root} does not exist; pass --root DIR (the pipeline's --out parent, e.g. runs)"
        )
    if is_run_dir(root):
        return [scan_run(root)]
    return [scan_run(d) for d in sorted(root.iterdir()) if is_run_dir(d)]


def resolve_run(run: str | Path, runs_root: str | Path = "runs") -> Path:
    """``run`` as a directory, or ``<runs_root>/<run>`` (so ``default`` means ``runs/default``),
    or a store URL's run pulled into its mirror."""
    if is_url(run):
        return _pulled(str(run))
    for candidate in (Path(run), Path(runs_root) / str(run)):
        if is_run_dir(candidate):
            return candidate
    raise InspectError(
        f"run directory {run!r} not found (tried {run} and {Path(runs_root) / str(run)}); "
        "pass a run directory like runs/default (list them with `alphacode samples runs`)"
    )


def _pulled(url: str) -> Path:
    try:
        mirror = Remote(url.rstrip("/")).pull_run(list(STAGES))
    except (OSError, ValueError) as exc:
        raise InspectError(f"cannot read the run at {url}: {exc}") from exc
    if not is_run_dir(mirror):
        raise InspectError(f"{url} holds no complete stage directory; run `alphacode run --out {url}` first")
    return mirror


# ------------------------------------------------------------------ stores of one model


@dataclass(frozen=True)
class ModelStores:
    """The complete stores of one sampled model; downstream stages may be absent (None)."""

    run: Path
    model: str
    sample: StageEntry
    filter: StageEntry | None = None
    cluster: StageEntry | None = None
    evaluate: StageEntry | None = None

    @property
    def store_dir(self) -> Path:
        return self.sample.dir / STORE_DIR


def _pick_sample(run: RunInfo, model: str) -> StageEntry:
    samples = run.of(Stage.SAMPLE)
    pending = [e.key for e in run.of(Stage.SAMPLE, complete_only=False) if not e.complete]
    note = f" (incomplete: {', '.join('sample/' + k for k in pending)})" if pending else ""
    fix = f"finish the run with `alphacode run --out {run.root}`"
    if model in MODEL_UPSTREAM:
        found = [e for e in samples if e.model == model]
        if not found:
            raise InspectError(
                f"run {run.root} has no complete sample store for model {model!r}{note}; {fix}"
            )
        reported = _reported_samples(run)
        return next((e for e in found if e.key in reported), found[0])
    found = [e for e in samples if e.key.startswith(model)] if model else []
    if len(found) == 1:
        return found[0]
    if any(k.startswith(model) for k in pending) and model:
        raise InspectError(
            f"sample store sample/{model}* in {run.root} is incomplete (no valid {MANIFEST_NAME}); {fix}"
        )
    known = ", ".join(f"{e.key} ({e.model or '?'})" for e in samples) or "none"
    what = "matches several sample stores" if found else "matches no sample store"
    raise InspectError(f"--model {model!r} {what} in {run.root}; use sft, rl or a sample key: {known}")


def _reported_samples(run: RunInfo) -> set[str]:
    """Keys of the sample stores the newest complete report evaluated for pass@k and n@k."""
    reports = run.of(Stage.REPORT)
    if not reports:
        return set()
    wide = {u.key for u in reports[0].upstream if u.stage == Stage.EVALUATE and u.role.endswith(".wide")}
    evaluations = [e for e in run.of(Stage.EVALUATE) if e.key in wide]
    return {u.key for e in evaluations for u in e.upstream if u.stage == Stage.SAMPLE}


def _newest(run: RunInfo, stage: str, needs: dict[str, str]) -> StageEntry | None:
    for entry in run.of(stage):
        if all(any(u.stage == s and u.key == k for u in entry.upstream) for s, k in needs.items()):
            return entry
    return None


def resolve_stores(run: RunInfo, model: str = "sft") -> ModelStores:
    """The sample store of ``model`` and the newest complete stages computed from it."""
    sample = _pick_sample(run, model)
    needs = {Stage.SAMPLE.value: sample.key}
    filt = _newest(run, Stage.FILTER, needs)
    clus = _newest(run, Stage.CLUSTER, {**needs, Stage.FILTER.value: filt.key}) if filt else None
    ev = (
        _newest(run, Stage.EVALUATE, {**needs, Stage.FILTER.value: filt.key, Stage.CLUSTER.value: clus.key})
        if clus
        else None
    )
    return ModelStores(
        run=run.root, model=sample.model or sample.key, sample=sample, filter=filt, cluster=clus, evaluate=ev
    )


def sample_files(stage_dir: Path, problem_id: str | None = None) -> list[Path]:
    return SampleStore(stage_dir / STORE_DIR).files(None if problem_id is None else [problem_id])
