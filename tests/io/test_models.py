"""Loading models and tokenizers from every kind of spec, and the errors for bad ones."""

from __future__ import annotations

import pytest
import torch

from tokenswap.errors import TokenswapError
from tokenswap.io.models import load_model, load_tokenizer, resolve_spec


def test_loads_hf_dir_and_round_trips_text(tiny_model_dir):
    bundle = load_model(str(tiny_model_dir))
    text = "Grüße aus Köln! 👋 日本語 def f(x):\n\treturn x"
    ids = bundle.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert bundle.tokenizer.decode(ids) == text
    assert bundle.tied and bundle.output_embeddings() is None
    assert not bundle.model.training


def test_loaded_model_reproduces_greedy_generation(tiny_model_dir):
    a, b = load_model(str(tiny_model_dir)), load_model(str(tiny_model_dir))
    ids = a.tokenizer("The quick", return_tensors="pt")
    ga = a.model.generate(**ids, max_new_tokens=8, do_sample=False)
    gb = b.model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert torch.equal(ga, gb)


def test_untied_bundle_exposes_output_matrix(tiny_untied_model_dir):
    bundle = load_model(str(tiny_untied_model_dir))
    assert not bundle.tied
    assert bundle.output_embeddings().shape == bundle.input_embeddings().shape


def test_config_json_path_means_its_directory(tiny_model_dir):
    assert resolve_spec(str(tiny_model_dir / "config.json")) == ("dir", tiny_model_dir)


def test_hub_id_is_recognised_without_network():
    assert resolve_spec("HuggingFaceTB/SmolLM2-135M") == ("hub", "HuggingFaceTB/SmolLM2-135M")


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenswapError, match="could not load model no-such-org/no-such-model"):
        load_model("no-such-org/no-such-model")


@pytest.mark.parametrize("spec", ["/no/such/dir", "./relative/missing"])
def test_missing_path(spec):
    with pytest.raises(TokenswapError, match="does not exist"):
        load_model(spec)


def test_directory_without_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(TokenswapError, match="holds no model"):
        load_model(str(tmp_path))


def test_config_without_weights(tmp_path, tiny_model_dir):
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(TokenswapError, match="no weights"):
        load_model(str(tmp_path))


def test_truncated_safetensors(tmp_path, tiny_model_dir):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(TokenswapError, match="could not load model"):
        load_model(str(bad))


def test_corrupt_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENSWAP_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 40)
    with pytest.raises(TokenswapError, match="could not read GGUF file"):
        load_model(str(bad))
    assert not (tmp_path / "cache" / "gguf").exists() or not any(
        p for p in (tmp_path / "cache" / "gguf").iterdir() if not p.name.startswith("."))


def test_file_that_is_not_a_model(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\x00" * 10)
    with pytest.raises(TokenswapError, match="not a .gguf model"):
        load_model(str(f))


def test_tokenizer_json_and_dir(tmp_path, german_tokenizer):
    german_tokenizer.save_pretrained(tmp_path / "tok")
    by_dir = load_tokenizer(tmp_path / "tok")
    by_file = load_tokenizer(tmp_path / "tok" / "tokenizer.json")
    text = "Übermäßig große Straßen"
    assert by_dir.encode(text) == by_file.encode(text) == german_tokenizer.encode(text)


def test_tokenizer_file_that_is_not_one(tmp_path):
    f = tmp_path / "tokenizer.json"
    f.write_text('{"this": "is not a tokenizer"}')
    with pytest.raises(TokenswapError, match="not a tokenizers JSON file"):
        load_tokenizer(f)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenswapError, match="holds no tokenizer"):
        load_tokenizer(empty)


def test_sentencepiece_model_file(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    text = tmp_path / "train.txt"
    text.write_text("\n".join(["Der schnelle braune Fuchs springt über den faulen Hund."] * 50))
    prefix = tmp_path / "sp"
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(prefix), vocab_size=320,
                                   byte_fallback=True, model_type="bpe", minloglevel=2)
    tok = load_tokenizer(str(prefix) + ".model")
    ids = tok("Fuchs über", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "Fuchs über"


def test_tokenizer_larger_than_embeddings_is_refused(tmp_path, tiny_model_dir, german_tokenizer):
    import shutil

    from conftest import train_byte_level_bpe

    d = tmp_path / "mismatch"
    shutil.copytree(tiny_model_dir, d)
    big = train_byte_level_bpe(["many different words " + str(i) for i in range(3000)], 900)
    big.save_pretrained(d)
    with pytest.raises(TokenswapError, match="does not belong to this model"):
        load_model(str(d))


def test_device_errors_are_one_line(capsys):
    import torch

    from tokenswap.cli import main
    from tokenswap.io.models import check_device

    assert check_device(None) is None and check_device("cpu") == torch.device("cpu")
    with pytest.raises(TokenswapError, match="not a torch device"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(TokenswapError, match="no CUDA device"):
            check_device("cuda")
        assert main(["glitch", "--out", "never", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
