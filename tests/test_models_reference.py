"LoRA and the frozen reference policy of toolrl_nb.models. Uses the tiny random model only (fast)."
import torch
from toolrl_nb.models import ModelConfig, load_policy, reference_policy, tiny_random


def _ids(tok): return torch.tensor([tok("<|im_start|>user\nwhat is 2+2?<|im_end|>\n<|im_start|>assistant\n").input_ids])


def _train_step(model, ids):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-1)
    model.train(); model(ids).logits.square().mean().backward(); opt.step(); opt.zero_grad()


def test_lora_only_adapters_train():
    model, _ = load_policy(ModelConfig(name="tiny-random", lora=True, lora_r=4, lora_targets=["q_proj", "v_proj"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 2                                 # 2 layers x 2 modules x (A, B)


def test_lora_reference_is_the_base_and_stays_fixed():
    base, tok = tiny_random(0); ids = _ids(tok)
    with torch.no_grad(): base_logits = base(ids).logits
    policy, _ = load_policy(ModelConfig(name="tiny-random", lora=True, single_token_tags=False))  # the raw base has no added tags
    ref = reference_policy(policy)
    assert torch.allclose(ref(input_ids=ids).logits, base_logits, atol=1e-6)
    for _ in range(3): _train_step(policy, ids)                          # B leaves 0 after the first step
    with torch.no_grad(): moved = policy(ids).logits
    out = ref(input_ids=ids)
    assert not torch.allclose(moved, base_logits, atol=1e-4)
    assert torch.allclose(out.logits, base_logits, atol=1e-6) and not out.logits.requires_grad
    assert policy.training                                               # the reference restores the mode
    with torch.no_grad(): assert torch.equal(policy(ids).logits, moved)  # adapters re-enabled afterwards


def test_full_reference_is_a_frozen_copy():
    policy, tok = tiny_random(0); ids = _ids(tok)
    ref = reference_policy(policy)
    with torch.no_grad(): before = ref(input_ids=ids).logits
    _train_step(policy, ids)
    with torch.no_grad(): assert torch.equal(ref(input_ids=ids).logits, before)
    with torch.no_grad(): assert not torch.allclose(policy(ids).logits, before)
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(ref.parameters(), policy.parameters()))


def test_saved_adapter_reloads_on_its_base(tmp_path):
    policy, tok = load_policy(ModelConfig(name="tiny-random", lora=True)); ids = _ids(tok)
    _train_step(policy, ids); _train_step(policy, ids)
    policy.save_pretrained(tmp_path)                                     # adapter only: records base "tiny-random"
    again, _ = load_policy(str(tmp_path))
    with torch.no_grad(): assert torch.equal(again.eval()(ids).logits, policy.eval()(ids).logits)
    assert {n for n, p in again.named_parameters() if p.requires_grad} == \
           {n for n, p in policy.named_parameters() if p.requires_grad}
