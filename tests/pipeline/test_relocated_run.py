"""A run directory copied elsewhere is the same run: its manifests name no absolute path, and
the smoke pipeline (the deployment tests' smaller override of it, ``TINY``) rerun on the copy
(the original moved out of reach) is all Cached and reads the copy's own files."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.ops.test_deployments import TINY
from tests.pipeline.test_smoke_pipeline import task_runs_since

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(prefect_harness, tmp_path_factory):
    from flows.pipeline import alphacode_pipeline

    return alphacode_pipeline(profile="smoke", out_dir=str(tmp_path_factory.mktemp("tiny")), overrides=TINY)


def manifests(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("manifest.json") if ".prefect" not in p.parts)


def test_no_manifest_holds_an_absolute_path(tiny_run):
    root = Path(tiny_run.root)
    found = manifests(root)
    assert len(found) >= len(tiny_run.stages)
    for path in found:
        text = path.read_text()
        assert str(root) not in text and str(root.resolve()) not in text, path
        assert json.loads(text)["path"] == path.parent.relative_to(root).as_posix()


def test_copied_run_is_all_cached_and_reads_the_copy(tiny_run, tmp_path):
    from flows.pipeline import alphacode_pipeline

    original = Path(tiny_run.root)
    copy = tmp_path / "copied-run"
    shutil.copytree(original, copy, symlinks=True)
    aside = original.with_name(original.name + ".aside")
    original.rename(aside)  # nothing may read the original while the copy reruns
    try:
        started = datetime.now(timezone.utc)
        rerun = alphacode_pipeline(profile="smoke", out_dir=str(copy), overrides=TINY)
    finally:
        aside.rename(original)
    runs = task_runs_since(started)
    assert runs and {r.state.name for r in runs} == {"Cached"}, [
        (r.name, r.state.name) for r in runs if r.state.name != "Cached"
    ]
    assert {k: m.key for k, m in rerun.stages.items()} == {k: m.key for k, m in tiny_run.stages.items()}
    for manifest in [*rerun.stages.values(), rerun.report]:
        assert manifest.dir.is_relative_to(copy.resolve()), manifest.dir
    assert (rerun.report.dir / "report.md").read_text() == (tiny_run.report.dir / "report.md").read_text()
