"""Benchmark: batched HF sampling vs one-at-a-time, vLLM if importable, Parquet store vs JSONL.

Run: ``.venv/bin/python tests/bench/bench_sampling.py [--sequences 64] [--tokens 128] [--threads 1]
[--repeats 3]`` (on a shared CPU, more torch threads than free cores makes OpenMP spin and
everything crawl); ``--shared-prefill`` runs only the shared-prefill section below.

Prints (all measured in this run, same scratch ~5 M-parameter Llama and same prompt; each figure
the median of ``--repeats`` runs after one untimed run of the same size):
  * tokens/s of the seed's loop (one sequence per ``generate`` call, transformers' defaults: sdpa
    attention, dynamic KV cache) vs ``HFBatchedBackend`` with the stage's defaults (static KV
    cache, eager attention on CPU) at ``batch_size=sequences`` and 4x that; goal >= 10x. Also the
    batched run with transformers' defaults, to show what the cache/attention choice adds.
  * tokens/s of ``VLLMBackend`` when vllm imports.
  * store size of synthetic code-like samples as zstd Parquet vs the same rows as JSONL (goal >= 5x
    smaller), and the store's write rate (samples/s).
  * peak RSS of a fresh process writing 10k vs 100k synthetic samples in 1000-sample shards, and
    of one *sampling* 10k vs 100k samples with a scratch model through the sample stage's loop
    (``tasks.core.stages.sample.run_shard`` per shard, then ``finish``; 4 new tokens each, so it
    takes seconds) (goal: about equal - memory bounded by shard size, not total).
  * ``--shared-prefill [--sp-n 256] [--sp-tokens 96] [--sp-batch 32] [--sp-prompts 3]
    [--sp-rounds 2] [--sp-sections all|processes|interleaved]``: tokens/s and peak RSS of
    ``HFBatchedBackend`` sampling ``--sp-n`` completions of one prompt (the longest bundled
    ``valid`` prompt, formatted by ``format_prompt``) and of ``--sp-prompts`` bundled prompts
    spread over the length range, on the default-size model (preset ``small``, scratch weights,
    its tokenizer trained on bundled ``train`` examples): repeated prompts through ``generate``
    (``prefill="repeat"``, static cache, eager: the previous default) vs shared prefill with a
    static or dynamic cache of generated tokens and eager or sdpa prefill (the multi-prompt case:
    previous vs new default only) (goal >= 2x). ``processes``: each configuration runs in its own
    process (peak RSS = that process's VmHWM, model included), one untimed batch first, then one
    timed call; configurations run round-robin ``--sp-rounds`` times (order reversed every other
    round), the median reported. ``interleaved``: the same two defaults side by side in one
    process, their calls of ``--sp-batch`` samples alternating (robust to load drift; each call
    prefills again). Sampling as the default profile: temperature 0.8, top_p 1.
    Scratch weights rarely emit EOS, so nearly every completion runs to ``--sp-tokens``.
Synthetic samples mimic AlphaCode outputs: programs assembled from a small pool of code lines, with
many exact duplicates; real model output compresses differently.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LINES = [
    "n = int(input())",
    "a = list(map(int, input().split()))",
    "print(sum(a))",
    "ans = 0",
    "for i in range(n):",
    "    ans += a[i] * i",
    "print(ans)",
    "a.sort()",
    "print(max(a) - min(a))",
    "import sys",
    "input = sys.stdin.readline",
    "s = input().strip()",
    "print(s[::-1])",
    "if n % 2 == 0:",
    "    print('YES')",
    "else:",
    "    print('NO')",
    "dp = [0] * (n + 1)",
    "for j in range(1, n + 1):",
    "    dp[j] = max(dp[j - 1], a[j - 1])",
    "print(dp[n])",
]


def synthetic_table(plan, rng: random.Random):
    import pyarrow as pa

    from tasks.core.samplestore import SCHEMA, sha256_hex, with_first_flags

    codes = ["\n".join(rng.choice(LINES) for _ in range(rng.randint(3, 9))) for _ in plan.sample_ids]
    if len(codes) > 4:  # AlphaCode-like: a share of exact duplicate programs
        for i in range(0, len(codes), 4):
            codes[i] = codes[(i * 7) % len(codes)]
    k = plan.num_samples
    cols = {
        "problem_id": [plan.problem_id] * k,
        "sample_id": list(plan.sample_ids),
        "prompt_hash": [sha256_hex(plan.problem_id)] * k,
        "completion": [f"```python\n{c}\n```\n" for c in codes],
        "code": codes,
        "code_hash": [sha256_hex(c) for c in codes],
        "num_tokens": [len(c) // 3 for c in codes],
        "logprob_sum": [-rng.random() * 80 for _ in codes],
        "finish_reason": ["stop"] * k,
        "temperature": [0.8] * k,
        "top_p": [0.95] * k,
        "seed": [plan.seed] * k,
        "model_id": ["0" * 64] * k,
        "backend": ["hf"] * k,
        "created_at": [datetime.now(timezone.utc)] * k,
        "is_first_of_code_hash": [False] * k,
    }
    return with_first_flags(pa.table(cols, schema=SCHEMA))


def _rate(backend, prompt: str, n: int, params, seed: int) -> float:
    start = time.perf_counter()
    gens = backend.generate([prompt], n, params, seed)[0]
    return sum(g.num_tokens for g in gens) / (time.perf_counter() - start)


def _measure(name: str, backend, prompt: str, n: int, params, repeats: int) -> float:
    """Median tokens/s over ``repeats`` runs, after one untimed run of the same size (the first
    large batch pays allocator growth: timing it halved the batched figure in an earlier bench)."""
    backend.generate([prompt], n, params, 0)
    rates = [_rate(backend, prompt, n, params, seed) for seed in range(1, repeats + 1)]
    med = statistics.median(rates)
    print(
        f"{name:44s} median {med:7,.0f} tok/s (min {min(rates):,.0f} .. max {max(rates):,.0f}, "
        f"{repeats} runs of {n} seq x <= {params.max_new_tokens} tok)",
        flush=True,
    )
    return med


def bench_backends(sequences: int, tokens: int, single: int, repeats: int) -> None:
    from tasks.core.sampling import HFBatchedBackend, SamplingParams
    from tests.sampling.tiny import build_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_model_"))
    model_dir = build_model_dir(tmp, hidden=256, layers=6, heads=4, intermediate=688, context=512)
    prompt = "def solve():\n    n = int(input())\n"
    params = lambda bs, **kw: SamplingParams(n=sequences, max_new_tokens=tokens, batch_size=bs, **kw)  # noqa: E731
    # the seed's loop: one sequence per generate call, transformers' defaults (sdpa, dynamic cache)
    seed_backend = HFBatchedBackend(model_dir, kv_cache="dynamic", attention="sdpa")
    print(
        f"model: {sum(p.numel() for p in seed_backend.model.parameters()) / 1e6:.2f} M params, "
        f"vocab {seed_backend.model.config.vocab_size}"
    )
    one = _measure(
        "one-at-a-time loop (batch 1, sdpa, dynamic)", seed_backend, prompt, single, params(1), repeats
    )
    ours = HFBatchedBackend(model_dir)  # the stage's defaults: static cache, eager on CPU
    same = _measure("loop with our settings (batch 1)", ours, prompt, single, params(1), repeats)
    results = {}
    for bs in sorted({sequences, 4 * sequences}):
        results[bs] = _measure(
            f"HF batched (batch {bs}, static, eager)", ours, prompt, bs, params(bs), repeats
        )
    plain = _measure(
        f"HF batched (batch {sequences}, sdpa, dynamic)",
        seed_backend,
        prompt,
        sequences,
        params(sequences),
        repeats,
    )
    print(
        f"batched {sequences} / loop = {results[sequences] / one:5.1f}x (goal >= 10x); "
        f"batched {4 * sequences} / loop = {results[4 * sequences] / one:5.1f}x; "
        f"transformers defaults batched {sequences} / loop = {plain / one:5.1f}x; "
        f"loop with our settings = {same / one:4.2f}x the seed's loop"
    )
    try:
        from tasks.core.sampling.vllm import VLLMBackend

        vb = VLLMBackend(model_dir)
    except Exception as exc:  # vLLM absent or failing to start: report, do not hide
        print(f"vLLM: skipped ({type(exc).__name__}: {str(exc)[:120]})")
        return
    vrate = _measure(f"vLLM ({sequences} seq)", vb, prompt, sequences, params(sequences), repeats)
    print(f"vLLM / loop = {vrate / one:.1f}x")


# (label, prefill, kv_cache, attention); the first is the previous default. On the shared path
# ``attention`` is the kernel of the one prefill per prompt (decode steps use the shared-prefix
# attention) and ``kv_cache`` the cache of the generated tokens.
SP_CONFIGS = (
    ("repeat, static, eager (previous)", "repeat", "static", "eager"),
    ("shared, static, eager", "shared", "static", "eager"),
    ("shared, dynamic, eager", "shared", "dynamic", "eager"),
    ("shared, static, sdpa", "shared", "static", "sdpa"),
)
SP_MULTI = SP_CONFIGS[:2]  # the multi-prompt case: the previous default vs the new one


def shared_prefill_setup(out: Path, prompts: int) -> tuple[Path, list[str]]:
    """The default-size scratch model (preset ``small``) with a tokenizer trained on bundled train
    examples, saved to ``out``; and ``prompts`` formatted ``valid`` prompts spread over the length
    range, the longest first."""
    from tasks.core.hparams import ModelSpec
    from tasks.core.modeling import build_model, train_tokenizer
    from tasks.core.problems import bundled_problems, format_prompt, format_training_example

    train = list(bundled_problems("train", seed=0, per_family=20))
    texts = [a + b for p in train for a, b in [format_training_example(p, p.solutions.solution[0])]]
    tokenizer = train_tokenizer(texts, ModelSpec().vocab_size)
    model = build_model(ModelSpec(preset="small"), tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    rng = random.Random(0)
    valid = [format_prompt(p, rng=rng) for p in bundled_problems("valid", seed=0, per_family=1)]
    valid.sort(key=lambda t: len(tokenizer(t)["input_ids"]), reverse=True)
    picks = [valid[round(i * (len(valid) // 2) / max(1, prompts - 1))] for i in range(prompts)]
    return out, list(dict.fromkeys(picks))  # longest .. median length


def shared_prefill_child(spec: str) -> None:
    """Child process: one configuration of the shared-prefill bench; prints a JSON line."""
    import torch

    from tasks.core.sampling import HFBatchedBackend, SamplingParams

    job = json.loads(Path(spec).read_text())
    torch.set_num_threads(job["threads"])
    backend = HFBatchedBackend(
        job["model_dir"], kv_cache=job["kv_cache"], attention=job["attention"], prefill=job["prefill"]
    )
    params = SamplingParams(
        n=job["n"], max_new_tokens=job["tokens"], batch_size=job["batch"], temperature=0.8
    )
    prompts = job["prompts"]
    backend.generate(prompts[:1], job["batch"], params, 99)  # untimed: one batch (allocator growth)
    start = time.perf_counter()
    gens = backend.generate(prompts, job["n"], params, 1)
    seconds = time.perf_counter() - start
    tokens = sum(g.num_tokens for group in gens for g in group)
    status = Path("/proc/self/status").read_text().splitlines()
    peak = int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024
    lengths = [backend.count_prompt_tokens(p) for p in prompts]
    reasons = sorted({g.finish_reason for group in gens for g in group})
    print(
        json.dumps(
            {
                "tokens": tokens,
                "seconds": seconds,
                "peak_mib": peak,
                "prompt_tokens": lengths,
                "finish_reasons": reasons,
            }
        )
    )


def bench_shared_prefill_interleaved(
    model_dir: Path, texts: list[str], n: int, tokens: int, batch: int
) -> None:
    """Side by side in this process: the previous default and the new one, each sampling ``n``
    completions per prompt as ``n // batch`` calls of ``batch``, the two backends' calls
    alternating (order swapped every call), so load drift on a shared box hits both alike. Each
    call prefills its prompts again (the shared path's real runs prefill once per ``n``)."""
    from tasks.core.sampling import HFBatchedBackend, SamplingParams

    configs = SP_MULTI
    backends = {
        label: HFBatchedBackend(model_dir, kv_cache=kv, attention=att, prefill=prefill)
        for label, prefill, kv, att in configs
    }
    params = SamplingParams(n=batch, max_new_tokens=tokens, batch_size=batch, temperature=0.8)
    for case, prompts in (("one prompt", texts[:1]), (f"{len(texts)} prompts", texts)):
        for backend in backends.values():
            backend.generate(prompts[:1], batch, params, 99)  # untimed
        spent = dict.fromkeys(backends, 0.0)
        made = dict.fromkeys(backends, 0)
        for call in range(max(1, n // batch)):
            for label in list(backends)[:: 1 - 2 * (call % 2)]:
                start = time.perf_counter()
                gens = backends[label].generate(prompts, batch, params, call)
                spent[label] += time.perf_counter() - start
                made[label] += sum(g.num_tokens for group in gens for g in group)
        rates = {label: made[label] / spent[label] for label in backends}
        old, new = (label for label, *_ in configs)
        print(
            f"interleaved, {case}: {old} {rates[old]:,.0f} tok/s, {new} {rates[new]:,.0f} tok/s "
            f"({made[new]:,} tok each way) -> {rates[new] / rates[old]:.2f}x (goal >= 2x)",
            flush=True,
        )


def bench_shared_prefill(
    n: int, tokens: int, batch: int, prompts: int, threads: int, rounds: int, sections: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, texts = shared_prefill_setup(Path(tmp) / "model", prompts)
        cases = [("one prompt", texts[:1], SP_CONFIGS), (f"{len(texts)} prompts", texts, SP_MULTI)]
        for case, case_prompts, configs in cases if sections != "interleaved" else []:
            runs: dict[str, list[dict]] = {label: [] for label, *_ in configs}
            for round_ in range(rounds):  # round-robin, order reversed every other round: load
                for label, prefill, kv_cache, attention in configs[:: 1 - 2 * (round_ % 2)]:  # drift
                    spec = Path(tmp) / "job.json"
                    job = {
                        "model_dir": str(model_dir),
                        "prompts": case_prompts,
                        "n": n,
                        "tokens": tokens,
                        "batch": batch,
                        "threads": threads,
                        "prefill": prefill,
                        "kv_cache": kv_cache,
                        "attention": attention,
                    }
                    spec.write_text(json.dumps(job))
                    out = subprocess.run(
                        [sys.executable, __file__, "--sp-child", str(spec)],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout.strip()
                    runs[label].append(json.loads(out.splitlines()[-1]))
            rates = {}
            for label, results in runs.items():
                per_run = [r["tokens"] / r["seconds"] for r in results]
                rates[label] = statistics.median(per_run)
                r = results[0]
                print(
                    f"{case} (prompt tokens {r['prompt_tokens']}), n={n} each, <= {tokens} new, "
                    f"batch {batch}: {label:34s} median {rates[label]:7,.0f} tok/s "
                    f"(min {min(per_run):,.0f} .. max {max(per_run):,.0f}, {rounds} runs of "
                    f"{r['tokens']:,} tok), peak RSS {max(x['peak_mib'] for x in results):.0f} MiB, "
                    f"finish {r['finish_reasons']}",
                    flush=True,
                )
            base = rates[configs[0][0]]
            best = max((k for k in rates if k != configs[0][0]), key=rates.get)
            print(
                f"{case}: best shared ({best}) / repeated = {rates[best] / base:.2f}x (goal >= 2x); "
                + ", ".join(f"{k}: {v / base:.2f}x" for k, v in rates.items() if k != configs[0][0]),
                flush=True,
            )
        if sections != "processes":
            bench_shared_prefill_interleaved(model_dir, texts, n, tokens, batch)


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
    print(
        f"store: {samples:,} samples in {len(plans)} shards of {per_shard}: "
        f"write {samples / elapsed:,.0f} samples/s"
    )
    print(
        f"size: Parquet {parquet / 1e6:.2f} MB vs JSONL {size / 1e6:.2f} MB -> {size / parquet:.1f}x smaller "
        "(goal >= 5x)"
    )


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


def sample_rss_child(samples: int, per_shard: int) -> None:
    """Child process: sample ``samples`` completions with a scratch model through the sample
    stage's own loop (plan, ``run_shard`` per shard unit, ``finish``), as stage 3 does; print the
    shard files written and the peak RSS in MiB."""
    import torch

    from tasks.core.config import SampleConfig
    from tasks.core.manifest import plan_stage, publish
    from tasks.core.sampling import SampleRequest, SamplingParams
    from tasks.core.stages import Stage
    from tasks.core.stages import sample as sample_stage
    from tests.sampling.tiny import build_model_dir

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model_stage = Path(tmp) / "finetune" / "scratch"
        model_dir = build_model_dir(model_stage / sample_stage.MODEL_DIR, hidden=64, layers=2)
        files = [f"{sample_stage.MODEL_DIR}/{p.name}" for p in model_dir.iterdir()]
        model = publish(
            model_stage, stage=Stage.FINETUNE, key="scratch", config={}, upstream=[], code="", files=files
        )
        problems = [f"problem-{i:03d}" for i in range(max(1, samples // 1000))]
        cfg = SampleConfig(
            sampling=SamplingParams(
                n=samples // len(problems), max_new_tokens=4, batch_size=250, samples_per_shard=per_shard
            )
        )
        requests = {p: SampleRequest(problem_id=p, prompt=f"# {p}\ndef solve():\n") for p in problems}
        plan = plan_stage(tmp, Stage.SAMPLE, cfg, [model], sample_stage)
        for unit in sample_stage.shard_units(plan, problems, cfg):
            sample_stage.run_shard(unit, model, cfg.sampling, requests[unit.shard.problem_id])
        manifest = sample_stage.finish(plan, problems, cfg)
        rows = len(sample_stage.store_of(manifest).files())
    status = Path("/proc/self/status").read_text().splitlines()
    print(rows, int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024)


def bench_memory(per_shard: int, with_model: bool) -> None:
    modes = [("--rss-child", "writing synthetic")] + (
        [("--rss-sample", "sampling (model)")] if with_model else []
    )
    for flag, what in modes:
        peaks = {}
        for samples in (10_000, 100_000):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, flag, str(samples), "--per-shard", str(per_shard)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            peaks[samples] = float(out)
            print(
                f"peak RSS {what} {samples:,} samples in shards of {per_shard}: "
                f"{peaks[samples]:.0f} MiB ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        print(
            f"peak ratio {what} 100k/10k: {peaks[100_000] / peaks[10_000]:.2f} "
            "(goal ~1: bounded by shard size)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--single", type=int, default=8, help="sequences for the one-at-a-time loop")
    parser.add_argument("--store-samples", type=int, default=20_000)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--rss-child", type=int, default=0)
    parser.add_argument("--rss-sample", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--shared-prefill", action="store_true", help="only the shared-prefill section")
    parser.add_argument("--sp-n", type=int, default=256, help="samples per prompt (shared-prefill)")
    parser.add_argument("--sp-tokens", type=int, default=96, help="max_new_tokens (shared-prefill)")
    parser.add_argument("--sp-batch", type=int, default=32, help="batch_size (shared-prefill)")
    parser.add_argument("--sp-prompts", type=int, default=3, help="prompts in the multi-prompt case")
    parser.add_argument("--sp-rounds", type=int, default=2, help="timed runs per configuration")
    parser.add_argument("--sp-sections", choices=("all", "processes", "interleaved"), default="all")
    parser.add_argument("--sp-child", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: robust on a shared box)"
    )
    args = parser.parse_args()
    if args.rss_child:
        peak_rss_child(args.rss_child, args.per_shard)
        return
    if args.rss_sample:
        sample_rss_child(args.rss_sample, args.per_shard)
        return
    if args.sp_child:
        shared_prefill_child(args.sp_child)
        return
    if args.shared_prefill:
        import torch

        torch.set_num_threads(args.threads)
        print(f"torch threads (each child and the interleaved runs): {args.threads}")
        bench_shared_prefill(
            args.sp_n,
            args.sp_tokens,
            args.sp_batch,
            args.sp_prompts,
            args.threads,
            args.sp_rounds,
            args.sp_sections,
        )
        return
    if not args.skip_model:
        import torch

        torch.set_num_threads(args.threads)
        print(f"torch threads: {torch.get_num_threads()}")
        bench_backends(args.sequences, args.tokens, args.single, args.repeats)
    bench_store(args.store_samples, args.per_shard)
    bench_memory(args.per_shard, with_model=not args.skip_model)


if __name__ == "__main__":
    main()
