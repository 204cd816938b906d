"""A small synthetic run directory written with the real writers, in the stage schemas.

Layout: problems, finetune, rl (complete); sample/sft (problems ``p/1`` with 6 samples and
``q`` with 4), filter/cluster/evaluate of it; sample/rl with no downstream stage; and an
incomplete ``filter`` directory (no manifest). Verdicts of ``p/1`` by code:
A (samples 0, 2): public pass, hidden pass, cluster 0 selected #0;
B (samples 1, 5): public pass, hidden FAIL (WRONG_ANSWER), cluster 1 selected #1;
C (sample 3): public WRONG_ANSWER; D (sample 4): public TIME_LIMIT_EXCEEDED.
``q``: E (0, 1), F (2), G (3) all fail public (so no cluster), hidden fail.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.execution import EXEC_SCHEMA, PROGRAM_SCHEMA, ExecShard, Program, write_shard
from tasks.core.manifest import Manifest, list_files, publish
from tasks.core.samplestore import SCHEMA, SampleStore, ShardPlan, derive_seed, sha256_hex, with_first_flags

# the stage outputs' schemas (tasks/core/stages/{filter,cluster,evaluate}.py); test_schemas checks them
VERDICT_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("sample_id", pa.int64()),
        ("code_hash", pa.string()),
        ("passed_public", pa.bool_()),
        ("first_failure_passed_public", pa.string()),
    ]
)
CLUSTER_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("code_hash", pa.string()),
        ("cluster_id", pa.int64()),
        ("cluster_samples", pa.int64()),
        ("selected", pa.bool_()),
        ("selection_rank", pa.int32()),
    ]
)
PER_SAMPLE_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("sample_id", pa.int64()),
        ("code_hash", pa.string()),
        ("passed_hidden", pa.bool_()),
        ("first_failure_passed_hidden", pa.string()),
        ("passed_public", pa.bool_()),
        ("cluster_id", pa.int64()),
    ]
)

CODES = {"p/1": "ABACDB", "q": "EEFG"}
PUBLIC = {
    "A": "",
    "B": "",
    "C": "WRONG_ANSWER",
    "D": "TIME_LIMIT_EXCEEDED",
    "E": "RUNTIME_ERROR",
    "F": "WRONG_ANSWER",
    "G": "COMPILATION_ERROR",
}
HIDDEN = {
    "A": "",
    "B": "WRONG_ANSWER",
    "C": "WRONG_ANSWER",
    "D": "TIME_LIMIT_EXCEEDED",
    "E": "RUNTIME_ERROR",
    "F": "WRONG_ANSWER",
    "G": "COMPILATION_ERROR",
}
CLUSTERS = {"A": (0, 2, True, 0), "B": (1, 2, True, 1)}
FINISH = ("stop", "length", "eos")


def code_of(letter: str) -> str:
    return f"print({letter!r})\n"


def _sample_table(problem: str, letters: str, model_id: str) -> pa.Table:
    n = len(letters)
    cols = {
        "problem_id": [problem] * n,
        "sample_id": list(range(n)),
        "prompt_hash": [sha256_hex(problem)] * n,
        "completion": [code_of(c) + "<eos>" for c in letters],
        "code": [code_of(c) for c in letters],
        "code_hash": [sha256_hex(code_of(c)) for c in letters],
        "num_tokens": [10 + i for i in range(n)],
        "logprob_sum": [-1.5] * n,
        "finish_reason": [FINISH[i % 3] for i in range(n)],
        "temperature": [0.8] * n,
        "top_p": [0.95] * n,
        "seed": [7] * n,
        "model_id": [model_id] * n,
        "backend": ["hf"] * n,
        "created_at": [datetime(2025, 1, 1, tzinfo=timezone.utc)] * n,
        "is_first_of_code_hash": [False] * n,
    }
    return with_first_flags(pa.table(cols, schema=SCHEMA))


def _stage(
    root: Path,
    stage: str,
    key: str,
    upstream: list[Manifest],
    payload: dict[str, pa.Table] | None = None,
    metrics: dict | None = None,
) -> Manifest:
    directory = root / stage / key
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in (payload or {}).items():
        pq.write_table(table, directory / name, compression="zstd")
    if not payload and not any(directory.iterdir()):
        (directory / "done.txt").write_text(stage)
    return publish(
        directory,
        stage=stage,
        key=key,
        config={},
        upstream=upstream,
        code="test",
        files=list_files(directory),
        metrics=metrics or {},
    )


def _samples(root: Path, key: str, model: Manifest, problems: Manifest) -> Manifest:
    store = SampleStore(root / "sample" / key / "samples")
    for problem, letters in CODES.items():
        plan = ShardPlan(problem, 0, 0, len(letters), derive_seed(7, problem, 0))
        store.write_shard(_sample_table(problem, letters, model.key), plan)
    return _stage(
        root, "sample", key, [model, problems], metrics={"problems": 2, "samples": 10, "unique_programs": 7}
    )


def _per_program(verdicts: dict[str, str]) -> list[tuple[str, str, str, bool, str]]:
    return [
        (p, str(i), c, verdicts[c] == "", verdicts[c])
        for p, letters in CODES.items()
        for i, c in enumerate(letters)
    ]


def verdict_table() -> pa.Table:
    rows = _per_program(PUBLIC)
    return pa.table(
        {
            "problem_id": [r[0] for r in rows],
            "sample_id": [int(r[1]) for r in rows],
            "code_hash": [sha256_hex(code_of(r[2])) for r in rows],
            "passed_public": [r[3] for r in rows],
            "first_failure_passed_public": [r[4] for r in rows],
        },
        schema=VERDICT_SCHEMA,
    )


def programs_table() -> pa.Table:
    seen = {(p, c) for p, letters in CODES.items() for c in letters}
    rows = sorted(seen)
    return pa.table(
        {
            "problem_id": [p for p, _ in rows],
            "code_hash": [sha256_hex(code_of(c)) for _, c in rows],
            "passed": [PUBLIC[c] == "" for _, c in rows],
            "first_failure": [PUBLIC[c] for _, c in rows],
            "tests_run": [1] * len(rows),
            "sandbox_errors": [0] * len(rows),
        },
        schema=PROGRAM_SCHEMA,
    )


def cluster_table() -> pa.Table:
    rows = [(c, *CLUSTERS[c]) for c in sorted(CLUSTERS)]
    return pa.table(
        {
            "problem_id": ["p/1"] * len(rows),
            "code_hash": [sha256_hex(code_of(r[0])) for r in rows],
            "cluster_id": [r[1] for r in rows],
            "cluster_samples": [r[2] for r in rows],
            "selected": [r[3] for r in rows],
            "selection_rank": [r[4] for r in rows],
        },
        schema=CLUSTER_SCHEMA,
    )


def per_sample_table() -> pa.Table:
    rows = _per_program(HIDDEN)
    return pa.table(
        {
            "problem_id": [r[0] for r in rows],
            "sample_id": [int(r[1]) for r in rows],
            "code_hash": [sha256_hex(code_of(r[2])) for r in rows],
            "passed_hidden": [r[3] for r in rows],
            "first_failure_passed_hidden": [r[4] for r in rows],
            "passed_public": [PUBLIC[r[2]] == "" for r in rows],
            "cluster_id": [CLUSTERS[r[2]][0] if r[2] in CLUSTERS else None for r in rows],
        },
        schema=PER_SAMPLE_SCHEMA,
    )


def write_executions(directory: Path, test_set: str, verdicts: dict[str, str]) -> None:
    """One execution row per distinct program (its first test), as the judge's shards hold."""
    programs = sorted({(p, c) for p, letters in CODES.items() for c in letters})
    rows = {name: [] for name in EXEC_SCHEMA.names}
    for problem, letter in programs:
        for name, value in (
            ("problem_id", problem),
            ("code_hash", sha256_hex(code_of(letter))),
            ("test_set", test_set),
            ("test_index", 0),
            ("verdict", verdicts[letter] or "ACCEPTED"),
            ("wall_s", 0.01),
            ("cpu_s", 0.01),
            ("peak_memory_kb", 1000),
            ("exit_code", 0),
            ("stdout_sha256", sha256_hex(letter)),
            ("sandbox_retries", 0),
        ):
            rows[name].append(value)
    shard = ExecShard(0, tuple(Program(p, sha256_hex(code_of(c)), code_of(c)) for p, c in programs))
    directory.mkdir(parents=True, exist_ok=True)
    write_shard(directory, shard, pa.table(rows, schema=EXEC_SCHEMA))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs") / "default"
    problems = _stage(root, "problems", "prob0001", [])
    finetune = _stage(root, "finetune", "ft000001", [problems])
    rl = _stage(root, "rl", "rl000001", [finetune, problems])
    sft = _samples(root, "sftsample001", finetune, problems)
    _samples(root, "rlsample0001", rl, problems)
    write_executions(root / "filter" / "filt000001" / "executions", "public", PUBLIC)
    write_executions(root / "evaluate" / "eval000001" / "executions", "hidden", HIDDEN)
    filt = _stage(
        root,
        "filter",
        "filt000001",
        [sft, problems],
        {"programs.parquet": programs_table(), "sample_verdicts.parquet": verdict_table()},
        {"samples": 10, "surviving_samples": 4},
    )
    clus = _stage(
        root,
        "cluster",
        "clus000001",
        [sft, filt, problems],
        {"clusters.parquet": cluster_table()},
        {"clusters": 2, "selected": 2},
    )
    _stage(
        root,
        "evaluate",
        "eval000001",
        [sft, filt, clus, problems],
        {"per_sample.parquet": per_sample_table()},
        {"label": "sft", "all/pass@k/1": 0.1667},
    )
    (root / "filter" / "zzincomplete").mkdir()
    (root / "filter" / "zzincomplete" / "programs.parquet").write_bytes(b"partial")
    return root
