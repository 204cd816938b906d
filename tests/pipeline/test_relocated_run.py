"""A run directory copied elsewhere is the same run: its manifests name no absolute path, and
the smoke pipeline rerun on a copy of the session's smoke run (``smoke_pipeline`` in
``tests/conftest.py``; the original moved out of reach) is all Cached and reads the copy's own
files."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.pipeline.test_smoke_pipeline import task_runs_since

pytestmark = pytest.mark.slow


def manifests(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("manifest.json") if ".prefect" not in p.parts)


def test_no_manifest_holds_an_absolute_path(smoke_pipeline):
    root = Path(smoke_pipeline.root)
    found = manifests(root)
    assert len(found) >= len(smoke_pipeline.stages)
    for path in found:
        text = path.read_text()
        assert str(root) not in text and str(root.resolve()) not in text, path
        assert json.loads(text)["path"] == path.parent.relative_to(root).as_posix()


def test_copied_run_is_all_cached_and_reads_the_copy(smoke_pipeline, tmp_path):
    from flows.pipeline import alphacode_pipeline

    original = Path(smoke_pipeline.root)
    copy = tmp_path / "copied-run"
    shutil.copytree(original, copy, symlinks=True)
    aside = original.with_name(original.name + ".aside")
    original.rename(aside)  # nothing may read the original while the copy reruns
    try:
        started = datetime.now(timezone.utc)
        rerun = alphacode_pipeline(profile="smoke", out_dir=str(copy))
    finally:
        aside.rename(original)
    runs = task_runs_since(started)
    assert runs and {r.state.name for r in runs} == {"Cached"}, [
        (r.name, r.state.name) for r in runs if r.state.name != "Cached"
    ]
    assert {k: m.key for k, m in rerun.stages.items()} == {k: m.key for k, m in smoke_pipeline.stages.items()}
    for manifest in [*rerun.stages.values(), rerun.report]:
        assert manifest.dir.is_relative_to(copy.resolve()), manifest.dir
    assert (rerun.report.dir / "report.md").read_text() == (
        smoke_pipeline.report.dir / "report.md"
    ).read_text()
