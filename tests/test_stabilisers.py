"""The stabilisers of `grpo.GRPOConfig` that TRL 1.16 cannot check for us (tests/test_grpo_trl.py covers clip-higher,
Dr. GRPO, GSPO, the entropy bonus and mask_truncated): the TIS/MIS corrections and the mismatch monitor against
small cases computed by hand, a real mismatch from a quantised sampler, and control tokens the rollout appends.
All on the TINY RANDOM model (`tiny_random`, random weights, SmolLM2's tokenizer) and the fast-lane environment."""
import math

import pytest, torch
from toolrl_nb.fastlane import FastLaneEnv
from toolrl_nb.grpo import GRPOConfig, grpo_backward, grpo_loss, importance_ratio, rollout_weights, token_logps, train_step, make_optimizer
from toolrl_nb.models import tiny_random
from toolrl_nb.rollout import IM_END, RolloutConfig, collate, rollout, sampling_copy


@pytest.fixture(scope="module")
def tiny(): return tiny_random(0)


@pytest.fixture(scope="module")
def env(): return FastLaneEnv(n_turns=(2, 2))


def test_tis_and_mis_by_hand():
    "One row, three tokens; trainer and sampler log-probs differ by log 3, 0 and log 0.25: w = 3, 1, 0.25."
    trainer = torch.tensor([[math.log(0.6), math.log(0.5), math.log(0.1)]])
    sampler = torch.tensor([[math.log(0.2), math.log(0.5), math.log(0.4)]])
    m = torch.ones(1, 3)
    tis = rollout_weights(trainer, sampler, m, GRPOConfig(rollout_correction="tis", correction_cap=2.0))
    torch.testing.assert_close(tis, torch.tensor([[2.0, 1.0, 0.25]]))               # min(w, 2)
    mis = rollout_weights(trainer, sampler, m, GRPOConfig(rollout_correction="mis", correction_band=(0.5, 2.0)))
    torch.testing.assert_close(mis, torch.tensor([[0.0, 1.0, 0.0]]))                # w = 3 and w = 0.25 leave
    seq = rollout_weights(trainer, sampler, m, GRPOConfig(rollout_correction="tis", correction_level="sequence", correction_cap=5.0))
    torch.testing.assert_close(seq, torch.full((1, 3), 0.75))                       # the product 3 * 1 * 0.25
    # through the loss, on-policy w.r.t. the trainer (ratio 1), A = 1: pg per token = -w, token-mean over 3 tokens
    lp = trainer.clone().requires_grad_()
    loss, st = grpo_loss(lp, sampler, torch.tensor([1.0]), m, cfg=GRPOConfig(rollout_correction="tis", dual_clip=None),
                         proximal_logps=trainer)
    assert abs(float(loss.detach()) - (-(2.0 + 1.0 + 0.25) / 3)) < 1e-6
    loss.backward()
    torch.testing.assert_close(lp.grad, -torch.tensor([[2.0, 1.0, 0.25]]) / 3)      # the weight scales each token's gradient
    assert abs(st["mismatch_abs_mean"] - (math.log(3) + 0 + math.log(4)) / 3) < 1e-6
    assert abs(st["mismatch_abs_max"] - math.log(4)) < 1e-6 and abs(st["is_cut_frac"] - 1 / 3) < 1e-6


def test_sequence_ratio_by_hand():
    "GSPO: one ratio per trajectory, exp(mean log-ratio over its loss tokens), the same on each of its tokens."
    lp = torch.log(torch.tensor([[0.5, 0.2, 0.9], [0.3, 0.3, 0.3]]))
    old = torch.log(torch.tensor([[0.25, 0.4, 0.9], [0.3, 0.6, 0.3]]))
    m = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    r = importance_ratio(lp, old, m, "sequence")
    torch.testing.assert_close(r[0], torch.full((3,), math.exp((math.log(2) + math.log(0.5)) / 2)))   # = 1
    torch.testing.assert_close(r[1], torch.full((3,), 0.5))


def test_dr_grpo_is_a_constant_normaliser():
    "Dr. GRPO: sum of the per-token loss / (B x dr_grpo_tokens), whatever the number of loss tokens."
    lp = torch.zeros(2, 4, requires_grad=True)
    m = torch.tensor([[1.0, 1, 1, 0], [0, 0, 0, 1]])
    cfg = GRPOConfig(loss_agg="dr_grpo", dr_grpo_tokens=10, dual_clip=None)
    loss, _ = grpo_loss(lp, lp.detach(), torch.tensor([1.0, -1.0]), m, cfg=cfg)
    assert abs(float(loss.detach()) - (-3 + 1) / 20) < 1e-7                                # token-mean would give -2/4


