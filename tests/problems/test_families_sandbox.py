"""Every bundled (family, variant): the reference passes all its tests and the wrong program
fails at least one private test -- both run in the sandbox Judge, never in this process."""

import pytest

from tasks.core import sandbox
from tasks.core.problems import BUNDLED_SPLITS, Problem, bundled_problems
from tasks.core.problems.bundled import get_family, list_families
from tasks.core.sandbox.types import Job, TestCase, Verdict


def _one_instance_per_family_variant() -> list[Problem]:
    chosen: dict[tuple[str, str], Problem] = {}
    for split in ("train", "rl_oracle", "test_templates", "test_families"):
        for p in bundled_problems(split, seed=11, per_family=9):  # 9 consecutive templates: every variant
            chosen.setdefault((p.tags["family"], p.tags["variant"]), p)
    return list(chosen.values())


def _job(program: str, pairs: list[tuple[str, str]], stop: bool = False) -> Job:
    tests = tuple(TestCase(input=i, expected=o) for i, o in pairs)
    return Job(program=program, tests=tests, stop_on_first_failure=stop)


def test_references_pass_and_wrong_programs_fail_in_sandbox():
    problems = _one_instance_per_family_variant()
    expected = {
        (name, v.name)
        for name in list_families()
        for v in get_family(name).variants + get_family(name).reserved_variants
    }
    assert {(p.tags["family"], p.tags["variant"]) for p in problems} == expected
    jobs = []
    for p in problems:
        every_test = p.public_tests.pairs() + p.private_tests.pairs() + p.generated_tests.pairs()
        jobs.append(_job(p.solutions.solution[0], every_test))
        jobs.append(_job(p.incorrect_solutions.solution[0], p.private_tests.pairs(), stop=True))
    with sandbox.Judge(workers=2) as judge:
        results = judge.run_many(jobs)
    failures = []
    for p, ref, wrong in zip(problems, results[0::2], results[1::2]):
        if not ref.passed:
            failures.append(f"{p.name}: reference {ref.first_failure}")
        if wrong.passed:
            failures.append(f"{p.name}: wrong program passed every private test")
        elif wrong.first_failure.verdict is Verdict.SANDBOX_ERROR:
            failures.append(f"{p.name}: sandbox error {wrong.first_failure.detail}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_references_pass_on_many_instances_of_every_split_in_sandbox():
    problems = [p for s in BUNDLED_SPLITS for p in bundled_problems(s, seed=5, per_family=3)]
    problems = [p for p in problems if p.solutions.solution]  # RL-cell splits: rl_oracle has them
    jobs = [
        _job(
            p.solutions.solution[0],
            p.public_tests.pairs() + p.private_tests.pairs() + p.generated_tests.pairs(),
        )
        for p in problems
    ]
    with sandbox.Judge(workers=2) as judge:
        results = judge.run_many(jobs)
    bad = [p.name for p, r in zip(problems, results) if not r.passed]
    assert not bad, bad[:10]


def _humaneval_in_sandbox(limit: int) -> None:
    from tasks.core.problems import assemble_program, load_humaneval

    problems = list(load_humaneval())[:limit]
    jobs = []
    for p in problems:  # the stored harness (check + check(entry_point)) follows the program
        harness = p.private_tests.input[0]
        for code in (p.solutions.solution[0], assemble_program(p, "    return None\n")):
            jobs.append(Job(program=code + "\n" + harness, tests=(TestCase(),), style="assert"))
    with sandbox.Judge(workers=2) as judge:
        results = judge.run_many(jobs)
    assert [p.name for p, r in zip(problems, results[0::2]) if not r.passed] == []
    assert [p.name for p, r in zip(problems, results[1::2]) if r.passed] == []


def test_humaneval_layout_runs_in_sandbox():
    _humaneval_in_sandbox(limit=16)


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass_in_sandbox():
    _humaneval_in_sandbox(limit=164)
