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
                     loss_type="dapo", scale_rewards="group", use_cpu=True, bf16=False, gradient_checkpointing=False,
                     gradient_accumulation_steps=1, max_completion_length=8, report_to=[], save_strategy="no",
                     **{"beta": 0.0, "num_iterations": 1, **kw})
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


def compare(model_dir, tmp_path, scenario):
    "Returns max abs diffs (advantages, loss, grads) between TRL and us, plus our stats, for one scenario."
    beta = 0.1 if scenario.startswith("kl") else 0.0
    corr = scenario == "kl_ratio"                      # TRL's default use_bias_correction_kl=True
    tr = _trainer(model_dir, tmp_path, beta=beta, num_iterations=2 if scenario == "off_policy" else 1,
                  use_bias_correction_kl=corr)
    if beta: _perturb(tr.model, 0, 0.02)                         # policy != reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tr._generate_and_score_completions([{"prompt": "t2 t3"}] * B)
    if scenario == "off_policy":
        assert "old_per_token_logps" in out                                  # TRL kept the sampling-time log-probs
        _perturb(tr.model, 1, 0.05)                                          # the policy moved since sampling
    model = tr.model
    model.zero_grad()
    loss_trl = tr.compute_loss(model, out)
    loss_trl.backward()
    g_trl = _grads(model)

    # the same batch in the rollout engine's layout: one [B, T] sequence per trajectory, loss on completions only
    pm, cm = out["prompt_mask"], out["completion_mask"]
    batch = dict(input_ids=torch.cat([out["prompt_ids"], out["completion_ids"]], 1),
                 attention_mask=torch.cat([pm, cm], 1), loss_mask=torch.cat([torch.zeros_like(pm), cm], 1),
                 rewards=torch.tensor(REWARDS), group=torch.arange(B) // G)
    if scenario == "off_policy":
        batch["behaviour_logps"] = torch.cat([torch.zeros_like(pm, dtype=torch.float32), out["old_per_token_logps"] * cm], 1)
    cfg = GRPOConfig(eps=1e-4, kl_coef=beta, kl_ratio_correction=corr,      # eps: TRL's fixed 1e-4
                     dual_clip=None if scenario == "off_policy" else 3.0)  # TRL has no dual clip
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
                g_ours=g_ours, g_trl=g_trl, stats=st)


def beta_scenario(s): return s.startswith("kl")


@pytest.mark.parametrize("scenario", ["on_policy", "kl", "kl_ratio", "off_policy"])
def test_matches_trl(model_dir, tmp_path, scenario):
    r = compare(model_dir, tmp_path, scenario)
    torch.testing.assert_close(r["adv_ours"], r["adv_trl"], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(torch.tensor(r["loss_ours"]), torch.tensor(r["loss_trl"]), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(r["g_ours"], r["g_trl"], rtol=RTOL, atol=ATOL)
    assert r["grad_scale"] > 1e-3                                  # the comparison is not between two zeros
    st = r["stats"]
    if scenario == "on_policy": assert st["clip_frac"] == 0 and abs(st["ratio_mean"] - 1) < 1e-5
    if beta_scenario(scenario): assert st["kl"] > 1e-4 and st["kl_loss"] > 0
    if scenario == "off_policy": assert st["clip_frac"] > 0        # clipping really happened


if __name__ == "__main__":
    import tempfile
    from pathlib import Path
    class _F:
        def mktemp(self, n): return Path(tempfile.mkdtemp(prefix=n))
    d = model_dir.__wrapped__(_F())
    for s in ["on_policy", "kl", "kl_ratio", "off_policy"]:
        r = compare(d, Path(tempfile.mkdtemp()), s)
        st = r["stats"]
        print(f"{s:10s} adv {r['adv']:.1e}  loss {r['loss']:.1e} (trl {r['loss_trl']:.6f})  grad {r['grad']:.1e} "
              f"(max |g| {r['grad_scale']:.2e})  clip_frac {st['clip_frac']:.3f} kl {st['kl']:.4f} n_tok {st['n_tokens']}")
