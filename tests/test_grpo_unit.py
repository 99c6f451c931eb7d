"""Hand-computed checks of toolrl_nb.grpo (tiny random Llama = random weights, NOT SmolLM2)."""
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from toolrl_nb.grpo import (GRPOConfig, group_advantages, grpo_backward, grpo_loss, k3_kl, logit_grad_split,
                            make_optimizer, random_batch, token_logps, train_step)


def tiny(seed=0, V=96):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        tie_word_embeddings=False)).float()


def close(a, b, tol=1e-6): torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float32),
                                                      torch.as_tensor(b, dtype=torch.float32), rtol=0, atol=tol)


# --- advantages -------------------------------------------------------------------------------------------------
def test_advantages_1001_unbiased_std():
    a = group_advantages(torch.tensor([1., 0, 0, 1, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), eps=0.0)
    s = math.sqrt(4 * 0.25 / 3)                                   # unbiased std of [1,0,0,1]
    close(a[:4], [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s], 1e-6)
    close(a[4:], [-1.5, 0.5, 0.5, 0.5], 1e-6)                    # [0,1,1,1]: mean .75, std .5
    close(group_advantages(torch.tensor([1., 0, 0, 1]), torch.zeros(4), scale_by_std=False), [.5, -.5, -.5, .5])


def test_advantages_degenerate_groups():
    close(group_advantages(torch.ones(4), torch.zeros(4)), torch.zeros(4))             # all equal -> 0
    close(group_advantages(torch.tensor([3.0]), torch.tensor([5])), [0.0])           # singleton -> 0
    close(group_advantages(torch.tensor([1., 5, 0, 5]), torch.tensor([9, 2, 9, 2])), [0.7071068, 0, -0.7071068, 0], 1e-5)


# --- clip / dual clip -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("r,A,loss,grad_flows", [
    (1.5, 1.0, -1.2, False),   # A>0, ratio above 1+eps: clipped
    (0.5, 1.0, -0.5, True),    # A>0, ratio below: unclipped (pessimistic)
    (1.5, -1.0, 1.5, True),    # A<0, ratio above: unclipped, below dual bound 3
    (0.5, -1.0, 0.8, False),   # A<0, ratio below 1-eps: clipped
    (4.0, -1.0, 3.0, False),   # A<0, ratio > c: dual clip caps at -c*A
    (4.0, 1.0, -1.2, False),   # dual clip never applies to A>0
])
def test_clip_single_token(r, A, loss, grad_flows):
    lp = torch.tensor([[math.log(r)]], requires_grad=True)
    l, st = grpo_loss(lp, torch.zeros(1, 1), torch.tensor([A]), torch.ones(1, 1))
    close(l.item(), loss, 1e-6)
    l.backward()
    close(lp.grad.item(), -A * r if grad_flows else 0.0, 1e-6)
    assert st["clip_frac"] == (1.0 if (r > 1.2 and A > 0) or (r < 0.8 and A < 0) else 0.0)
    assert st["dual_clip_frac"] == (1.0 if A < 0 and r > 3 else 0.0)


def test_dual_clip_off_and_asymmetric_clip():
    lp = torch.tensor([[math.log(4.0)]])
    close(grpo_loss(lp, torch.zeros(1, 1), torch.tensor([-1.]), torch.ones(1, 1), cfg=GRPOConfig(dual_clip=None))[0], 4.0)
    close(grpo_loss(lp, torch.zeros(1, 1), torch.tensor([1.]), torch.ones(1, 1), cfg=GRPOConfig(clip_eps_high=0.28))[0], -1.28)
    with pytest.raises(ValueError, match="dual_clip"): GRPOConfig(dual_clip=1.0)


def test_on_policy_is_reinforce_and_mask_blocks_nan():
    lp = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1.]])
    bad = torch.where(mask.bool(), lp, torch.tensor(float("nan")))
    l, st = grpo_loss(bad, torch.where(mask.bool(), lp, 0.).detach(), torch.tensor([2., -1]), mask,
                      ref_logps=torch.where(mask.bool(), -1.0, float("-inf")), cfg=GRPOConfig(kl_coef=0.1))
    l.backward()
    assert torch.isfinite(l) and torch.isfinite(lp.grad).all()
    assert st["ratio_mean"] == 1.0 and st["n_tokens"] == 4
    assert (lp.grad[mask == 0] == 0).all()


