"""Shared prefill (the HF backend's default path) against the repeated-prompt path and against a
plain forward pass: same seed same samples, each prompt prefilled once, exact log-probs, stop
cuts, finish reasons, greedy, and the sampled distribution."""

import math

import pytest

from tasks.core.sampling import SamplingParams
from tasks.core.sampling.hf import HFBatchedBackend, top_p_filter

PROMPTS = ["def solve():\n", "import sys\nfor line in sys.stdin:\n    a, b = map(int, line.split())\n"]


@pytest.fixture(scope="module")
def repeat_backend(tiny_model_dir):
    return HFBatchedBackend(tiny_model_dir, prefill="repeat")


def _params(**kw):
    return SamplingParams(**{"n": 6, "max_new_tokens": 20, "batch_size": 4, "temperature": 1.0, **kw})


def _recorded(backend, monkeypatch):
    """Record (tokens, per-token log-probs) of every sample the backend finishes."""
    seen = []
    finish = backend._finish

    def spy(tokens, logprobs, stops):
        seen.append((list(tokens), list(logprobs)))
        return finish(tokens, logprobs, stops)

    monkeypatch.setattr(backend, "_finish", spy)
    return seen


def test_default_path_is_shared_prefill(hf_backend):
    assert hf_backend.prefill == "shared" and hf_backend._supports_shared_prefill()


def test_unknown_prefill_rejected(tiny_model_dir):
    from tasks.core.sampling import SamplingError

    with pytest.raises(SamplingError, match="prefill='twice'"):
        HFBatchedBackend(tiny_model_dir, prefill="twice")


def test_same_seed_same_samples_and_seed_matters(hf_backend):
    p = _params()
    first = hf_backend.generate(PROMPTS, 6, p, 11)
    assert first == hf_backend.generate(PROMPTS, 6, p, 11)
    assert first != hf_backend.generate(PROMPTS, 6, p, 12)
    assert [len(x) for x in first] == [6, 6]


def test_each_prompt_is_prefilled_once(hf_backend, monkeypatch):
    """n > batch_size and batches mixing prompts: one forward pass per prompt, not per sample."""
    calls = []
    prefill = hf_backend._prefill
    monkeypatch.setattr(hf_backend, "_prefill", lambda ids: calls.append(ids) or prefill(ids))
    out = hf_backend.generate(PROMPTS, 7, _params(n=7, batch_size=3), 2)
    assert [len(x) for x in out] == [7, 7]
    assert len(calls) == 2


def test_logprob_sum_matches_a_plain_forward_pass(hf_backend, monkeypatch):
    """Every sample's reported log-prob sum is the untempered log-prob of its tokens under a
    plain (uncached, unpadded) forward pass of prompt + completion: the copied prompt cache,
    positions, padding mask and the dropping of finished rows are all exact."""
    import torch

    seen = _recorded(hf_backend, monkeypatch)
    p = _params(n=5, batch_size=4, temperature=1.3, top_p=0.9, stop=("e",), max_new_tokens=24)
    gens = [g for group in hf_backend.generate(PROMPTS, 5, p, 4) for g in group]
    assert {g.finish_reason for g in gens} >= {"stop", "length"}, "fixed seed: both occur"
    prompt_of = [PROMPTS[0]] * 5 + [PROMPTS[1]] * 5
    for g, (tokens, _), prompt in zip(gens, seen, prompt_of):
        ids = hf_backend.tokenizer(prompt)["input_ids"]
        with torch.inference_mode():
            logits = hf_backend.model(input_ids=torch.tensor([ids + tokens])).logits[0].float()
        logp = torch.log_softmax(logits[len(ids) - 1 : -1], dim=-1)
        expected = logp.gather(1, torch.tensor(tokens)[:, None]).sum().item()
        assert g.num_tokens == len(tokens)
        assert math.isclose(g.logprob_sum, expected, rel_tol=1e-4, abs_tol=1e-3)


