"""Our GRPO loss and its gradient against TRL 1.16's `GRPOTrainer` on the same batch.

Uses a tiny random Llama (random weights, NOT SmolLM2) and a throw-away word-level tokenizer, both built offline.
TRL is driven through `rollout_func` (fixed prompts/completions) and a reward function returning preset values; we
call its `_generate_and_score_completions` and `compute_loss` directly on one batch instead of `train()`.
Run `python tests/test_grpo_trl.py` to print the agreement numbers.
"""
import os
import warnings

import pytest
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import GRPOConfig as TRLConfig, GRPOTrainer

from toolrl_nb.grpo import GRPOConfig, group_advantages, grpo_backward

V, B, G = 96, 8, 4
RTOL, ATOL = 1e-5, 1e-6
REWARDS = [1.0, 0.0, 0.0, 1.0, 0.0, 0.3, 1.0, 0.5]


def _fixed_batch():
    "2 prompts x 4 rollouts, ragged prompt and completion lengths; token 0 is pad == eos."
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, V, (n,), generator=g).tolist() for n in (3, 6)]
    comps = [torch.randint(0, V, (n,), generator=g).tolist() for n in (5, 1, 7, 3, 6, 2, 4, 7)]
    for i in (0, 3, 6): comps[i][-1] = 0               # these end with eos; the others were cut (mask_truncated)
    return [prompts[i // G] for i in range(B)], comps


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_llama")
    tk = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(V)}, unk_token="t1"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="t0", pad_token="t0", unk_token="t1")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad(): m.lm_head.weight.mul_(5)   # sharper next-token distributions than the 0.02 init
    m.save_pretrained(d); tok.save_pretrained(d)
    return d


def _trainer(model_dir, tmp_path, **kw):
    prompt_ids, comp_ids = _fixed_batch()
    def rollout_func(prompts, trainer):
        return {"prompt_ids": prompt_ids, "completion_ids": comp_ids, "logprobs": [[0.0] * len(c) for c in comp_ids]}
    def reward_fn(prompts, completions, **_): return REWARDS
    args = TRLConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=B, num_generations=G,
                     use_cpu=True, bf16=False, gradient_checkpointing=False,
                     gradient_accumulation_steps=1, max_completion_length=8, report_to=[], save_strategy="no",
                     **{"beta": 0.0, "num_iterations": 1, "loss_type": "dapo", "scale_rewards": "group", **kw})
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, processing_class=tok,
                         train_dataset=Dataset.from_dict({"prompt": ["t2 t3"] * 2}), rollout_func=rollout_func)
    tr.model.train()
    tr.current_gradient_accumulation_steps = 1   # set by Trainer's training loop, which we bypass
    return tr


