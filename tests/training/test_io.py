"""tasks.core.io: atomic writes, the model saver and the one checkpoint format."""

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tasks.core import io


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


class _Boom(RuntimeError):
    pass


def test_atomic_writes_replace_the_target_and_leave_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    io.atomic_write_json(target, {"x": 1})
    io.atomic_write_json(target, {"x": 2})
    io.atomic_write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}, {"b": 2}])
    assert json.loads(target.read_text()) == {"x": 2}
    assert (tmp_path / "rows.jsonl").read_text() == '{"a": 1}\n{"b": 2}\n'
    assert not _leftovers(target.parent) and not _leftovers(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(TypeError):
        io.atomic_write_bytes(target, "not bytes")  # the write itself fails
    assert target.read_text() == "old" and not _leftovers(tmp_path)


def test_write_metrics_unions_keys_as_float_columns_or_uses_a_schema(tmp_path):
    path = io.write_metrics(tmp_path / "m.parquet", [{"step": 1, "a": 0.5}, {"step": 2, "b": 1}])
    table = pq.read_table(path)
    assert table.column_names == ["a", "b", "step"]
    assert table.to_pydict() == {"a": [0.5, None], "b": [None, 1.0], "step": [1.0, 2.0]}
    schema = pa.schema([("step", pa.int64()), ("a", pa.float64())])
    typed = pq.read_table(io.write_metrics(tmp_path / "t.parquet", [{"step": 1, "a": 0.5}], schema=schema))
    assert typed.schema == schema and typed.to_pydict() == {"step": [1], "a": [0.5]}


def test_atomic_dir_swaps_in_on_success_and_keeps_the_old_dir_on_failure(tmp_path):
    target = tmp_path / "model"
    with io.atomic_dir(target) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(_Boom):
        with io.atomic_dir(target) as tmp:
            (tmp / "w").write_text("2")
            raise _Boom()
    assert (target / "w").read_text() == "1" and not _leftovers(tmp_path)
    with io.atomic_dir(target) as tmp:
        (tmp / "w").write_text("3")
    assert (target / "w").read_text() == "3" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_remove_stale_deletes_leftover_temps_only(tmp_path):
    (tmp_path / ".checkpoint.tmp-abc").mkdir()
    (tmp_path / ".model.old-xyz").mkdir()
    (tmp_path / ".metrics.parquet.tmp-1").write_text("partial")
    (tmp_path / "model").mkdir()
    io.remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_checkpoint_round_trip_restores_states_meta_and_rng(tmp_path):
    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    io.save_checkpoint(
        tmp_path / "ckpt", 7, {"model": layer.state_dict(), "optimizer": opt.state_dict()}, {"rows": [1.5]}
    )
    expected = (torch.rand(2), random.random(), np.random.rand())
    ckpt = io.read_checkpoint(tmp_path / "ckpt")
    assert ckpt.step == 7 and ckpt.meta == {"rows": [1.5]}
    assert (tmp_path / "ckpt" / io.CHECKPOINT_MARKER).read_text() == "step 7\n"
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(ckpt.state("model"))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), layer.state_dict().values()))
    assert ckpt.state("optimizer")["state"][0]["step"] == 1
    ckpt.restore_rng()
    assert torch.equal(torch.rand(2), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]
    with pytest.raises(FileNotFoundError, match="no state 'scheduler'"):
        ckpt.state("scheduler")


def test_checkpoints_load_weights_only(tmp_path):
    """A checkpoint holding a pickled object (not tensors/containers) is refused on load."""
    io.save_checkpoint(tmp_path / "ckpt", 1, {"model": {"obj": _Boom("x")}}, {})
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        io.read_checkpoint(tmp_path / "ckpt").state("model")


def test_incomplete_checkpoints_are_ignored_and_pruning_keeps_the_newest(tmp_path):
    for step in (1, 2, 3):
        io.save_checkpoint(tmp_path / f"step-{step}", step, {}, {})
    (tmp_path / "step-3" / io.CHECKPOINT_MARKER).unlink()
    assert io.read_checkpoint(tmp_path / "step-3") is None
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / io.CHECKPOINT_MARKER).write_text("step 1\n")  # e.g. a pre-io format
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        io.read_checkpoint(tmp_path / "old")
    (tmp_path / "old" / io.CHECKPOINT_MARKER).unlink()
    (tmp_path / "old").rmdir()
    assert [s for s, _ in io.numbered_dirs(tmp_path, "step-")] == [1, 2]
    io.prune_checkpoints(tmp_path, "step-", keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-2", "step-3"]
