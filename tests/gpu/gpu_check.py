"""The GPU check: sampling, bf16 training with a resume, and GRPO on one accelerator, timed.

Run: ``make gpu-check`` or ``.venv/bin/python tests/gpu/gpu_check.py [--cpu] [--tiny] [--vllm]
[--out runs/gpu_check.json] [--samples 1000] [--train-steps 30] [--grpo-steps 3]``. No network:
the model is a random-init Qwen2 built here (tests/gpu/random_model.py; Qwen2.5-0.5B's shapes,
~494 M parameters, or ``--tiny`` the same architecture scaled down) with the project's own BPE
tokenizer, the problems are the bundled ones.

Where: the device policy (:mod:`tasks.core.device`): the first GPU when torch sees one, else -
and always with ``--cpu`` - the CPU. Training and GRPO run with ``dtype = "bfloat16"`` (bf16
autocast, float32 master weights); sampling with ``dtype = "auto"`` (bfloat16 weights on a GPU
that has it, float32 on the CPU, whose bf16 kernels are slow at these sizes). Without a GPU the
check runs at ``--tiny`` size (CI runs this mode: tests/gpu/test_gpu_check.py).

Sections, each timed, each recorded even when it fails (its error in the JSON):
  * ``sample``: ``--samples`` completions (10 bundled ``valid`` problems x samples/10, T = 0.8)
    through the sample stage's shard function into a sample store, then the store validated
    (``SampleStore.finalize`` + ``validate``: exactly problems x n rows, unique ids, exact dedup
    flags); transformers backend, or vLLM with ``--vllm``. Figures: samples/s, generated tokens/s.
  * ``train``: ``--train-steps`` optimizer steps of the shared training loop in bf16 on packed
    bundled training examples, interrupted after step 2/3 of them (once the checkpoint there is
    written) and resumed by a second call, which must report ``resumed_from_step`` = that
    checkpoint and finish all the steps. Figures: tokens/s.
  * ``grpo``: ``--grpo-steps`` GRPO steps (TRL; the project's trainer with the execution
    reward: programs run on hidden tests in the sandbox judge, bubblewrap) on bundled ``rl``
    problems. Figures: step times, completion tokens per second of the section's wall time
    (model loading included).
Each section records its peak GPU memory (``torch.cuda.max_memory_allocated``, GiB; null on the
CPU) and the process's peak RSS so far. The JSON (``--out``) also holds the device, dtype, GPU
name, torch/transformers/trl versions and model size. Exit status 0 only if every section passed.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PROBLEMS = 10  # sampled problems; --samples is spread over them


class _Interrupt(RuntimeError):
    """Raised from the training progress callback to stop the first training call."""


def _sizes(tiny: bool) -> dict[str, int]:
    if tiny:
        return {"max_new_tokens": 16, "batch": 50, "seq_len": 128, "train_batch": 4, "grpo_gens": 4}
    return {"max_new_tokens": 128, "batch": 100, "seq_len": 1024, "train_batch": 8, "grpo_gens": 8}


def _peak() -> dict[str, float | None]:
    import torch

    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"peak_gpu_mem_gib": None if gpu is None else round(gpu, 3), "peak_rss_gib": round(rss, 3)}


def _section(report: dict, name: str, fn: Callable[[], dict[str, Any]]) -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        figures, ok, error = fn(), True, None
    except Exception as exc:  # recorded, the other sections still run
        figures, ok, error = {}, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    report["sections"][name] = {
        "ok": ok,
        "seconds": round(time.perf_counter() - started, 3),
        **figures,
        **_peak(),
        **({"error": error} if error else {}),
    }
    status = "ok" if ok else "FAILED"
    print(f"[gpu-check] {name}: {status} in {report['sections'][name]['seconds']} s", flush=True)
    if error:
        print(error, file=sys.stderr, flush=True)


def _sample(model_dir: Path, placement, args, sizes: dict[str, int], work: Path) -> dict[str, Any]:
    from tasks.core.problems import extract_program, format_prompt
    from tasks.core.problems.bundled import bundled_problems
    from tasks.core.samplestore import SampleStore, plan_shards
    from tasks.core.sampling import HFBatchedBackend, SampleRequest, SamplingParams, sample_shard

    problems = list(bundled_problems("valid", per_family=4))[:PROBLEMS]
    n = max(1, args.samples // len(problems))
    params = SamplingParams(
        n=n,
        temperature=0.8,
        max_new_tokens=sizes["max_new_tokens"],
        batch_size=sizes["batch"],
        samples_per_shard=n,
        backend="vllm" if args.vllm else "hf",
    )
    if args.vllm:
        from tasks.core.sampling.vllm import VLLMBackend

        backend = VLLMBackend(model_dir, placement=placement, max_new_tokens=params.max_new_tokens)
    else:
        backend = HFBatchedBackend(model_dir, placement)
    ids = [p.name for p in problems]
    store = SampleStore(work / "samples")
    started = time.perf_counter()
    tokens = 0
    for plan in plan_shards(ids, n, n, base_seed=0):
        problem = next(p for p in problems if p.name == plan.problem_id)
        request = SampleRequest(problem_id=problem.name, prompt=format_prompt(problem))
        table = sample_shard(backend, request, params, plan, "gpu-check", extract_program)
        store.write_shard(table, plan)
        tokens += sum(table.column("num_tokens").to_pylist())
    seconds = time.perf_counter() - started
    store.finalize(ids)
    summary = store.validate(ids, n)
    return {
        "backend": backend.name,
        "samples": summary.rows,
        "problems": summary.problems,
        "unique_programs": summary.unique_programs,
        "generated_tokens": tokens,
        "sampling_seconds": round(seconds, 3),
        "samples_per_s": round(summary.rows / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def _train(model_dir: Path, placement, args, sizes: dict[str, int], work: Path) -> dict[str, Any]:
    from tasks.core.modeling import load_model_and_tokenizer
    from tasks.core.problems import format_training_example
    from tasks.core.problems.bundled import bundled_problems
    from tasks.core.problems.schema import Language
    from tasks.core.training import PackedLMDataset, TrainHParams, train

    texts = [
        "".join(format_training_example(p, s))
        for p in bundled_problems("train", per_family=4)
        for s in p.solutions.of(Language.PYTHON3)
    ]
    steps = args.train_steps
    every = max(1, steps // 3)
    stop_after = 2 * every  # the checkpoint written there is what the second call resumes
    hp = TrainHParams(
        max_steps=steps,
        batch_size=sizes["train_batch"],
        seq_len=sizes["seq_len"],
        lr=1e-4,
        warmup_steps=min(3, steps - 1),
        eval_every=steps,
        eval_batches=1,
        checkpoint_every=every,
    )
    out = work / "train"

    def interrupt(metrics) -> None:
        if metrics.step == stop_after + 1:
            raise _Interrupt(f"stopped after step {metrics.step}")

    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(model_dir)
    data = PackedLMDataset(texts, tokenizer, hp.seq_len, seed=0)
    try:
        train(model, tokenizer, data, None, hp, out, interrupt, placement=placement)
        raise RuntimeError("the first training call was not interrupted")
    except _Interrupt:
        pass
    del model
    model, tokenizer = load_model_and_tokenizer(model_dir)
    result = train(model, tokenizer, data, None, hp, out, placement=placement)
    seconds = time.perf_counter() - started
    if result.resumed_from_step != stop_after or result.steps != steps:
        raise RuntimeError(
            f"resume: resumed_from_step={result.resumed_from_step} (want {stop_after}), "
            f"steps={result.steps} (want {steps})"
        )
    return {
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
        "dtype": result.placement.dtype if result.placement else None,
        "tokens_seen": result.tokens_seen,
        "tokens_per_s": round(result.tokens_seen / seconds, 1),
        "tokens_per_s_resumed_call": round(result.tokens_per_s, 1),
        "final_train_loss": round(result.final_train_loss, 4),
    }


def _grpo(model_dir: Path, placement, args, sizes: dict[str, int], work: Path) -> dict[str, Any]:
    from tasks.core.config import JudgeConfig
    from tasks.core.problems import extract_program, format_prompt
    from tasks.core.problems.bundled import bundled_problems
    from tasks.core.rl import RLTask, train_grpo
    from tasks.core.rl.grpo import GRPOParams
    from tasks.core.stages.judging import limit_policy, make_judge

    problems = list(bundled_problems("rl", per_family=4))[:8]
    params = GRPOParams(
        steps=args.grpo_steps,
        num_generations=sizes["grpo_gens"],
        prompts_per_step=2,
        max_completion_length=sizes["max_new_tokens"],
        save_every=args.grpo_steps,
        mask_truncated_completions=False,
        filter_zero_std_groups=False,
        use_vllm=args.vllm,
        optimizer="fresh",  # the check's random-init model has no stage-2 optimizer state to continue
    )
    judge_cfg = JudgeConfig()
    started = time.perf_counter()
    with make_judge(judge_cfg) as judge:
        task = RLTask(
            model_dir,
            problems,
            judge,
            work / "grpo",
            format_prompt,
            extract_program,
            policy=limit_policy(judge_cfg),
            placement=placement,
        )
        result = train_grpo(task, params)
    seconds = time.perf_counter() - started
    import pyarrow.parquet as pq

    rows = pq.read_table(result.metrics_path).to_pylist()
    lengths = [r.get("completions/mean_length") for r in rows]
    generated = sum((length or 0.0) * params.prompts_per_step * params.num_generations for length in lengths)
    return {
        "steps": result.steps,
        "generation": (result.device or {}).get("generation"),
        "step_seconds": [round(r.get("step_time", float("nan")), 3) for r in rows],
        "completion_tokens": int(generated),
        "completion_tokens_per_s": round(generated / seconds, 1),
        "reward": [r.get("reward") for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (implies --tiny)")
    ap.add_argument("--tiny", action="store_true", help="the scaled-down model (default without a GPU)")
    ap.add_argument("--vllm", action="store_true", help="sample (and generate in GRPO) with vLLM")
    ap.add_argument("--out", default=str(ROOT / "runs" / "gpu_check.json"))
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--grpo-steps", type=int, default=3)
    ap.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    args = ap.parse_args(argv)

    import torch
    import transformers
    import trl

    from tasks.core.device import DeviceConfig, resolve
    from tasks.core.io import atomic_write_json
    from tests.gpu.random_model import QWEN2_0_5B, QWEN2_TINY, parameters, save_random_model

    gpu = torch.cuda.is_available() and not args.cpu
    tiny = args.tiny or not gpu
    device = "auto" if gpu else "cpu"
    placement = resolve(DeviceConfig(device=device, dtype="bfloat16"))  # training, GRPO
    sampling = resolve(DeviceConfig(device=device))  # auto dtype
    shapes = QWEN2_TINY if tiny else QWEN2_0_5B
    sizes = _sizes(tiny)
    report: dict[str, Any] = {
        "mode": f"{'tiny' if tiny else '0.5B'} on {placement.device}",
        **placement.metrics(),
        "sampling_dtype": sampling.dtype,
        "gpu": torch.cuda.get_device_name(placement.torch_device()) if placement.is_cuda else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        "model": {"architecture": "qwen2 (random init)", **shapes, "parameters": parameters(shapes)},
        "sizes": sizes,
        "sections": {},
    }
    print(
        f"[gpu-check] {report['mode']}, dtype {placement.dtype}, {parameters(shapes):,} parameters",
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        from tasks.core.problems import format_prompt
        from tasks.core.problems.bundled import bundled_problems

        started = time.perf_counter()
        texts = [format_prompt(p) for p in bundled_problems("train", per_family=4)]
        model_dir = save_random_model(work / "model", texts, shapes)
        report["model"]["build_seconds"] = round(time.perf_counter() - started, 3)
        for name, fn, where in (
            ("sample", _sample, sampling),
            ("train", _train, placement),
            ("grpo", _grpo, placement),
        ):
            _section(report, name, lambda fn=fn, where=where: fn(model_dir, where, args, sizes, work))
    report["ok"] = all(s["ok"] for s in report["sections"].values())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report, indent=2)
    print(f"[gpu-check] {'passed' if report['ok'] else 'FAILED'}; figures in {out}", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
