"""Stages 1 and 2: pretraining-corpus SFT and CodeContests fine-tuning.

Contract:
* Stage 1 loads the corpus, trains (scratch) or loads (pretrained) a tokenizer, builds or loads
  the model, and trains next-token prediction on packed blocks. The tokenizer is saved in the
  stage directory before training, so a resumed run uses the very same vocabulary.
* Stage 2 starts from stage 1's ``model/`` and trains on (prompt, reference solution) pairs of
  the SFT split, loss on solution tokens only (the prompt format is ``format_training_example``).
* Both resume from ``<stage dir>/checkpoint`` (see :mod:`tasks.core.training`) and publish
  ``model/``, ``metrics.parquet`` and ``loss.png``; the manifest records corpus byte/token
  counts, final losses and throughput.
Limits: one process; only Python 3 reference solutions are used for fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tasks.core.corpus import load_corpus
from tasks.core.io import save_model
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.modeling import build_model, load_model_and_tokenizer, train_tokenizer
from tasks.core.problems import Language, format_training_example
from tasks.core.stages.problems import load_split
from tasks.core.training import PackedLMDataset, PromptCompletionDataset, StepMetrics, TrainResult, train

if TYPE_CHECKING:
    from tasks.core.config import FinetuneConfig, PretrainConfig

Progress = Callable[[StepMetrics], None]


def _tokenizer_and_model(plan: StagePlan, cfg: PretrainConfig, texts):
    if cfg.model.source == "pretrained":
        return load_model_and_tokenizer(cfg.model.path or "")
    tok_dir = plan.dir / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    else:
        tokenizer = train_tokenizer(texts, cfg.model.vocab_size)
        save_model(None, tokenizer, tok_dir)  # atomically: a resumed run finds all of it or none
    return build_model(cfg.model, tokenizer), tokenizer


def _publish(plan: StagePlan, result: TrainResult, extra: dict) -> Manifest:
    files = [f for f in list_files(plan.dir) if not f.startswith(("checkpoint/", "tokenizer/"))]
    metrics = {
        "final_train_loss": result.final_train_loss,
        "final_valid_loss": result.final_valid_loss,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "resumed_from_step": result.resumed_from_step,
        **extra,
    }
    return plan.publish(files, metrics=metrics)


def run_pretrain(plan: StagePlan, cfg: PretrainConfig, progress: Progress | None = None) -> Manifest:
    corpus = load_corpus(cfg.corpus)
    model, tokenizer = _tokenizer_and_model(plan, cfg, corpus.train_texts)
    seq_len = min(cfg.train.seq_len, model.config.max_position_embeddings)
    train_data = PackedLMDataset(corpus.train_texts, tokenizer, seq_len, seed=cfg.train.seed)
    valid_data = PackedLMDataset(corpus.valid_texts, tokenizer, seq_len) if corpus.valid_texts else None
    result = train(model, tokenizer, train_data, valid_data, cfg.train, plan.dir, progress)
    stats = corpus.stats
    return _publish(
        plan,
        result,
        {
            "corpus_files": stats.files,
            "corpus_duplicates_dropped": stats.duplicates_dropped,
            "corpus_bytes_train": stats.bytes_train,
            "corpus_bytes_valid": stats.bytes_valid,
            "corpus_tokens_train": train_data.n_tokens,
            "corpus_tokens_valid": valid_data.n_tokens if valid_data else 0,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
    )


def sft_pairs(problems) -> list[tuple[str, str]]:
    pairs = []
    for problem in problems:
        for solution in problem.solutions.of(Language.PYTHON3):
            pairs.append(format_training_example(problem, solution))
    return pairs


def run_finetune(
    plan: StagePlan,
    cfg: FinetuneConfig,
    pretrained: Manifest,
    problems: Manifest,
    sft_split: str,
    valid_split: str,
    progress: Progress | None = None,
) -> Manifest:
    model, tokenizer = load_model_and_tokenizer(pretrained.dir / "model")
    train_problems = load_split(problems, sft_split)[: cfg.max_problems]
    valid_problems = load_split(problems, valid_split)
    max_len = min(cfg.train.seq_len, model.config.max_position_embeddings)
    train_data = PromptCompletionDataset(sft_pairs(train_problems), tokenizer, max_len, seed=cfg.train.seed)
    valid_data = PromptCompletionDataset(sft_pairs(valid_problems), tokenizer, max_len)
    result = train(model, tokenizer, train_data, valid_data, cfg.train, plan.dir, progress)
    return _publish(
        plan,
        result,
        {
            "sft_examples": len(train_data),
            "sft_problems": len(train_problems),
            "truncated": train_data.truncated,
        },
    )
