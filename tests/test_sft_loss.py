"""toolrl_nb.sft loss and loop, on the tiny random model (2-layer Llama, SmolLM2's tokenizer; test-only weights)."""
import math

import pytest, torch

from toolrl_nb.models import tiny_random
from toolrl_nb.sft import (SFTConfig, SFTExample, action_pairs, collate_sft, conversation_example, lr_factor,
                           sft_loss, sft_train, text_pair_example)

CALL = '<tool_call>\n{"name": "ls", "arguments": {"path": "/tmp"}}\n</tool_call>'
CHAT = [{"role": "system", "content": "You can call tools."}, {"role": "user", "content": "What is in /tmp?"},
        {"role": "assistant", "content": CALL}, {"role": "tool", "content": '["a.txt", "b.txt"]'},
        {"role": "assistant", "content": "Two files: a.txt and b.txt."},
        {"role": "user", "content": "Thanks."}, {"role": "assistant", "content": "You are welcome."}]

@pytest.fixture(scope="module")
def tok(): return tiny_random(0)[1]

@pytest.fixture(scope="module")
def data(tok):
    "Four examples of different lengths (so padding matters)."
    return action_pairs(tok, CHAT)[:2] + [text_pair_example(tok, "Why?", "Because."), conversation_example(tok, CHAT)]

def test_loss_equals_hand_computation(tok, data):
    model, _ = tiny_random(0)
    for ex in data:
        loss, st = sft_loss(model, collate_sft([ex], tok.pad_token_id))
        with torch.no_grad(): lp = torch.log_softmax(model(torch.tensor([ex.input_ids])).logits[0], -1)
        terms = [-lp[t - 1, ex.input_ids[t]] for t in range(1, len(ex.input_ids)) if ex.loss_mask[t]]
        assert st["n_tokens"] == len(terms) == ex.n_targets
        assert loss.item() == pytest.approx(float(sum(terms) / len(terms)), rel=1e-5)
        assert st["loss"] == pytest.approx(loss.item(), rel=1e-6) and 0 <= st["accuracy"] <= 1

def test_loss_counts_im_end_targets(tok):
    "n_tokens includes each response's <|im_end|> (id == pad): the mask is not derived from ids != pad."
    ex = text_pair_example(tok, "Q", "A")
    _, st = sft_loss(tiny_random(0)[0], collate_sft([ex, action_pairs(tok, CHAT)[0]], tok.pad_token_id))
    assert st["n_tokens"] == ex.n_targets + action_pairs(tok, CHAT)[0].n_targets
    assert ex.input_ids[-1] == tok.pad_token_id and ex.loss_mask[-1] == 1

def test_padding_does_not_change_loss(tok, data):
    model, _ = tiny_random(0)
    singles = [sft_loss(model, collate_sft([e], tok.pad_token_id))[1] for e in data]
    _, st = sft_loss(model, collate_sft(data, tok.pad_token_id))
    assert st["nll_sum"] == pytest.approx(sum(s["nll_sum"] for s in singles), rel=1e-5)
    assert st["n_tokens"] == sum(e.n_targets for e in data)

def _grads(model, data, micro, pad):
    model.zero_grad()
    n = sum(e.n_targets for e in data)
    for i in range(0, len(data), micro):
        sft_loss(model, collate_sft(data[i:i + micro], pad), n_tokens=n)[0].backward()
    return [p.grad.clone() for p in model.parameters()]

def test_microbatch_gradient_equals_full_batch(tok, data):
    model, _ = tiny_random(0)
    full = _grads(model, data, 4, tok.pad_token_id)
    for micro in (1, 3):
        for a, b in zip(full, _grads(model, data, micro, tok.pad_token_id)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)

def test_train_overfits_four_examples(tok, data):
    model, _ = tiny_random(0)
    seen = []
    hist = sft_train(model, data, SFTConfig(lr=2e-2, epochs=8, batch_size=4, micro_batch_size=2, schedule="constant",
                                            warmup_ratio=0), on_step=seen.append, progress=False)
    assert len(hist) == 8 and seen == hist
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"], [h["loss"] for h in hist]
    assert not any(h["skipped"] for h in hist) and all(h["n_tokens"] == sum(e.n_targets for e in data) for h in hist)
    _, st = sft_loss(model, collate_sft(data, tok.pad_token_id))
    assert st["loss"] < 0.5 * hist[0]["loss"]

def test_train_nan_guard_and_stop(tok, data):
    model, _ = tiny_random(0)
    with torch.no_grad(): model.model.norm.weight[0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    hist = sft_train(model, data, SFTConfig(batch_size=1), progress=False, on_step=lambda s: s["step"] < 2)
    assert len(hist) == 3 and all(h["skipped"] for h in hist)
    assert all(torch.allclose(a, b, equal_nan=True) for a, b in zip(before, model.parameters()))

def test_carried_optimizer_lr_restored(tok, data):
    model, _ = tiny_random(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    hist = sft_train(model, data, SFTConfig(lr=1e-3, batch_size=2, epochs=2, warmup_ratio=0.25), optimizer=opt,
                     progress=False)
    assert len(hist) == 4 and opt.param_groups[0]["lr"] == 1e-6
    assert [h["lr"] for h in hist][1] == pytest.approx(1e-3) and hist[0]["lr"] < 1e-3
    assert len(opt.state) > 0     # the caller's optimiser carried the moments
    hist = sft_train(model, data, SFTConfig(schedule="none", batch_size=4), optimizer=opt, progress=False)
    assert hist[0]["lr"] == 1e-6

def test_lr_schedule():
    c = SFTConfig(warmup_ratio=0.1)
    f = [lr_factor(c, s, 20) for s in range(20)]
    assert f[0] == pytest.approx(1 / 3) and f[2] == pytest.approx(1.0) and all(a > b for a, b in zip(f[2:], f[3:]))
    assert 0 < f[-1] < 0.01
    with pytest.raises(ValueError): lr_factor(SFTConfig(schedule="linear"), 0, 10)

def test_truncation_in_train_and_empty(tok, data):
    model, _ = tiny_random(0)
    hist = sft_train(model, data, SFTConfig(max_len=16, batch_size=4, lr=0), progress=False)
    assert hist[0]["n_tokens"] == sum(SFTExample(e.input_ids[-16:], e.loss_mask[-16:]).n_targets for e in data)
    assert sft_train(model, [], SFTConfig(), progress=False) == []
    hist = sft_train(model, [SFTExample([1, 2, 3], [0, 0, 0])], SFTConfig(), progress=False)
    assert hist[0]["skipped"] and hist[0]["n_tokens"] == 0