def test_forced_im_end_never_carries_loss(tiny, env):
    "Actions cut by the cap get an <|im_end|> appended by the rollout: it is in the ids, never in the loss, with any setting."
    model, tok = tiny
    trajs = rollout(model, tok, env, env.tasks("train")[:2], RolloutConfig(group_size=2, max_action_tokens=3, seed=0))
    im_end = tok.convert_tokens_to_ids(IM_END)
    cut = [(i, a) for i, t in enumerate(trajs) for a in t.actions if a.truncated]
    assert cut, "a 3-token cap should cut some actions of the random model"
    batch = collate(trajs, tok.pad_token_id)
    for i, a in cut:
        assert trajs[i].ids[a.end] == im_end and batch["loss_mask"][i, a.end] == 0   # appended, not sampled
        assert batch["truncated_mask"][i, a.start:a.end].all() and batch["truncated_mask"][i, a.end] == 0
    assert (batch["truncated_mask"] <= batch["loss_mask"]).all()
    # the forced token's log-prob gets no gradient: perturbing its logit column leaves the loss unchanged
    for cfg in [GRPOConfig(), GRPOConfig(importance_level="sequence"), GRPOConfig(entropy_coef=0.1),
                GRPOConfig(rollout_correction="tis"), GRPOConfig(mask_truncated="action")]:
        ids, am = batch["input_ids"], batch["attention_mask"]
        lp, ent = token_logps(model, ids, am, return_entropy=True, entropy_grad=True)
        lp = lp.detach().requires_grad_()
        loss, _ = grpo_loss(lp, batch["behaviour_logps"], torch.linspace(-1, 1, len(trajs)), batch["loss_mask"], cfg=cfg)
        loss.backward()
        for i, a in cut: assert lp.grad[i, a.end] == 0
    # mask_truncated: "action" drops exactly the cut actions' tokens, "trajectory" every token of their rows
    n = {mode: train_step(model, batch, *make_optimizer(model.parameters(), GRPOConfig(lr=0.0)), GRPOConfig(lr=0.0, mask_truncated=mode),
                          micro_batch_size=2)["n_tokens"] for mode in ("none", "action", "trajectory")}
    lm, tm = batch["loss_mask"], batch["truncated_mask"]
    assert n["none"] == int(lm.sum()) and n["action"] == int(lm.sum() - tm.sum())
    assert n["trajectory"] == int(lm[tm.sum(1) == 0].sum()) <= n["action"] < n["none"]   # (the random model: every row cut)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_mismatch_monitor_reads_the_sampler(tiny, env, precision):
    """The fp32 sampler is the policy (mismatch ~ round-off); a bf16 or int8 copy is a real mismatch that TIS/MIS then act on.
    Measured on the tiny random model: mean |trainer - sampler| log-prob 6.5e-4 (bf16), larger for int8; fp32 < 1e-5."""
    model, tok = tiny
    sampler = sampling_copy(model, precision)
    assert (sampler is model) == (precision == "fp32")
    trajs = rollout(sampler, tok, env, env.tasks("train")[:2], RolloutConfig(group_size=2, max_action_tokens=16, seed=1))
    batch = collate(trajs, tok.pad_token_id)
    batch["rewards"] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    st = {"none": grpo_backward(model, batch, GRPOConfig())}
    mm = st["none"]["mismatch_abs_mean"]
    # thresholds at the mean mismatch: the tokens above it are the ones the corrections must cut
    band = dict(correction_band=(math.exp(-mm), math.exp(mm)), correction_cap=math.exp(mm)) if precision != "fp32" else {}
    st |= {c: grpo_backward(model, batch, GRPOConfig(rollout_correction=c, **band)) for c in ("tis", "mis")}
    model.zero_grad()
    if precision == "fp32":
        assert mm < 1e-5 and st["mis"]["is_cut_frac"] == 0 and abs(st["tis"]["is_weight_mean"] - 1) < 1e-4
    else:
        assert mm > 3e-4, mm                                                        # 30x the fp32 bound below
        assert st["mis"]["is_cut_frac"] > 0 and st["tis"]["is_cut_frac"] > 0        # the corrections act on it
        assert st["none"]["mismatch_abs_max"] >= mm
    assert st["none"]["is_weight_mean"] == 1.0 and st["none"]["is_cut_frac"] == 0.0  # no correction: weights 1
