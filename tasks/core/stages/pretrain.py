"""Stage 1: pretraining-corpus next-token training of a scratch (or a local pretrained) model.

Contract: loads the corpus, trains (scratch) or loads (pretrained) a tokenizer, builds or loads
the model, and trains next-token prediction on packed blocks. The tokenizer is saved in the
stage directory before training, so a resumed run uses the very same vocabulary. Resumes from
``<stage dir>/checkpoint`` (see :mod:`tasks.core.training`) and publishes ``model/``,
``metrics.parquet`` and ``loss.png`` (:func:`publish_trained`, shared with stage 2); the
manifest records corpus byte/token counts, final losses and throughput, and the device and dtype
it trained on (:mod:`tasks.core.device`). This module imports no problem code, so editing the
problems re-runs fine-tuning, not pretraining.
Pretrained start (``model.source = "pretrained"``, ``train.max_steps = 0``,
:attr:`~tasks.core.config.PretrainConfig.publishes_pretrained`): nothing is trained and no corpus
is read; the model directory is checked (it loads, its tokenizer fits its embedding) and copied
file by file into ``model/`` (:func:`publish_pretrained`), and the manifest records ``steps`` 0,
``source`` "pretrained", the path, the parameter count and ``source_sha256`` (a digest of every
file copied).
Limits: one process. The stage key holds ``model.path``, not the directory's contents: a model
replaced in place under the same path is a cache hit (``source_sha256`` shows it); use a new path.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.corpus import load_corpus
from tasks.core.device import resolve
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.stages import Stage
from tasks.core.stages.base import Advance, StageInputs

if TYPE_CHECKING:
    from tasks.core.config import PretrainConfig
    from tasks.core.training import StepMetrics, TrainResult

Progress = Callable[["StepMetrics"], None]


def publish_trained(plan: StagePlan, result: TrainResult, extra: dict) -> Manifest:
    """Publish a training stage: ``model/``, metrics and plot (not the checkpoint or tokenizer
    work dirs); the manifest records the final losses, steps, throughput and ``extra``."""
    files = [f for f in list_files(plan.dir) if not f.startswith(("checkpoint/", "tokenizer/"))]
    metrics = {
        "final_train_loss": result.final_train_loss,
        "final_valid_loss": result.final_valid_loss,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "resumed_from_step": result.resumed_from_step,
        **(result.placement.metrics() if result.placement is not None else {}),
        **extra,
    }
    return plan.publish(files, metrics=metrics)


def _digest(directory: Path) -> str:
    """sha256 over every file of ``directory`` (relative path, size, bytes), in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(directory).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def publish_pretrained(plan: StagePlan, cfg: PretrainConfig) -> Manifest:
    """Stage 1 for a pretrained model: check ``cfg.model.path`` loads with its tokenizer, copy it
    into ``model/`` (into a temp dir renamed into place) and publish; nothing is trained."""
    from tasks.core.modeling import count_parameters, load_model_and_tokenizer

    source = Path(cfg.model.path or "")
    model, _ = load_model_and_tokenizer(source)  # refuses a dir without weights or tokenizer
    parameters = count_parameters(model)
    del model
    target = plan.dir / "model"
    tmp = plan.dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    metrics = {
        "steps": 0,
        "tokens_seen": 0,
        "source": "pretrained",
        "model_path": str(source.resolve()),
        "source_sha256": _digest(target),
        "parameters": parameters,
    }
    return plan.publish(list_files(plan.dir), metrics=metrics)


def run_pretrain(plan: StagePlan, cfg: PretrainConfig, progress: Progress | None = None) -> Manifest:
    from tasks.core.modeling import count_parameters, prepare_model
    from tasks.core.training import PackedLMDataset, train

    if cfg.publishes_pretrained:
        return publish_pretrained(plan, cfg)
    corpus = load_corpus(cfg.corpus)
    model, tokenizer = prepare_model(cfg.model, corpus.train_texts, plan.dir / "tokenizer")
    seq_len = min(cfg.train.seq_len, model.config.max_position_embeddings)
    train_data = PackedLMDataset(corpus.train_texts, tokenizer, seq_len, seed=cfg.train.seed)
    valid_data = PackedLMDataset(corpus.valid_texts, tokenizer, seq_len) if corpus.valid_texts else None
    placement = resolve(cfg.device)
    result = train(
        model, tokenizer, train_data, valid_data, cfg.train, plan.dir, progress, placement=placement
    )
    stats = corpus.stats
    return publish_trained(
        plan,
        result,
        {
            "corpus_files": stats.files,
            "corpus_duplicates_dropped": stats.duplicates_dropped,
            "corpus_bytes_train": stats.bytes_train,
            "corpus_bytes_valid": stats.bytes_valid,
            "corpus_tokens_train": train_data.n_tokens,
            "corpus_tokens_valid": valid_data.n_tokens if valid_data else 0,
            "source": cfg.model.source,
            "parameters": count_parameters(model),
        },
    )


def on_steps(progress: Advance | None) -> Progress | None:
    """A training loop's progress callback that reports the step count to ``progress``."""
    return None if progress is None else (lambda metrics: progress(metrics.step))


@dataclass(frozen=True)
class PretrainInputs(StageInputs):
    """Stage 1: its config only."""

    STAGE = Stage.PRETRAIN
    pretrain: PretrainConfig

    def progress(self) -> tuple[int, str]:
        return self.pretrain.train.max_steps, "stage 1 pretrain (steps)"

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return run_pretrain(plan, self.pretrain, on_steps(progress))
