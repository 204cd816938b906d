"""Subprocess body for the SIGKILL resume test: train the tiny model, print progress lines.

Usage: python resume_worker.py OUT_DIR SLEEP_PER_STEP. Prints ``step N`` per step (flushed)
and finally one ``RESULT {json}`` line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.core.modeling import ModelSpec, build_model, train_tokenizer  # noqa: E402
from tasks.core.training import PackedLMDataset, train  # noqa: E402
from tests.training.conftest import synthetic_code, tiny_hparams  # noqa: E402

HPARAMS = dict(max_steps=16, checkpoint_every=4, eval_every=8)


def run(out_dir: str, progress=None):
    """The training this worker does; the test also calls it in-process for the reference."""
    texts = synthetic_code()
    tokenizer = train_tokenizer(texts, vocab_size=320)
    model = build_model(ModelSpec(preset="tiny", vocab_size=320, context_length=64), tokenizer)
    hp = tiny_hparams(**HPARAMS)
    data = PackedLMDataset(texts[:140], tokenizer, hp.seq_len, seed=hp.seed)
    valid = PackedLMDataset(texts[140:], tokenizer, hp.seq_len)
    return train(model, tokenizer, data, valid, hp, Path(out_dir), progress=progress)


def main(out_dir: str, sleep_s: float) -> None:
    torch.set_num_threads(1)

    def progress(m):
        print(f"step {m.step}", flush=True)
        time.sleep(sleep_s)

    result = run(out_dir, progress)
    print(
        "RESULT "
        + json.dumps(
            {
                "loss": result.final_train_loss,
                "valid": result.final_valid_loss,
                "resumed": result.resumed_from_step,
                "steps": result.steps,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