def test_stop_cuts_the_sample_it_would_have_continued(hf_backend):
    """Each row draws its own noise, so a sample with stop sequences is the same sample without
    them, cut at the first stop: the stop ends the row (and drops it) without disturbing others."""
    free = _params(n=8, batch_size=8, max_new_tokens=30)
    stopped = free.model_copy(update={"stop": ("t", "e")})
    a = [g for x in hf_backend.generate(PROMPTS, 8, free, 6) for g in x]
    b = [g for x in hf_backend.generate(PROMPTS, 8, stopped, 6) for g in x]
    assert any(g.finish_reason == "stop" for g in b) and any(g.finish_reason == "length" for g in b)
    for full, cut in zip(a, b):
        hits = [i for i in (full.text.find(s) for s in ("t", "e")) if i >= 0]
        if hits:
            assert cut.finish_reason == "stop" and cut.text == full.text[: min(hits)]
            assert cut.num_tokens <= full.num_tokens
        else:
            assert (cut.text, cut.num_tokens, cut.finish_reason) == (
                full.text,
                full.num_tokens,
                full.finish_reason,
            )
            assert math.isclose(cut.logprob_sum, full.logprob_sum, rel_tol=1e-5)


def test_finish_reasons_and_token_counts(uniform_backend):
    params = SamplingParams(n=48, max_new_tokens=40, batch_size=16)
    gens = uniform_backend.generate(PROMPTS[:1], 48, params, 5)[0]
    vocab = uniform_backend.model.config.vocab_size
    eos = [g for g in gens if g.finish_reason == "eos"]
    assert eos, "with p(eos)=1/vocab over 40 steps x 48 samples, the fixed seed yields some"
    for g in gens:
        assert math.isclose(g.logprob_sum, -g.num_tokens * math.log(vocab), rel_tol=1e-5)
        if g.finish_reason == "length":
            assert g.num_tokens == 40
        else:
            assert g.num_tokens < 40 or g.finish_reason == "eos"


def test_greedy_is_temperature_zero_and_matches_the_repeat_path(hf_backend, repeat_backend):
    params = _params(n=3, temperature=0.0, max_new_tokens=16, batch_size=2)
    shared = hf_backend.generate(PROMPTS, 3, params, 1)
    repeated = repeat_backend.generate(PROMPTS, 3, params, 2)  # greedy: the seed does not matter
    for group in shared:
        assert len(group) == 3 and len(set(group)) == 1
    for a, b in zip(sum(shared, []), sum(repeated, [])):
        assert (a.text, a.num_tokens, a.finish_reason) == (b.text, b.num_tokens, b.finish_reason)
        assert abs(a.logprob_sum - b.logprob_sum) < 1e-3


def test_greedy_with_stop_matches_the_repeat_path(hf_backend, repeat_backend):
    params = _params(n=1, temperature=0.0, max_new_tokens=24, stop=("e", "a"))
    for a, b in zip(
        sum(hf_backend.generate(PROMPTS, 1, params, 0), []),
        sum(repeat_backend.generate(PROMPTS, 1, params, 0), []),
    ):
        assert (a.text, a.num_tokens, a.finish_reason) == (b.text, b.num_tokens, b.finish_reason)


def test_negative_temperature_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="temperature"):
        SamplingParams(n=1, temperature=-0.1)


def test_top_p_filter_is_transformers_rule():
    import torch
    from transformers.generation.logits_process import TopPLogitsWarper

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(16, 300, generator=gen) * 3
    for top_p in (0.1, 0.5, 0.9, 0.99):
        ours = top_p_filter(scores, top_p)
        theirs = TopPLogitsWarper(top_p)(None, scores.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs))


@pytest.mark.parametrize("path", ["shared", "repeat"])
def test_first_token_follows_the_tempered_nucleus(path, hf_backend, repeat_backend):
    """Both paths draw the first token from softmax(top_p(logits / T)): no token outside the
    nucleus, and 3000 draws pass a chi-square goodness-of-fit test against the exact
    distribution (statistic below its mean + 5 standard deviations; the fixed seed makes the
    check deterministic). T is low so that a wrong temperature would shift the distribution."""
    import torch

    backend = hf_backend if path == "shared" else repeat_backend
    temperature, top_p = 0.3, 0.8
    ids = backend.tokenizer(PROMPTS[1])["input_ids"]
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    exact = top_p_filter((logits / temperature)[None], top_p).softmax(-1)[0]
    params = SamplingParams(n=3000, max_new_tokens=1, batch_size=500, temperature=temperature, top_p=top_p)
    seen = []
    finish = backend._finish
    backend._finish = lambda tokens, logprobs, stops: (
        seen.append(tokens[0]) or finish(tokens, logprobs, stops)
    )
    try:
        backend.generate([PROMPTS[1]], 3000, params, 8)
    finally:
        del backend._finish
    counts = torch.bincount(torch.tensor(seen), minlength=exact.numel()).double()
    support = exact > 0
    assert float(counts[~support].sum()) == 0.0
    expected = exact.double()[support] * len(seen)
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    dof = int(support.sum()) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)
