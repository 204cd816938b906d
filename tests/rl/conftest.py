"""Fixtures for RL tests: a tiny Llama + byte-level BPE tokenizer saved like a stage-2 model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.problems.schema import Problem, Tests

_CORPUS = [
    "print(3)\n",
    "a, b = map(int, input().split())\nprint(a + b)\n",
    "n = int(input())\nprint(n * 2)\n",
    "Problem: add two numbers.\nInput: 1 2\nOutput: 3\n# Python 3 solution:\n",
    "for i in range(10):\n    print(i)\n",
]


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=len(fast),
        max_position_embeddings=256,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    save_stage2_optimizer(model, path)
    return path


STAGE2_FINAL_LR = 7e-4  # the learning rate the fixture's "stage 2" ended at


def save_stage2_optimizer(model, path: Path) -> None:
    """``path/optimizer.pt`` as stage 2 saves it (AdamW after one step, final lr
    :data:`STAGE2_FINAL_LR`), so that RL continues from it; the weights are not changed."""
    import torch

    from tasks.core.hparams import TrainHParams
    from tasks.core.training.loop import _optimizer, _save_optimizer

    optimizer = _optimizer(model, TrainHParams(lr=STAGE2_FINAL_LR, max_steps=2, warmup_steps=0))
    ids = torch.tensor([[2, 3, 4, 5, 6]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()  # moments and step counts; the weights moved, but only in memory
    _save_optimizer(optimizer, 1, path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_llama"))


def make_problem(name: str = "add") -> Problem:
    """Public example ``1 2 -> 3``; the hidden tests never have answer 3."""
    return Problem(
        name=name,
        description="Read two integers and print their sum.",
        public_tests=Tests(input=("1 2\n",), output=("3\n",)),
        private_tests=Tests(input=("5 7\n", "10 20\n"), output=("12\n", "30\n")),
        generated_tests=Tests(input=("0 0\n",), output=("0\n",)),
    )


@pytest.fixture()
def add_problem() -> Problem:
    return make_problem()


def plain_prompt(problem: Problem) -> str:
    return f"Problem: {problem.description}\n# Python 3 solution:\n"


def identity_extract(completion: str) -> str:
    return completion


SUM_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"


def parity_extract(completion: str) -> str:
    """A correct program for even-length completions, a wrong one otherwise.

    A random tiny model never writes working code; this keeps the real judge in the loop while
    giving the sampled group reward variance, so updates are non-zero.
    """
    return SUM_PROGRAM if len(completion) % 2 == 0 else "print(3)\n"


@pytest.fixture(scope="session")
def judge():
    """The real sandbox judge (a broken sandbox import fails the tests that need it)."""
    from tasks.core.sandbox import Judge

    with Judge(workers=2) as j:
        yield j


class CountingJudge:
    """Delegates to a real judge and records each ``run_many`` call's jobs."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[list] = []

    def run_many(self, jobs, *args, **kwargs):
        jobs = list(jobs)
        self.calls.append(jobs)
        return self.inner.run_many(jobs, *args, **kwargs)


RL_PROBLEMS = [make_problem("add_a"), make_problem("add_b")]


def rl_task(model_dir: Path, judge, out_dir: Path, extract=parity_extract, calls: list | None = None):
    """The trainers' task on :data:`RL_PROBLEMS`; progress calls are appended to ``calls``."""
    from tasks.core.rl.artifacts import RLTask

    progress = None if calls is None else (lambda step, total, m: calls.append((step, total, m)))
    return RLTask(model_dir, RL_PROBLEMS, judge, out_dir, plain_prompt, extract, progress)