# --- k3 ------------------------------------------------------------------------------------------------------
def test_k3_known_values():
    lp = torch.tensor([-1.0, -2.0, -0.5, -30.0, -1.0])
    ref = torch.tensor([-1.0, -1.0, -1.5, -0.1, -25.0])
    # d = 0, 1, -1, 29.9 (-> 10), -24 (d clamped to -20: e^-20 + 19 -> clamp 10)
    close(k3_kl(lp, ref), [0.0, math.e - 2, math.exp(-1), 10.0, 10.0], 1e-5)
    close(k3_kl(lp[:3], ref[:3], clamp=False), [0.0, math.e - 2, math.exp(-1)], 1e-6)
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


# --- aggregation -----------------------------------------------------------------------------------------------
def test_token_mean_vs_seq_mean_ragged():
    lp = torch.zeros(3, 4)
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 1], [0, 1, 1, 0.]])
    adv = torch.tensor([1., -3, 0.5])                              # per-token loss = -A (ratio 1)
    close(grpo_loss(lp, lp, adv, mask)[0], (3 * -1 + 3 + 2 * -0.5) / 6)
    close(grpo_loss(lp, lp, adv, mask, cfg=GRPOConfig(loss_agg="seq-mean-token-mean"))[0], (-1 + 3 - 0.5) / 3)
    for agg, n in (("token-mean", 6), ("seq-mean-token-mean", 3)):
        c = GRPOConfig(loss_agg=agg)
        parts = sum(grpo_loss(lp[i:i+1], lp[i:i+1], adv[i:i+1], mask[i:i+1], cfg=c, n_total=n)[0] for i in range(3))
        close(parts, grpo_loss(lp, lp, adv, mask, cfg=c)[0])


def test_kl_loss_added_with_coef():
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -1.0]])
    l, st = grpo_loss(lp, lp, torch.tensor([0.]), torch.ones(1, 2), ref_logps=ref, cfg=GRPOConfig(kl_coef=0.5))
    close(l, 0.5 * (math.e - 2) / 2); close(st["kl"], (math.e - 2) / 2)
    l0, st0 = grpo_loss(lp, lp, torch.tensor([0.]), torch.ones(1, 2), ref_logps=ref, cfg=GRPOConfig(kl_coef=0))
    close(l0, 0.0); close(st0["kl"], (math.e - 2) / 2)


# --- token_logps ------------------------------------------------------------------------------------------------
def test_token_logps_alignment_and_temperature():
    m = tiny().eval()
    ids = torch.tensor([[5, 9, 3, 7], [4, 8, 0, 0]]); am = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        lp, ent = token_logps(m, ids, am, temperature=2.0, return_entropy=True)
        full = (m(input_ids=ids, attention_mask=am).logits / 2.0).log_softmax(-1)
    close(lp[:, 0], [0, 0])
    close(lp[:, 1:], full[:, :-1].gather(-1, ids[:, 1:, None])[..., 0], 1e-5)
    assert ent.shape == (2, 4) and lp.shape == (2, 4)


# --- optimiser / train_step -----------------------------------------------------------------------------------------
def test_warmup_then_constant():
    opt, sched = make_optimizer([torch.nn.Parameter(torch.zeros(2))], GRPOConfig(lr=1.0, warmup_steps=10))
    lrs = []
    for _ in range(13): lrs.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
    close(lrs, [i / 10 for i in range(10)] + [1.0] * 3)
    assert opt.param_groups[0]["weight_decay"] == 0.01 and isinstance(opt, torch.optim.AdamW)


def _batch_with_behaviour(m, seed=0):
    b = random_batch(B=6, T=12, seed=seed)
    with torch.no_grad():
        b["behaviour_logps"] = token_logps(m, b["input_ids"], b["attention_mask"])[0] * b["loss_mask"]
    return b


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_micro_batched_gradient_equals_full_batch(agg):
    m = tiny(); ref = tiny(seed=1).eval(); b = _batch_with_behaviour(m)
    with torch.no_grad(): b["behaviour_logps"] += 0.3 * torch.randn(b["behaviour_logps"].shape) * b["loss_mask"]  # off-policy
    cfg = GRPOConfig(loss_agg=agg, kl_coef=0.05)
    grads = []
    for mbs in (None, 1, 4):
        m.zero_grad(); st = grpo_backward(m, b, cfg, ref_model=ref, micro_batch_size=mbs)
        grads.append((torch.cat([p.grad.flatten() for p in m.parameters()]), st))
    for g, st in grads[1:]:
        torch.testing.assert_close(g, grads[0][0], rtol=1e-5, atol=1e-7)
        close(st["loss"], grads[0][1]["loss"], 1e-6); close(st["clip_frac"], grads[0][1]["clip_frac"], 1e-6)
        close(st["entropy"], grads[0][1]["entropy"], 1e-5)
    assert grads[0][1]["clip_frac"] > 0 and grads[0][1]["kl"] > 0