def _perturb(model, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.add_(scale * torch.randn(p.shape, generator=g))


def _grads(model): return torch.cat([p.grad.flatten() for p in model.parameters()])


# the stabilisers (issue 18): TRL's setting, ours, and whether the policy moved since sampling (off-policy)
STABILISERS = {
    "clip_higher": (dict(epsilon_high=0.28), dict(clip_eps_high=0.28), True),                      # DAPO clip-higher
    "dr_grpo": (dict(loss_type="dr_grpo", scale_rewards="none"), dict(loss_agg="dr_grpo", dr_grpo_tokens=8,
                                                                      scale_by_std=False), True),  # Dr. GRPO
    "gspo": (dict(importance_sampling_level="sequence", loss_type="grpo"),                          # GSPO's setup
             dict(importance_level="sequence", loss_agg="seq-mean-token-mean"), True),
    "entropy": (dict(entropy_coef=0.05), dict(entropy_coef=0.05), False),                          # entropy bonus
    "mask_truncated": (dict(mask_truncated_completions=True), dict(mask_truncated="trajectory"), False),
}


def compare(model_dir, tmp_path, scenario):
    "Returns max abs diffs (advantages, loss, grads) between TRL and us, plus our stats, for one scenario."
    beta = 0.1 if scenario.startswith("kl") else 0.0
    corr = scenario == "kl_ratio"                      # TRL's default use_bias_correction_kl=True
    trl_kw, our_kw, moved = STABILISERS.get(scenario, ({}, {}, scenario == "off_policy"))
    tr = _trainer(model_dir, tmp_path, **{"beta": beta, "num_iterations": 2 if moved else 1, "use_bias_correction_kl": corr,
                                          **trl_kw})
    if beta: _perturb(tr.model, 0, 0.02)                         # policy != reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tr._generate_and_score_completions([{"prompt": "t2 t3"}] * B)
    if moved:
        assert "old_per_token_logps" in out                                  # TRL kept the sampling-time log-probs
        _perturb(tr.model, 1, 0.05)                                          # the policy moved since sampling
    model = tr.model
    model.zero_grad()
    loss_trl = tr.compute_loss(model, out)
    loss_trl.backward()
    g_trl = _grads(model)

    # the same batch in the rollout engine's layout: one [B, T] sequence per trajectory, loss on completions only
    pm, cids = out["prompt_mask"], out["completion_ids"]
    comps = _fixed_batch()[1]                          # the completions' own masks (TRL's may have cut truncated rows)
    cm = (torch.arange(cids.shape[1])[None] < torch.tensor([len(c) for c in comps])[:, None]).long()
    batch = dict(input_ids=torch.cat([out["prompt_ids"], cids], 1),
                 attention_mask=torch.cat([pm, cm], 1), loss_mask=torch.cat([torch.zeros_like(pm), cm], 1),
                 rewards=torch.tensor(REWARDS), group=torch.arange(B) // G)
    cut = torch.tensor([c[-1] != 0 for c in comps])   # no eos (token 0) at the end: truncated, as TRL decides
    batch["truncated_mask"] = batch["loss_mask"] * cut[:, None]
    if moved:
        batch["behaviour_logps"] = torch.cat([torch.zeros_like(pm, dtype=torch.float32), out["old_per_token_logps"] * cm], 1)
    cfg = GRPOConfig(**{"eps": 1e-4, "kl_coef": beta, "kl_ratio_correction": corr,      # eps: TRL's fixed 1e-4
                        "dual_clip": None if moved else 3.0, **our_kw})             # TRL has no dual clip
    adv = group_advantages(batch["rewards"], batch["group"], cfg.scale_by_std, cfg.eps)
    ref = None
    if beta:
        ref = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()   # the unperturbed weights
    model.zero_grad()
    st = grpo_backward(model, batch, cfg, ref_model=ref, micro_batch_size=3)
    g_ours = _grads(model)
    return dict(adv=(adv - out["advantages"]).abs().max().item(), adv_ours=adv, adv_trl=out["advantages"],
                loss=abs(st["loss"] - loss_trl.item()), loss_trl=loss_trl.item(), loss_ours=st["loss"],
                grad=(g_ours - g_trl).abs().max().item(), grad_scale=g_trl.abs().max().item(),
                g_ours=g_ours, g_trl=g_trl, stats=st, n_raw=batch["loss_mask"].sum())


def beta_scenario(s): return s.startswith("kl")


SCENARIOS = ["on_policy", "kl", "kl_ratio", "off_policy", *STABILISERS]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_matches_trl(model_dir, tmp_path, scenario):
    r = compare(model_dir, tmp_path, scenario)
    torch.testing.assert_close(r["adv_ours"], r["adv_trl"], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(torch.tensor(r["loss_ours"]), torch.tensor(r["loss_trl"]), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(r["g_ours"], r["g_trl"], rtol=RTOL, atol=ATOL)
    assert r["grad_scale"] > 1e-3                                  # the comparison is not between two zeros
    st = r["stats"]
    if scenario == "on_policy": assert st["clip_frac"] == 0 and abs(st["ratio_mean"] - 1) < 1e-5
    if beta_scenario(scenario): assert st["kl"] > 1e-4 and st["kl_loss"] > 0
    if scenario in ("off_policy", "clip_higher", "gspo"): assert st["clip_frac"] > 0   # clipping really happened
    if scenario == "clip_higher": assert st["clip_frac_low"] > 0 and st["clip_frac_high"] >= 0
    if scenario == "entropy": assert st["entropy_bonus"] > 0
    if scenario == "mask_truncated": assert 0 < st["n_tokens"] < int(r["n_raw"])     # some rows cut, some kept


if __name__ == "__main__":
    import tempfile
    from pathlib import Path
    class _F:
        def mktemp(self, n): return Path(tempfile.mkdtemp(prefix=n))
    d = model_dir.__wrapped__(_F())
    for s in SCENARIOS:
        r = compare(d, Path(tempfile.mkdtemp()), s)
        st = r["stats"]
        print(f"{s:10s} adv {r['adv']:.1e}  loss {r['loss']:.1e} (trl {r['loss_trl']:.6f})  grad {r['grad']:.1e} "
              f"(max |g| {r['grad_scale']:.2e})  clip_frac {st['clip_frac']:.3f} kl {st['kl']:.4f} n_tok {st['n_tokens']}")
