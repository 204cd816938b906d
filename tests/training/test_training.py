import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tasks.core.device import Placement, resolve
from tasks.core.modeling import ModelSpec, build_model, load_model_and_tokenizer
from tasks.core.training import (
    CHECKPOINT_DIR,
    COMPLETE_MARKER,
    PackedLMDataset,
    PromptCompletionDataset,
    TrainError,
    TrainHParams,
    lr_factor,
    read_metrics,
    train,
)
from tests.training import resume_worker
from tests.training.conftest import tiny_hparams

WORKER = Path(__file__).with_name("resume_worker.py")


def _data(texts, tokenizer, hp):
    return PackedLMDataset(texts[:140], tokenizer, hp.seq_len, seed=hp.seed), PackedLMDataset(
        texts[140:], tokenizer, hp.seq_len
    )


def _fresh(tokenizer):
    return build_model(ModelSpec(preset="tiny", vocab_size=320, context_length=64), tokenizer)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    hp = TrainHParams(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, hp) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


def test_loss_decreases_and_outputs_are_written(texts, tokenizer, tmp_path):
    """In bf16 autocast on the CPU (an explicit placement; auto would be float32 here)."""
    hp = tiny_hparams(max_steps=30, checkpoint_every=10, eval_every=10)
    train_data, valid_data = _data(texts, tokenizer, hp)
    bf16 = Placement("cpu", "bfloat16")
    result = train(_fresh(tokenizer), tokenizer, train_data, valid_data, hp, tmp_path, placement=bf16)
    assert result.placement == bf16
    metrics = read_metrics(result.metrics_path)
    assert [m.step for m in metrics] == list(range(1, 31)) and result.steps == 30
    first = sum(m.loss for m in metrics[:3]) / 3
    assert result.final_train_loss < 0.6 * first
    valid = [m.valid_loss for m in metrics if m.valid_loss is not None]
    assert len(valid) == 3 and valid[-1] < valid[0] and result.final_valid_loss == valid[-1]
    assert result.tokens_seen == 30 * hp.batch_size * hp.seq_len and result.tokens_per_s > 0
    assert result.plot_path.read_bytes().startswith(b"\x89PNG")
    model, tok = load_model_and_tokenizer(result.model_dir)
    assert len(tok) == len(tokenizer) and result.resumed_from_step is None


def test_grad_accumulation_equals_one_big_batch(texts, tokenizer, tmp_path):
    big = tiny_hparams(max_steps=3, batch_size=4, grad_accum=1, checkpoint_every=100)
    small = tiny_hparams(max_steps=3, batch_size=2, grad_accum=2, checkpoint_every=100)
    a = train(_fresh(tokenizer), tokenizer, *_data(texts, tokenizer, big), big, tmp_path / "a")
    b = train(_fresh(tokenizer), tokenizer, *_data(texts, tokenizer, small), small, tmp_path / "b")
    assert a.final_train_loss == pytest.approx(b.final_train_loss, rel=1e-4)
    assert a.placement == resolve()  # the default: auto, resolved here


class _Crash(RuntimeError):
    pass


def test_resume_after_a_crash_reaches_the_uninterrupted_loss(texts, tokenizer, tmp_path):
    hp = tiny_hparams()
    data = _data(texts, tokenizer, hp)
    reference = train(_fresh(tokenizer), tokenizer, *data, hp, tmp_path / "ref")

    def crash_at_7(m):
        if m.step == 7:
            raise _Crash()

    with pytest.raises(_Crash):
        train(_fresh(tokenizer), tokenizer, *data, hp, tmp_path / "run", progress=crash_at_7)
    assert (tmp_path / "run" / CHECKPOINT_DIR / COMPLETE_MARKER).read_text().strip() == "step 6"
    resumed = train(_fresh(tokenizer), tokenizer, *data, hp, tmp_path / "run")
    assert resumed.resumed_from_step == 6 and resumed.steps == hp.max_steps
    assert resumed.final_train_loss == pytest.approx(reference.final_train_loss, rel=1e-5)
    assert resumed.final_valid_loss == pytest.approx(reference.final_valid_loss, rel=1e-5)
    assert [m.step for m in read_metrics(resumed.metrics_path)] == list(range(1, 13))