def test_train_step_updates_and_reports():
    m = tiny(); b = _batch_with_behaviour(m)
    cfg = GRPOConfig(lr=1e-2, warmup_steps=2)
    opt, sched = make_optimizer(m.parameters(), cfg)
    w0 = [p.detach().clone() for p in m.parameters()]
    st0 = train_step(m, b, opt, sched, cfg, micro_batch_size=4)      # update 0: lr 0 (veRL warm-up)
    assert st0["lr"] == 0 and all(torch.equal(a, p) for a, p in zip(w0, m.parameters()))
    st1 = train_step(m, b, opt, sched, cfg, micro_batch_size=4)
    assert st1["lr"] == pytest.approx(5e-3) and not st1["skipped"]
    assert any(not torch.equal(a, p) for a, p in zip(w0, m.parameters()))
    for k in ("loss", "grad_norm", "lr", "entropy", "clip_frac", "kl", "dual_clip_frac", "ratio_mean", "ratio_max",
              "pg_loss", "kl_loss", "n_tokens", "skipped"):
        assert k in st1


def test_grad_clip():
    m = tiny(); b = _batch_with_behaviour(m)
    b["advantages"] = torch.full((6,), 1e4)                              # huge gradient
    cfg = GRPOConfig(lr=1e-3, warmup_steps=0, max_grad_norm=0.5)
    opt, sched = make_optimizer(m.parameters(), cfg)
    m.train(); opt.zero_grad()
    st = train_step(m, b, opt, sched, cfg)
    assert st["grad_norm"] > 0.5                                         # reported norm is pre-clip


@pytest.mark.parametrize("where", ["behaviour", "advantage"])
def test_nan_guard_skips_update(where):
    m = tiny(); b = _batch_with_behaviour(m)
    cfg = GRPOConfig(lr=1e-2, warmup_steps=0)
    opt, sched = make_optimizer(m.parameters(), cfg)
    train_step(m, b, opt, sched, cfg)                                     # one good step first (optimiser state)
    w = [p.detach().clone() for p in m.parameters()]
    state = {k: v["exp_avg"].clone() for k, v in zip(range(99), opt.state.values())}
    bad = dict(b)
    if where == "behaviour":
        bad["behaviour_logps"] = b["behaviour_logps"].clone(); bad["behaviour_logps"][b["loss_mask"].bool()] = float("nan")
    else:
        bad["advantages"] = torch.tensor([float("inf")] + [0.0] * 5)
    st = train_step(m, bad, opt, sched, cfg, micro_batch_size=2)
    assert st["skipped"]
    assert all(torch.equal(a, p) for a, p in zip(w, m.parameters()))
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(state[i], v["exp_avg"]) for i, v in zip(range(99), opt.state.values()))
    assert sched.last_epoch == 1


# --- logit-gradient identity --------------------------------------------------------------------------------------
def test_logit_grad_split_matches_autograd():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(200, 17, generator=g, requires_grad=True)
    x = torch.randint(0, 17, (200,), generator=g); x[:20] = 4
    a = torch.randn(200, generator=g)
    (a * z.log_softmax(-1).gather(-1, x[:, None])[:, 0]).sum().backward()
    split = logit_grad_split(z.detach().softmax(-1), x, a, [4, 11, 16])
    p = z.detach().softmax(-1)
    for k in (4, 11, 16):
        close(split[k]["total"], z.grad[:, k].mean(), 1e-6)
        hit = x == k
        close(split[k]["self"], (a * (1 - p[:, k]) * hit).sum() / 200, 1e-6)
        close(split[k]["other"], (-a * p[:, k] * ~hit).sum() / 200, 1e-6)
        assert split[k]["n_self"] == int(hit.sum())
