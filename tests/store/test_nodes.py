"""Shard units on several nodes through a real S3 store (SeaweedFS on loopback): a unit computed
on one node reaches the store and every other node's mirror without being computed again; a
file in the store that does not validate is recomputed; a missing upstream stage is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.nodes import fetch_unit, run_unit
from tasks.core.store import Remote, working_root
from tests.ops.test_duplicate_shards import exec_unit, leftovers
from tests.ops.test_scaleout import exec_rows
from tests.store.test_store import published_stage, use_node


def judge_it(unit, problems, judge):
    from tasks.core.stages import filter as filter_stage

    def compute(u):
        return filter_stage.run_exec_shard(u, problems, judge)

    return compute


def never(*_):
    raise AssertionError("computed a unit the store already had")


def test_units_move_to_another_root_whole(tmp_path):
    from tasks.core.stages.sample import SampleShardUnit

    unit, _, _ = exec_unit(tmp_path / "a")
    moved = unit.at_root(str(tmp_path / "b"))
    assert moved.output == tmp_path / "b" / Path(unit.output).relative_to(tmp_path / "a")
    assert moved.cache_key == unit.cache_key and moved.shard == unit.shard
    sample = SampleShardUnit(
        root=str(tmp_path / "a"),
        stage_key="k",
        store_dir=str(tmp_path / "a" / "sample" / "k" / "samples"),
        shard=_shard(),
    )
    assert sample.at_root(str(tmp_path / "b")).output == tmp_path / "b" / sample.output.relative_to(
        tmp_path / "a"
    )


def _shard():
    from tasks.core.samplestore import ShardPlan

    return ShardPlan(problem_id="p", shard_index=0, sample_offset=0, num_samples=2, seed=1)


def test_a_unit_computed_on_one_node_is_fetched_not_recomputed_on_another(s3_url, monkeypatch, tmp_path):
    use_node(monkeypatch, tmp_path, "node-a")
    unit, problems, judge = exec_unit(Path(working_root(s3_url)))
    assert run_unit(unit, s3_url, judge_it(unit, problems, judge)) == 6
    rel = Path(unit.output).relative_to(unit.root).as_posix()
    assert Remote(s3_url).has_file(rel, Path(unit.output).stat().st_size)

    use_node(monkeypatch, tmp_path, "node-b")
    assert run_unit(unit, s3_url, never) is None  # planned on node a, run on node b
    on_b = unit.at_root(working_root(s3_url))
    assert on_b.root != unit.root and on_b.complete()
    assert Path(on_b.output).read_bytes() == Path(unit.output).read_bytes()
    assert not leftovers(Path(on_b.exec_dir))


def test_a_file_in_the_store_that_does_not_validate_is_recomputed(s3_url, monkeypatch, tmp_path):
    use_node(monkeypatch, tmp_path, "node-a")
    unit, problems, judge = exec_unit(Path(working_root(s3_url)))
    rel = Path(unit.output).relative_to(unit.root).as_posix()
    remote = Remote(s3_url)
    remote.write_bytes(remote.path(rel), b"PAR1 not a shard")
    assert not fetch_unit(unit, remote) and not Path(unit.output).exists()
    assert run_unit(unit, s3_url, judge_it(unit, problems, judge)) == 6
    assert remote.has_file(rel, Path(unit.output).stat().st_size)
    use_node(monkeypatch, tmp_path, "node-b")
    on_b = unit.at_root(working_root(s3_url))
    assert fetch_unit(on_b, remote) and exec_rows(on_b.exec_dir) == exec_rows(unit.exec_dir)


def test_an_upstream_stage_missing_everywhere_is_named(s3_url, monkeypatch, tmp_path):
    use_node(monkeypatch, tmp_path, "node-a")
    root_a = working_root(s3_url)
    _, model = published_stage(root_a)  # complete on node a, never pushed
    unit, _, _ = exec_unit(Path(root_a))
    use_node(monkeypatch, tmp_path, "node-b")
    with pytest.raises(FileNotFoundError, match=f"upstream stage finetune/{model.key}"):
        run_unit(unit, s3_url, never, (model,))


def test_an_upstream_stage_in_the_store_is_pulled_to_the_node_that_needs_it(s3_url, monkeypatch, tmp_path):
    use_node(monkeypatch, tmp_path, "node-a")
    root_a = working_root(s3_url)
    _, model = published_stage(root_a)
    Remote(s3_url).push(model)
    unit, problems, judge = exec_unit(Path(root_a))
    seen = []

    def compute(u, m):
        seen.append(m)
        return judge_it(u, problems, judge)(u)

    use_node(monkeypatch, tmp_path, "node-b")
    assert run_unit(unit, s3_url, compute, (model,)) == 6
    (on_b,) = seen
    assert on_b.dir.is_relative_to(working_root(s3_url)) and (on_b.dir / "model" / "weights.bin").is_file()


def test_without_a_store_the_unit_is_just_computed(tmp_path):
    unit, problems, judge = exec_unit(tmp_path)
    assert run_unit(unit, None, judge_it(unit, problems, judge)) == 6 and unit.complete()


def test_stage_inputs_move_to_another_root_with_the_same_key(tmp_path):
    from tasks.core.config import load_profile
    from tasks.core.stages.finetune import FinetuneInputs

    _, pretrained = published_stage(str(tmp_path / "a"), value=1)
    _, problems = published_stage(str(tmp_path / "a"), value=2)
    inputs = FinetuneInputs(load_profile("smoke").finetune, "train", "valid", pretrained, problems)
    moved = inputs.moved(lambda m: m.at(tmp_path / "b" / m.relative_path))
    assert moved.plan(tmp_path / "b").key == inputs.plan(tmp_path / "a").key
    assert [m.dir for _, m in moved.upstream()] == [
        tmp_path / "b" / m.relative_path for _, m in inputs.upstream()
    ]
    assert moved.finetune is inputs.finetune  # what holds no manifest is not copied


def test_a_stage_placed_on_another_node_is_pushed_and_then_pulled_not_recomputed(
    s3_url, monkeypatch, tmp_path
):
    from tasks.core.config import ProblemsConfig
    from tasks.core.nodes import run_stage_here
    from tasks.core.stages.problems import ProblemsInputs

    inputs = ProblemsInputs(ProblemsConfig(per_family=1, max_eval_problems=2))
    use_node(monkeypatch, tmp_path, "node-a")
    planned = inputs.plan(working_root(s3_url))  # the flow's node plans it, in its own mirror
    use_node(monkeypatch, tmp_path, "node-b")
    built = run_stage_here(inputs, s3_url)
    assert built.dir.is_relative_to(tmp_path / "node-b") and built.key == planned.key
    assert Remote(s3_url).manifest(built.stage, built.key).files == built.files
    use_node(monkeypatch, tmp_path, "node-c")
    monkeypatch.setattr(ProblemsInputs, "run", never)
    again = run_stage_here(inputs, s3_url)
    assert again.dir.is_relative_to(tmp_path / "node-c") and again.files == built.files