def test_incomplete_checkpoint_is_not_resumed(texts, tokenizer, tmp_path):
    hp = tiny_hparams(max_steps=4, checkpoint_every=2)
    data = _data(texts, tokenizer, hp)
    train(_fresh(tokenizer), tokenizer, *data, hp, tmp_path)
    (tmp_path / CHECKPOINT_DIR / COMPLETE_MARKER).unlink()
    again = train(_fresh(tokenizer), tokenizer, *data, hp, tmp_path)
    assert again.resumed_from_step is None


def test_resume_with_other_hparams_is_refused(texts, tokenizer, tmp_path):
    hp = tiny_hparams(max_steps=4, checkpoint_every=2)
    data = _data(texts, tokenizer, hp)
    train(_fresh(tokenizer), tokenizer, *data, hp, tmp_path)
    changed = hp.model_copy(update={"lr": 1e-4})
    with pytest.raises(TrainError, match=r"other hparams.*lr"):
        train(_fresh(tokenizer), tokenizer, *data, changed, tmp_path)


def test_dataset_longer_than_seq_len_is_refused(texts, tokenizer, tmp_path):
    hp = tiny_hparams()
    data = PackedLMDataset(texts, tokenizer, seq_len=48)
    with pytest.raises(TrainError, match="hp.seq_len"):
        train(_fresh(tokenizer), tokenizer, data, None, hp, tmp_path)


def test_prompt_completion_training_runs_on_target_tokens(tokenizer, tmp_path):
    pairs = [(f"# add {i} and {i + 1}\n", f"print({i} + {i + 1})\n") for i in range(40)]
    hp = tiny_hparams(max_steps=20, eval_every=10, checkpoint_every=10)
    data = PromptCompletionDataset(pairs, tokenizer, max_len=hp.seq_len)
    result = train(_fresh(tokenizer), tokenizer, data, data, hp, tmp_path)
    metrics = read_metrics(result.metrics_path)
    assert result.final_train_loss < metrics[0].loss
    assert metrics[-1].tokens < 20 * hp.batch_size * hp.seq_len  # padding is not counted


def _run_worker(out_dir: Path, sleep_s: float) -> dict:
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out_dir), str(sleep_s)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.slow  # two fresh interpreters importing torch: ~15 s idle, far more on a busy box
def test_sigkill_then_rerun_reaches_the_uninterrupted_loss(tmp_path):
    reference = resume_worker.run(str(tmp_path / "ref"))  # in-process, 1 thread like the worker
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(out), "0.2"], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "step 10":
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (out / CHECKPOINT_DIR / COMPLETE_MARKER).read_text().strip() == "step 8"
    resumed = _run_worker(out, 0.0)
    assert resumed["resumed"] == 8 and resumed["steps"] == 16
    assert math.isclose(resumed["loss"], reference.final_train_loss, rel_tol=1e-5)
    assert math.isclose(resumed["valid"], reference.final_valid_loss, rel_tol=1e-5)


def test_kl_regularised_loss_reports_kl_and_with_beta_zero_trains_like_plain_nll(tokenizer, tmp_path):
    import copy

    import pyarrow.parquet as pq

    from tasks.core.training import KLRegularisedNLL

    pairs = [(f"# add {i} and {i + 1}\n", f"print({i} + {i + 1})\n") for i in range(40)]
    hp = tiny_hparams(max_steps=6, checkpoint_every=3)
    data = PromptCompletionDataset(pairs, tokenizer, max_len=hp.seq_len)
    start = _fresh(tokenizer)
    plain = train(copy.deepcopy(start), tokenizer, data, None, hp, tmp_path / "plain")
    zero = train(
        copy.deepcopy(start),
        tokenizer,
        data,
        None,
        hp,
        tmp_path / "zero",
        loss=KLRegularisedNLL(copy.deepcopy(start), 0.0),
    )
    assert zero.final_train_loss == pytest.approx(plain.final_train_loss, rel=1e-5)
    assert "kl" not in pq.read_table(plain.metrics_path).column_names and plain.final_kl is None
    kl = train(
        copy.deepcopy(start),
        tokenizer,
        data,
        None,
        hp,
        tmp_path / "kl",
        loss=KLRegularisedNLL(copy.deepcopy(start), 0.5),
    )
    kls = [m.kl for m in read_metrics(kl.metrics_path)]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert all(k > 0 for k in kls[1:]) and kl.final_kl == kls[-1]
    assert kl.final_train_loss != pytest.approx(plain.final_train_loss, rel=1e-5)


