"""Mini-batch updates, zero-advantage groups and the update's statistics (toolrl_nb.grpo.train_step). All on a TINY
RANDOM Llama (hidden 32, 2 layers; random weights, not SmolLM2), on crafted batches, in a few seconds."""
import copy, dataclasses, subprocess, sys
from pathlib import Path

import pytest, torch

from toolrl_nb.grpo import GRPOConfig, make_optimizer, random_batch, train_step
from toolrl_nb.runlog import TABLES


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                        tie_word_embeddings=False)).float()


def crafted():
    "6 groups of 2 rollouts, one success in each: every group carries signal."
    b = random_batch(B=12, G=2, seed=1); b["rewards"] = torch.tensor([1., 0] * 6)
    return b


def same(a, b):
    if torch.is_tensor(a): return torch.equal(a, b)
    if isinstance(a, dict): return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_later_minibatches_see_ratios_off_one_and_clip():
    m, b = tiny_llama(), crafted()
    cfg = GRPOConfig(lr=5e-2, warmup_steps=0, mini_batches=3, kl_coef=0.0)
    opt, sched = make_optimizer(m.parameters(), cfg)
    ups = []
    st = train_step(m, b, opt, sched, cfg, micro_batch_size=2, on_update=lambda i, s: ups.append(s))
    assert len(ups) == 3 and st["n_updates"] == 3 and sched.last_epoch == 1       # 3 updates, one scheduler step
    assert abs(ups[0]["ratio_min"] - 1) < 1e-5 and abs(ups[0]["ratio_max"] - 1) < 1e-5 and ups[0]["clip_frac"] == 0
    for u in ups[1:]:
        assert u["ratio_min"] < 0.99 or u["ratio_max"] > 1.01, u
        assert u["clip_frac"] > 0 and u["clip_frac"] == pytest.approx(u["clip_frac_low"] + u["clip_frac_high"]), u
    assert sum(u["n_tokens"] for u in ups) == st["n_tokens"] == int(b["loss_mask"].sum())   # disjoint, covering


def test_one_minibatch_is_the_old_single_update():
    "mini_batches 1, epochs 1: on-policy (ratio exactly 1), nothing clipped."
    m, b = tiny_llama(), crafted()
    cfg = GRPOConfig(lr=5e-2, warmup_steps=0, kl_coef=0.0)
    opt, sched = make_optimizer(m.parameters(), cfg)
    st = train_step(m, b, opt, sched, cfg)
    assert st["n_updates"] == 1 and st["ratio_min"] == st["ratio_max"] == 1.0 and st["clip_frac"] == 0


def test_epochs_repeat_the_minibatches():
    m, b = tiny_llama(), crafted()
    cfg = GRPOConfig(lr=1e-2, warmup_steps=0, mini_batches=2, epochs=2, kl_coef=0.0)
    opt, sched = make_optimizer(m.parameters(), cfg)
    ups = []
    train_step(m, b, opt, sched, cfg, on_update=lambda i, s: ups.append(s))
    assert len(ups) == 4 and [u["n_tokens"] for u in ups[:2]] == [u["n_tokens"] for u in ups[2:]]
    assert ups[2]["ratio_max"] > 1 or ups[2]["ratio_min"] < 1      # epoch 2 revisits mini-batch 1 off-policy


def test_drop_all_zero_step_changes_nothing_bitwise():
    m, b = tiny_llama(), crafted()
    cfg = GRPOConfig(lr=5e-2, warmup_steps=3, mini_batches=3, kl_coef=0.0, zero_advantage="drop")
    opt, sched = make_optimizer(m.parameters(), cfg)
    train_step(m, b, opt, sched, cfg); train_step(m, b, opt, sched, cfg)    # real optimiser state and warm-up
    w0, o0, s0 = copy.deepcopy(m.state_dict()), copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    flat = {**b, "rewards": torch.full((12,), 0.3)}                          # every group flat (fractional rewards too)
    st = train_step(m, flat, opt, sched, cfg)
    assert st["n_updates"] == 0 and st["zero_adv_share"] == 1.0 and not st["skipped"]
    assert same(m.state_dict(), w0) and same(opt.state_dict(), o0) and same(sched.state_dict(), s0)
    # the same step with "update" moves the weights: AdamW momentum and weight decay with a zero policy gradient
    st = train_step(m, flat, opt, sched, dataclasses.replace(cfg, zero_advantage="update"))
    assert st["n_updates"] == 3 and st["pg_loss"] == 0.0 and not same(m.state_dict(), w0)


def test_drop_leaves_flat_groups_out_and_reports_their_share():
    m, b = tiny_llama(), crafted()
    b["rewards"] = torch.tensor([1., 0, 1, 1, 1., 0, 0, 0, 1., 0, 1, 1])          # groups 1, 3, 5 flat
    cfg = GRPOConfig(lr=1e-2, warmup_steps=0, mini_batches=3, kl_coef=0.0, zero_advantage="drop")
    opt, sched = make_optimizer(m.parameters(), cfg)
    seen = []
    st = train_step(m, b, opt, sched, cfg, on_logits=lambda sl, logits, full: seen.append(sl))
    kept = [0, 1, 4, 5, 8, 9]
    assert st["zero_adv_share"] == 0.5 and st["n_updates"] == 3
    assert st["n_tokens"] == int(b["loss_mask"][kept].sum())
    rows = sorted(r for sl in seen for r in range(12)[sl])
    assert rows == list(range(12))                                            # probes still see every row once


def test_every_update_statistic_is_a_steps_column():
    m, b = tiny_llama(), crafted()
    cfg = GRPOConfig(lr=1e-2, warmup_steps=0, mini_batches=3)
    opt, sched = make_optimizer(m.parameters(), cfg)
    from toolrl_nb.grpo import ExtraLoss
    extra = ExtraLoss(lambda model, mb, n: model(input_ids=mb).logits.float().pow(2).sum() / n, [b["input_ids"][:2]], [2.0])
    for kw in (dict(), dict(extra=extra)):
        ref = tiny_llama(seed=1)
        st = train_step(m, b, opt, sched, cfg, ref_model=ref, **kw)
        missing = sorted(set(st) - set(TABLES["steps"]))
        assert not missing, f"update statistics with no steps column: {missing}"
    st = train_step(m, {**b, "rewards": torch.ones(12)}, opt, sched, dataclasses.replace(cfg, zero_advantage="drop"))
    assert not sorted(set(st) - set(TABLES["steps"]))


def test_no_second_copy_of_the_update():
    "The `duplicates` tool (when installed) finds no copy of the update loop outside grpo."
    import shutil
    if not shutil.which("duplicates"): pytest.skip("duplicates tool not installed")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["duplicates", "--repo", str(root / "toolrl_nb"), "--most", "200"], capture_output=True, text=True).stdout
    pairs = [l for l in out.splitlines() if l.startswith("D") and "grpo.py" in l]
    assert not pairs, out
