"""Benchmark: vLLM samples/s, one request with n=N vs N single-sample requests (same work).

Run (in the vLLM environment, ``make .venv-vllm/.installed``):
``.venv-vllm/bin/python tests/bench/bench_vllm.py [--n 64] [--tokens 64] [--prompt-tokens 400]
[--rounds 3] [--hidden 256] [--layers 4] [--no-prefix-caching]``.

Both modes sample the same random-init Qwen2 (``--hidden``/``--layers``, head_dim 64,
tests/gpu/random_model.py, the project's BPE tokenizer trained on bundled problems), the same
prompt (the bundled ``valid`` prompts, longest first, joined and cut to ``--prompt-tokens``
tokens) and the same ``--tokens`` new tokens
per sample (``ignore_eos``), at temperature 0.8. ``n=N``: one request
``SamplingParams(n=N, seed=s)``; ``N x n=1``: N requests ``SamplingParams(n=1, seed=s+i)`` in one
``generate`` call - by vLLM's fan-out (child ``i`` is seeded ``s + i``) the very same samples,
which the run checks. Modes alternate for ``--rounds`` rounds after one untimed warm-up each;
the median samples/s (and output tokens/s) of each and their ratio are printed, plus one JSON
line. Prefix caching is on in both (the backend's default), so the N single requests may
already share the prompt's KV blocks: the ratio is what n=N adds beyond that;
``--no-prefix-caching`` measures both modes without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _model(out: Path, hidden: int, layers: int) -> tuple[Path, str]:
    from tasks.core.problems import format_prompt
    from tasks.core.problems.bundled import bundled_problems
    from tests.gpu.random_model import QWEN2_TINY, save_random_model

    # the bundled valid prompts, longest first, joined; the caller cuts it to --prompt-tokens
    valid = sorted((format_prompt(p) for p in bundled_problems("valid", per_family=4)), key=len)
    prompt = "\n".join(reversed(valid))
    texts = [format_prompt(p) for p in bundled_problems("train", per_family=4)]
    heads = max(1, hidden // 64)  # head_dim 64
    shapes = {
        **QWEN2_TINY,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 1,
        "intermediate_size": 4 * hidden,
    }
    save_random_model(out, texts, shapes)
    return out, prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--no-prefix-caching", action="store_true", help="engine without prefix caching")
    ap.add_argument("--max-num-batched-tokens", type=int, default=None, help="engine step budget")
    args = ap.parse_args()

    from tasks.core.sampling import SamplingParams
    from tasks.core.sampling.params import VLLMOptions
    from tasks.core.sampling.vllm import VLLMBackend, request_seed

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, prompt = _model(Path(tmp) / "model", args.hidden, args.layers)
        options = VLLMOptions(
            enable_prefix_caching=not args.no_prefix_caching,
            max_num_batched_tokens=args.max_num_batched_tokens,
        )
        backend = VLLMBackend(model_dir, max_new_tokens=args.tokens, options=options)
        ids = backend.tokenizer(prompt)["input_ids"][: args.prompt_tokens]
        prompt = backend.tokenizer.decode(ids)
        params = SamplingParams(n=args.n, temperature=0.8, max_new_tokens=args.tokens, backend="vllm")
        vllm = backend._vllm

        def sp(n: int, seed: int):
            base = backend.sampling_params(n, params, seed)
            return vllm.SamplingParams(
                n=n,
                temperature=base.temperature,
                top_p=base.top_p,
                max_tokens=args.tokens,
                ignore_eos=True,
                logprobs=0,
                seed=seed,
            )

        def one_request(seed: int):
            [out] = backend.llm.generate([prompt], [sp(args.n, seed)], use_tqdm=False)
            return [o.token_ids for o in sorted(out.outputs, key=lambda o: o.index)]

        def singles(seed: int):
            outs = backend.llm.generate(
                [prompt] * args.n, [sp(1, seed + i) for i in range(args.n)], use_tqdm=False
            )
            return [o.outputs[0].token_ids for o in outs]

        modes = {"n=N": one_request, "N x n=1": singles}
        rates: dict[str, list[float]] = {m: [] for m in modes}
        same = True
        for r in range(args.rounds + 1):
            seed = request_seed(r)
            got = {}
            for mode, fn in modes.items():
                t0 = time.perf_counter()
                got[mode] = fn(seed)
                dt = time.perf_counter() - t0
                if r:  # round 0 warms both up
                    rates[mode].append(args.n / dt)
                assert all(len(t) == args.tokens for t in got[mode])
            same = same and [list(t) for t in got["n=N"]] == [list(t) for t in got["N x n=1"]]
        backend.close()
    med = {m: statistics.median(v) for m, v in rates.items()}
    ratio = med["n=N"] / med["N x n=1"]
    for m, v in med.items():
        print(f"{m:>9}: {v:8.1f} samples/s  {v * args.tokens:9.0f} tokens/s  (rounds {rates[m]})")
    print(f"n=N / (N x n=1) = {ratio:.2f}x; identical samples in both modes: {same}")
    print(
        json.dumps(
            {
                "n": args.n,
                "tokens": args.tokens,
                "prompt_tokens": len(ids),
                "samples_per_s": med,
                "ratio": ratio,
                "identical": same,
                "hidden": args.hidden,
                "layers": args.layers,
                "prefix_caching": not args.no_prefix_caching,
                "max_num_batched_tokens": args.max_num_batched_tokens,
            }
        )
    )


if __name__ == "__main__":
    main()