# ----------------------------------------------------------------------------- continue, don't restart


def test_constant_schedule_has_no_warmup_and_keeps_the_rate():
    hp = tiny_hparams(schedule="constant", warmup_steps=0, max_steps=50)
    assert {lr_factor(s, hp) for s in range(60)} == {1.0}
    with pytest.raises(ValueError, match="no warm-up"):
        tiny_hparams(schedule="constant", warmup_steps=2)


def _adam_steps(state: dict) -> set[float]:
    return {float(s["step"]) for s in state["state"].values()}


def test_continuing_loads_the_saved_optimizer_and_trains_at_its_final_rate(texts, tokenizer, tmp_path):
    from tasks.core.training import read_optimizer_state
    from tasks.core.training.loop import _continue_optimizer, _optimizer

    hp = tiny_hparams(max_steps=6, checkpoint_every=6, min_lr_ratio=0.2)
    data = _data(texts, tokenizer, hp)
    first = train(_fresh(tokenizer), tokenizer, *data, hp, tmp_path / "stage2", save_optimizer=True)
    saved = read_optimizer_state(first.model_dir)
    assert saved.step == 6 and saved.lr == pytest.approx(hp.lr * hp.min_lr_ratio)
    ckpt_state = torch.load(tmp_path / "stage2" / CHECKPOINT_DIR / "optimizer.pt", weights_only=True)
    _assert_same_state(saved.state, ckpt_state)

    constant = tiny_hparams(max_steps=4, lr=saved.lr, warmup_steps=0, schedule="constant", seed=1)
    model, _ = load_model_and_tokenizer(first.model_dir)
    optimizer = _optimizer(model, constant)
    _continue_optimizer(optimizer, saved)
    _assert_same_state(saved.state, optimizer.state_dict())  # the moments, not a fresh AdamW
    assert {g["lr"] for g in optimizer.param_groups} == {saved.lr}

    cont = train(
        load_model_and_tokenizer(first.model_dir)[0],
        tokenizer,
        *_data(texts, tokenizer, constant),
        constant,
        tmp_path / "continued",
        save_optimizer=True,
        continue_from=first.model_dir,
    )
    assert [m.lr for m in read_metrics(cont.metrics_path)] == [saved.lr] * 4
    after = read_optimizer_state(cont.model_dir)
    assert _adam_steps(after.state) == {10.0} and after.lr == saved.lr  # 6 + 4 steps, one AdamW


def test_continuing_from_a_model_without_optimizer_state_names_the_fix(texts, tokenizer, tmp_path):
    hp = tiny_hparams(max_steps=2, checkpoint_every=2, warmup_steps=0, schedule="constant")
    plain = train(_fresh(tokenizer), tokenizer, *_data(texts, tokenizer, hp), hp, tmp_path / "a")
    with pytest.raises(TrainError, match="without its optimizer state"):
        train(
            _fresh(tokenizer),
            tokenizer,
            *_data(texts, tokenizer, hp),
            hp,
            tmp_path / "b",
            continue_from=plain.model_dir,
        )


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["state"].keys() == b["state"].keys() and a["state"]
    for i, state in a["state"].items():
        assert state.keys() == b["state"][i].keys()
        for key, value in state.items():
            assert torch.equal(value, b["state"][i][key]), (i, key)
