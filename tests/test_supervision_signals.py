"""Contracts of the supervisory signals (toolrl_nb.supervision). All use the TINY RANDOM model
(`load_policy("tiny-random")`: noise, real tokenizer) on the fast lane."""
import re
import pytest, torch
from toolrl_nb.fastlane import FastLaneEnv
from toolrl_nb.format import parse_calls, render_chat
from toolrl_nb.grpo import GRPOConfig, grpo_backward, train_step
from toolrl_nb.models import load_policy
from toolrl_nb.rollout import RolloutConfig, collate
from toolrl_nb.sft import collate_sft, gold_examples, sft_loss
from toolrl_nb.supervision import (compose_groups, gold_trajectory, hint_mismatch, joint_sft_term, quote, reflect,
                                   select_failed_tasks, prs_examples)


@pytest.fixture(scope="module")
def tiny(): return load_policy("tiny-random")          # tiny random model (tests only)

@pytest.fixture(scope="module")
def env(): return FastLaneEnv(n_turns=(2, 3))

@pytest.fixture(scope="module")
def groups(tiny, env):
    model, tok = tiny
    return compose_groups(model, tok, env, env.tasks("train")[:3], RolloutConfig(group_size=5, max_action_tokens=8, seed=1),
                          ops_k=1, hbg_h=2)


def test_groups_hold_exactly_k_gold_with_real_rewards(groups):
    for g in range(3):
        grp = [t for t in groups if t.group == g]
        assert [t.kind for t in grp] == ["gold", "hint", "hint", "policy", "policy"]
        gold = [t for t in grp if t.kind == "gold"]
        assert len(gold) == 1 and gold[0].score.passed and gold[0].reward == 1.0


def test_gold_trajectory_tokens_match_rendered_chat(tiny, env):
    _, tok = tiny
    for task in env.tasks("train")[::37]:
        g = gold_trajectory(tok, env, task)
        assert g.reward == 1.0 and g.kind == "gold"
        assert render_chat(g.messages).startswith(tok.decode(g.ids))
        assert [i for i, m in enumerate(g.loss_mask) if m] == [i for a in g.actions for i in range(a.start, a.end)]


def test_hint_never_reaches_the_batch(tiny, env, groups):
    model, tok = tiny
    for t in groups:
        plain = tok(render_chat(env.reset(t.task).messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        assert t.ids[:t.prompt_len] == plain and env.hint(t.task) not in tok.decode(t.ids)
    mm, n = hint_mismatch(model, groups, pad_id=tok.pad_token_id)
    assert mm > 1e-3 and n == sum(t.n_sampled for t in groups if t.kind == "hint")


def test_hinted_behaviour_logps_come_from_the_hinted_context(tiny, env, groups):
    "First sampled token of a hinted row: its behaviour log-prob is log π(x | prompt with hint)."
    model, tok = tiny
    t = next(t for t in groups if t.kind == "hint")
    msgs = [dict(m) for m in env.reset(t.task).messages]
    msgs[0]["content"] += "\n\n" + env.hint(t.task)
    ids = tok(render_chat(msgs, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    with torch.no_grad(): lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    x = t.ids[t.prompt_len]
    assert abs(float(lp[x]) - t.behaviour_logps[t.prompt_len]) < 1e-4


def test_joint_loss_is_sum_and_gradients_add(tiny, env, groups):
    "One train_step with the joint SFT term moves the weights by exactly -(g_GRPO + λ g_SFT) under plain SGD."
    model, tok = tiny
    batch, cfg, lam = collate(groups, tok.pad_token_id), GRPOConfig(kl_coef=0.0, max_grad_norm=1e9), 0.7
    ex = gold_examples(tok, env, env.tasks("train")[:2], form="conversation")
    def grads():
        g = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()
        model.zero_grad(set_to_none=True); return g
    model.zero_grad(set_to_none=True)
    rl = grpo_backward(model, batch, cfg, micro_batch_size=4); gr = grads()
    ls, _ = sft_loss(model, collate_sft(ex, tok.pad_token_id)); ls.backward(); gs = grads()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    w0 = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0); sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    st = train_step(model, batch, opt, sched, cfg, micro_batch_size=4,
                    extra=joint_sft_term(ex, lam, micro_batch_size=4, pad_id=tok.pad_token_id))
    w1 = torch.cat([p.detach().flatten() for p in model.parameters()])
    model.load_state_dict(saved); model.eval()
    assert abs(st["loss"] - (rl["loss"] + lam * float(ls))) < 1e-5
    assert torch.allclose(w0 - w1, gr + lam * gs, atol=1e-6)


def _rows():
    R = lambda s, t, p, k="policy": dict(step=s, task_id=t, passed=p, reward=float(p), kind=k)
    return [R(4, "a", False), R(4, "a", False), R(5, "a", True), R(5, "a", False), R(5, "b", False), R(5, "b", True),
            R(5, "b", True, "gold"), R(6, "c", False), R(6, "c", True, "gold"), R(6, "d", True), R(6, "e", False, "hint"),
            R(6, "e", True)]

def test_ets_any_rule():
    assert select_failed_tasks(_rows(), "any") == ["a", "b", "c", "e"]
    assert select_failed_tasks(_rows(), "any", window=1) == ["c", "e"]

def test_ets_all_rule():
    assert select_failed_tasks(_rows(), "all") == ["a", "c"]          # a: step 4 group; c: its only policy rollout
    assert select_failed_tasks(_rows(), "all", window=2) == ["c"]      # steps (4, 6]
    assert select_failed_tasks(_rows(), "all", window=2, last_step=5) == ["a"]   # steps (3, 5]
    with pytest.raises(ValueError): select_failed_tasks(_rows(), "most")


def test_prs_reflection_calls_parse_strictly(tiny, env, groups):
    _, tok = tiny
    items = [t for t in groups if t.kind != "gold"] + [gold_trajectory(tok, env, t) for t in env.tasks("train")[::29]]
    n = 0
    for t in items:
        text = reflect(t.task, t, t.score, env)
        for blk in re.findall(r"<tool_call>.*?</tool_call>", text, re.S):
            pr = parse_calls(blk)
            assert pr.ok and not pr.errors and len(pr.calls) == 1; n += 1
        assert text.count("<tool_call>") == text.count("</tool_call>")
        scen = re.findall(r"^\d\. ", text.split("## Similar scenarios")[1].split("## Acceptance")[0], re.M)
        assert 3 <= len(scen) <= 5
        for sec in ("## Failing turn", "## Root cause", "## Evidence", "## Fix", "## Acceptance criteria"): assert sec in text
        for q in re.findall(r'^- action \d+ \([^)]*\): "(.*)"$', text, re.M):
            assert any(q in quote(a.text, 10**6) for a in t.actions)
    assert n >= 10
    ex = prs_examples(tok, items[:3], env)
    assert len(ex) == 3 and all(e.source == "prs" and e.n_targets > 0 for e in ex)
