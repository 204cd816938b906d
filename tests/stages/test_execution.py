"""Sharded execution (stage 4's engine): distinct programs, verdict rows, resumable shards."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tasks.core.execution import (
    ExecShard,
    Program,
    distinct_programs,
    execute_shard,
    plan_exec_shards,
    program_summary,
    read_executions,
    shard_done,
    write_shard,
)
from tasks.core.jobs import LimitPolicy
from tasks.core.problems.schema import Problem, Tests
from tasks.core.sandbox import Judge

SUM = Problem(
    name="sum",
    description="a+b",
    public_tests=Tests(input=("1 2\n",), output=("3\n",)),
    private_tests=Tests(input=("5 5\n", "-1 1\n"), output=("10\n", "0\n")),
)
RIGHT = "a, b = map(int, input().split())\nprint(a + b)\n"
HARDCODED = "print(3)\n"  # special-cases the visible example
CRASH = "raise SystemExit(1)\n"
POLICY = LimitPolicy()


@pytest.fixture(scope="module")
def judge():
    with Judge(workers=2) as j:
        yield j


def programs(*codes: str) -> list[Program]:
    return [Program("sum", f"h{i}", c) for i, c in enumerate(codes)]


def test_distinct_programs_keeps_first_of_each_hash():
    samples = pa.table(
        {
            "problem_id": ["p", "p", "p", "q"],
            "sample_id": [0, 1, 2, 0],
            "code_hash": ["a", "a", "b", "a"],
            "code": ["x", "x", "y", "x"],
        }
    )
    assert [(p.problem_id, p.code_hash) for p in distinct_programs(samples)] == [
        ("p", "a"),
        ("p", "b"),
        ("q", "a"),
    ]


def test_plan_covers_every_program_once():
    shards = plan_exec_shards(programs(*"abcde"), 2)
    assert [len(s.programs) for s in shards] == [2, 2, 1]


def test_public_filter_is_fooled_by_hardcoding_but_hidden_is_not(judge):
    shard = ExecShard(0, tuple(programs(RIGHT, HARDCODED, CRASH)))
    public = program_summary(execute_shard(judge, shard, {"sum": SUM}, "public", POLICY), shard.programs)
    hidden = program_summary(execute_shard(judge, shard, {"sum": SUM}, "hidden", POLICY), shard.programs)
    assert public.column("passed").to_pylist() == [True, True, False]
    assert hidden.column("passed").to_pylist() == [True, False, False]
    assert hidden.column("first_failure").to_pylist() == ["", "WRONG_ANSWER", "RUNTIME_ERROR"]


def test_generated_inputs_record_behaviour_hashes(judge):
    shard = ExecShard(0, tuple(programs(RIGHT, HARDCODED)))
    table = execute_shard(judge, shard, {"sum": SUM}, "generated", POLICY, {"sum": ["2 2\n", "7 1\n"]})
    assert table.num_rows == 4 and set(table.column("verdict").to_pylist()) == {"ACCEPTED"}
    right, hard = table.column("stdout_sha256").to_pylist()[:2], table.column("stdout_sha256").to_pylist()[2:]
    assert right[0] != right[1] and hard[0] == hard[1]


def test_shard_files_resume_without_duplicates(judge, tmp_path):
    shards = plan_exec_shards(programs(RIGHT, HARDCODED, CRASH), 1)
    for shard in shards:
        write_shard(tmp_path, shard, execute_shard(judge, shard, {"sum": SUM}, "public", POLICY))
    victim = tmp_path / shards[1].name
    victim.write_bytes(victim.read_bytes()[:50])  # a shard torn by a crash
    assert [shard_done(tmp_path, s) for s in shards] == [True, False, True]
    kept = (tmp_path / shards[0].name).stat().st_mtime_ns
    for shard in (s for s in shards if not shard_done(tmp_path, s)):
        write_shard(tmp_path, shard, execute_shard(judge, shard, {"sum": SUM}, "public", POLICY))
    assert (tmp_path / shards[0].name).stat().st_mtime_ns == kept
    table = read_executions(tmp_path)
    keys = list(zip(table.column("code_hash").to_pylist(), table.column("test_index").to_pylist()))
    assert len(keys) == len(set(keys)) == 3


def test_a_shard_file_of_other_programs_is_not_done(judge, tmp_path):
    first, other = ExecShard(0, tuple(programs(RIGHT))), ExecShard(0, (Program("sum", "zz", HARDCODED),))
    write_shard(tmp_path, first, execute_shard(judge, first, {"sum": SUM}, "public", POLICY))
    assert shard_done(tmp_path, first) and not shard_done(tmp_path, other)
