"""Tokens/s of the training loop for the ``small`` preset, bf16 autocast vs fp32, side by side.

Runs :func:`tasks.core.training.train` itself (AdamW, clipping, accumulation: the real loop)
on a slice of the stdlib corpus, alternating fp32 and bf16 runs ``--rounds`` times so that
load from other processes hits both modes alike. Reports the median per-step tokens/s of each
run, skipping the first ``--warmup`` steps (one-off kernel set-up), and the bf16/fp32 ratio.

    .venv/bin/python tests/bench/bench_training.py [--steps 20] [--rounds 2] [--threads N] [--device cpu]

The two modes are two device-policy placements (:mod:`tasks.core.device`): dtype float32 and
dtype bfloat16 (bf16 autocast over float32 weights) on ``--device``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.core.corpus import CorpusSpec, load_corpus  # noqa: E402
from tasks.core.device import DeviceConfig, Placement, resolve  # noqa: E402
from tasks.core.modeling import ModelSpec, build_model, count_parameters, train_tokenizer  # noqa: E402
from tasks.core.training import PackedLMDataset, TrainHParams, read_metrics, train  # noqa: E402


def run_once(model_spec, tokenizer, data, hp: TrainHParams, warmup: int, placement: Placement) -> float:
    model = build_model(model_spec, tokenizer)
    with tempfile.TemporaryDirectory() as out:
        result = train(model, tokenizer, data, None, hp, Path(out), placement=placement)
        rates = [m.tok_per_s for m in read_metrics(result.metrics_path)[warmup:]]
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--device", default="cpu", help="the device policy's device: cpu, cuda, auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    corpus = load_corpus(CorpusSpec(max_bytes=2_000_000))
    tokenizer = train_tokenizer(corpus.train_texts, vocab_size=4096)
    data = PackedLMDataset(corpus.train_texts, tokenizer, args.seq_len)
    spec = ModelSpec(preset="small")
    n_params = count_parameters(build_model(spec, tokenizer))
    print(
        f"setup {time.perf_counter() - t0:.1f}s: {len(tokenizer)} tokens vocab, {data.n_tokens} corpus tokens, "
        f"small preset {n_params / 1e6:.2f} M params, batch {args.batch_size} x {args.seq_len}, "
        f"torch threads {torch.get_num_threads()}, {args.steps} steps per run"
    )
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for r in range(args.rounds):
        for mode in ("fp32", "bf16"):
            hp = TrainHParams(
                max_steps=args.steps,
                batch_size=args.batch_size,
                seq_len=args.seq_len,
                warmup_steps=2,
                eval_every=10**6,
                checkpoint_every=10**6,
            )
            dtype = "bfloat16" if mode == "bf16" else "float32"
            placement = resolve(DeviceConfig(device=args.device, dtype=dtype))
            rate = run_once(spec, tokenizer, data, hp, args.warmup, placement)
            rates[mode].append(rate)
            print(f"round {r + 1} {mode}: {rate:,.0f} tok/s (median per step)")
    fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
    print(f"fp32 {fp32:,.0f} tok/s | bf16 {bf16:,.0f} tok/s | bf16/fp32 = {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()
