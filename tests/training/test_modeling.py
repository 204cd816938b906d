import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tasks.core.modeling import (
    EOS_TOKEN,
    PAD_TOKEN,
    ModelError,
    ModelSpec,
    build_model,
    count_parameters,
    load_model_and_tokenizer,
    prepare_model,
    train_tokenizer,
)

SAMPLE = "def f(x):\n\treturn x ** 2  # héllo, 世界 🙂\n\n"


def test_tokenizer_round_trips_any_text(tokenizer):
    ids = tokenizer.encode(SAMPLE)
    assert tokenizer.decode(ids) == SAMPLE
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.eos_token_id not in ids  # no special token added implicitly


def test_tokenizer_saves_and_loads_with_autotokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert loaded.encode(SAMPLE) == tokenizer.encode(SAMPLE)
    assert (loaded.eos_token_id, loaded.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_tokenizer_rejects_a_vocab_below_the_byte_alphabet(texts):
    with pytest.raises(ModelError, match="vocab_size"):
        train_tokenizer(texts, vocab_size=100)


class _VocabOnly:
    """Stands in for a 4096-token tokenizer: the presets only read its size and special ids."""

    bos_token_id, eos_token_id, pad_token_id = 0, 0, 1

    def __len__(self):
        return 4096


@pytest.mark.parametrize("preset,low,high", [("tiny", 1e6, 2e6), ("small", 5e6, 7e6), ("base", 20e6, 30e6)])
def test_preset_parameter_counts(preset, low, high):
    model = build_model(ModelSpec(preset=preset), _VocabOnly())
    assert low <= count_parameters(model) <= high


def test_scratch_init_is_seeded(tokenizer):
    spec = ModelSpec(preset="tiny", vocab_size=320)
    a, b = build_model(spec, tokenizer), build_model(spec, tokenizer)
    c = build_model(spec.model_copy(update={"init_seed": 1}), tokenizer)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_pretrained_directory_loads_back_the_same_model(tokenizer, tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, tok = prepare_model(ModelSpec(source="pretrained", path=str(tmp_path)), texts=[])
    ids = torch.tensor([tok.encode(SAMPLE)])
    tiny_model.eval(), model.eval()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, tiny_model(ids).logits, atol=1e-6)
    rebuilt = build_model(ModelSpec(source="pretrained", path=str(tmp_path)), tok)
    assert count_parameters(rebuilt) == count_parameters(tiny_model)


def test_directory_without_tokenizer_is_refused(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="no tokenizer") as info:
        load_model_and_tokenizer(tmp_path)
    assert str(tmp_path) in str(info.value) and "save_pretrained" in str(info.value)


def test_tokenizer_larger_than_embedding_is_refused(tokenizer, tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    bigger = train_tokenizer(["abc " * 50, "xyz " * 50], vocab_size=320)
    bigger.add_tokens([f"<extra_{i}>" for i in range(len(tokenizer))])
    bigger.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="embedding"):
        load_model_and_tokenizer(tmp_path)


def test_missing_pad_token_falls_back_to_eos(tokenizer, tiny_model, tmp_path):
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token=EOS_TOKEN)
    assert no_pad.pad_token is None
    tiny_model.save_pretrained(tmp_path)
    no_pad.save_pretrained(tmp_path)
    _, tok = load_model_and_tokenizer(tmp_path)
    assert tok.pad_token == EOS_TOKEN


def test_non_directory_path_is_refused_without_a_hub_lookup(tmp_path):
    with pytest.raises(ModelError, match="not an existing local directory"):
        load_model_and_tokenizer("gpt2")
    with pytest.raises(ValueError, match="model.path is required"):
        ModelSpec(source="pretrained")
