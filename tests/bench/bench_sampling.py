"""Benchmark: batched HF sampling vs one-at-a-time, vLLM if importable, Parquet store vs JSONL.

Run: ``.venv/bin/python tests/bench/bench_sampling.py [--sequences 64] [--tokens 128] [--threads 1]``
(on a shared CPU, more torch threads than free cores makes OpenMP spin and everything crawl)

Prints (all measured in this run, same scratch ~5 M-parameter Llama and same prompt):
  * tokens/s of ``HFBatchedBackend`` with ``batch_size=sequences`` vs ``batch_size=1`` (one sequence
    per ``generate`` call, the seed pipeline's loop); goal >= 10x.
  * tokens/s of ``VLLMBackend`` when vllm imports.
  * store size of synthetic code-like samples as zstd Parquet vs the same rows as JSONL (goal >= 5x
    smaller), and the store's write rate (samples/s).
  * peak RSS of a fresh process writing 10k vs 100k synthetic samples in 1000-sample shards (goal:
    about equal - memory bounded by shard size, not total).
Synthetic samples mimic AlphaCode outputs: programs assembled from a small pool of code lines, with
many exact duplicates; real model output compresses differently.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LINES = [
    "n = int(input())", "a = list(map(int, input().split()))", "print(sum(a))", "ans = 0",
    "for i in range(n):", "    ans += a[i] * i", "print(ans)", "a.sort()", "print(max(a) - min(a))",
    "import sys", "input = sys.stdin.readline", "s = input().strip()", "print(s[::-1])",
    "if n % 2 == 0:", "    print('YES')", "else:", "    print('NO')", "dp = [0] * (n + 1)",
    "for j in range(1, n + 1):", "    dp[j] = max(dp[j - 1], a[j - 1])", "print(dp[n])",
]


def synthetic_table(plan, rng: random.Random):
    from tasks.core.samplestore import SCHEMA, sha256_hex, with_first_flags
    import pyarrow as pa

    codes = ["\n".join(rng.choice(LINES) for _ in range(rng.randint(3, 9))) for _ in plan.sample_ids]
    if len(codes) > 4:  # AlphaCode-like: a share of exact duplicate programs
        for i in range(0, len(codes), 4):
            codes[i] = codes[(i * 7) % len(codes)]
    k = plan.num_samples
    cols = {
        "problem_id": [plan.problem_id] * k, "sample_id": list(plan.sample_ids),
        "prompt_hash": [sha256_hex(plan.problem_id)] * k,
        "completion": [f"```python\n{c}\n```\n" for c in codes], "code": codes,
        "code_hash": [sha256_hex(c) for c in codes], "num_tokens": [len(c) // 3 for c in codes],
        "logprob_sum": [-rng.random() * 80 for _ in codes], "finish_reason": ["stop"] * k,
        "temperature": [0.8] * k, "top_p": [0.95] * k, "seed": [plan.seed] * k,
        "model_id": ["0" * 64] * k, "backend": ["hf"] * k,
        "created_at": [datetime.now(timezone.utc)] * k, "is_first_of_code_hash": [False] * k,
    }
    return with_first_flags(pa.table(cols, schema=SCHEMA))


def bench_backends(sequences: int, tokens: int, single: int) -> None:
    from tasks.core.sampling import HFBatchedBackend, SamplingParams
    from tests.sampling.tiny import build_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_model_"))
    model_dir = build_model_dir(tmp, hidden=256, layers=6, heads=4, intermediate=688, context=512)
    backend = HFBatchedBackend(model_dir)
    params_of = lambda bs: SamplingParams(n=sequences, max_new_tokens=tokens, batch_size=bs)  # noqa: E731
    print(f"model: {sum(p.numel() for p in backend.model.parameters()) / 1e6:.2f} M params, "
          f"vocab {backend.model.config.vocab_size}")
    prompt = "def solve():\n    n = int(input())\n"
    backend.generate([prompt], 2, params_of(2), 0)  # warm-up

    def rate(bs: int, n: int) -> float:
        start = time.perf_counter()
        gens = backend.generate([prompt], n, params_of(bs), 1)[0]
        return sum(g.num_tokens for g in gens) / (time.perf_counter() - start)

    batched = rate(sequences, sequences)
    one = rate(1, single)
    print(f"HF batched ({sequences} seq x {tokens} tok, batch {sequences}): {batched:,.0f} tok/s")
    print(f"HF one-at-a-time ({single} seq x {tokens} tok, batch 1):   {one:,.0f} tok/s")
    print(f"batched speed-up: {batched / one:.1f}x (goal >= 10x)")
    try:
        from tasks.core.sampling_vllm import VLLMBackend

        vb = VLLMBackend(model_dir)
    except Exception as exc:  # vLLM absent or failing to start: report, do not hide
        print(f"vLLM: skipped ({type(exc).__name__}: {str(exc)[:120]})")
        return
    vb.generate([prompt], 2, params_of(2), 0)
    start = time.perf_counter()
    gens = vb.generate([prompt], sequences, params_of(sequences), 1)[0]
    vrate = sum(g.num_tokens for g in gens) / (time.perf_counter() - start)
    print(f"vLLM ({sequences} seq x {tokens} tok): {vrate:,.0f} tok/s ({vrate / one:.1f}x one-at-a-time)")


def bench_store(samples: int, per_shard: int) -> None:
    from tasks.core.samplestore import SampleStore, plan_shards

    rng = random.Random(0)
    problems = [f"problem-{i:03d}" for i in range(samples // 1000)]
    plans = plan_shards(problems, samples // len(problems), per_shard)
    tables = [synthetic_table(p, rng) for p in plans]
    with tempfile.TemporaryDirectory() as tmp:
        store = SampleStore(Path(tmp) / "store")
        start = time.perf_counter()
        for plan, table in zip(plans, tables):
            store.write_shard(table, plan)
        elapsed = time.perf_counter() - start
        parquet = sum(f.stat().st_size for f in store.root.rglob("*.parquet"))
        jsonl = Path(tmp) / "samples.jsonl"
        with jsonl.open("w") as fh:
            for table in tables:
                for row in table.to_pylist():
                    row["created_at"] = row["created_at"].isoformat()
                    fh.write(json.dumps(row) + "\n")
        size = jsonl.stat().st_size
    print(f"store: {samples:,} samples in {len(plans)} shards of {per_shard}: "
          f"write {samples / elapsed:,.0f} samples/s")
    print(f"size: Parquet {parquet / 1e6:.2f} MB vs JSONL {size / 1e6:.2f} MB -> {size / parquet:.1f}x smaller "
          "(goal >= 5x)")


def peak_rss_child(samples: int, per_shard: int) -> None:
    """Child process: write ``samples`` synthetic rows shard by shard; print peak RSS in MiB."""
    from tasks.core.samplestore import SampleStore, plan_shards

    rng = random.Random(0)
    problems = [f"problem-{i:03d}" for i in range(max(1, samples // 1000))]
    with tempfile.TemporaryDirectory() as tmp:
        store = SampleStore(tmp)
        for plan in plan_shards(problems, samples // len(problems), per_shard):
            store.write_shard(synthetic_table(plan, rng), plan)
    # VmHWM (this process's own peak RSS); ru_maxrss would carry the parent's peak across exec.
    status = Path("/proc/self/status").read_text().splitlines()
    print(int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024)


def bench_memory(per_shard: int) -> None:
    peaks = {}
    for samples in (10_000, 100_000):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(samples), "--per-shard", str(per_shard)],
            check=True, capture_output=True, text=True,
        ).stdout.split()[-1]
        peaks[samples] = float(out)
        print(f"peak RSS writing {samples:,} samples in shards of {per_shard}: {peaks[samples]:.0f} MiB")
    print(f"peak ratio 100k/10k: {peaks[100_000] / peaks[10_000]:.2f} (goal ~1: bounded by shard size)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--single", type=int, default=8, help="sequences for the one-at-a-time loop")
    parser.add_argument("--store-samples", type=int, default=20_000)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--rss-child", type=int, default=0)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: robust on a shared box)")
    args = parser.parse_args()
    if args.rss_child:
        peak_rss_child(args.rss_child, args.per_shard)
        return
    if not args.skip_model:
        import torch

        torch.set_num_threads(args.threads)
        print(f"torch threads: {torch.get_num_threads()}")
        bench_backends(args.sequences, args.tokens, args.single)
    bench_store(args.store_samples, args.per_shard)
    bench_memory(args.per_shard)


if __name__ == "__main__":
    main()
