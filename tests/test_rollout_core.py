"""Rollout engine tests. All use the TINY RANDOM model (`tiny_random`, a seeded 2-layer Llama with SmolLM2's
tokenizer) on the fast-lane environment; nothing here needs the real SmolLM2."""
import pytest, torch
import torch.nn.functional as F
from toolrl_nb.fastlane import FastLaneEnv
from toolrl_nb.format import render_chat
from toolrl_nb.models import tiny_random
from toolrl_nb.rollout import IM_END, RaggedKV, RolloutConfig, Trajectory, collate, rollout, sample_tokens

HEADER = "<|im_start|>assistant\n"

@pytest.fixture(scope="module")
def tiny(): return tiny_random(0)            # tiny random model (tests only)

@pytest.fixture(scope="module")
def env(): return FastLaneEnv(n_turns=(3, 3))

@pytest.fixture(scope="module")
def tasks(env): return env.tasks("train")[:2]

@pytest.fixture(scope="module")
def trajs(tiny, env, tasks):
    model, tok = tiny
    return rollout(model, tok, env, tasks, RolloutConfig(group_size=3, max_action_tokens=10, seed=0))


class Forced(torch.nn.Module):
    "Batch of 1: wraps a causal LM and forces it to write `actions` (token lists) after successive assistant headers."
    def __init__(self, model, tok, actions):
        super().__init__()
        self.inner, self.config, self.actions, self.hist, self.starts = model, model.config, actions, [], []
        self.header = tok(HEADER, add_special_tokens=False)["input_ids"]
    def _push(self, t):
        self.hist.append(t)
        if self.hist[-len(self.header):] == self.header: self.starts.append(len(self.hist))   # a new action begins
    def _next(self):
        if not self.starts or len(self.starts) > len(self.actions): return None
        done, act = len(self.hist) - self.starts[-1], self.actions[len(self.starts) - 1]
        return act[done] if done < len(act) else None
    def forward(self, input_ids, attention_mask, logits_to_keep=0, **kw):
        assert input_ids.shape[0] == 1
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, **kw)
        W = input_ids.shape[1]
        for j in range(W):
            if attention_mask[0, -W + j]: self._push(int(input_ids[0, j]))
            if (nxt := self._next()) is not None: out.logits[0, j, nxt] += 50.0
        if isinstance(logits_to_keep, int): logits_to_keep = slice(-logits_to_keep if logits_to_keep else None, None)
        out.logits = out.logits[:, logits_to_keep]
        return out


def clean_logps(model, ids, temperature=1.0):
    with torch.no_grad(): lg = model(input_ids=torch.tensor([ids])).logits[0, :-1].float() / temperature
    return F.pad(torch.log_softmax(lg, -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0], (1, 0))


def test_ragged_cache_equals_clean_forward(tiny):
    "Logits from ragged, right-padded chunks in one cache (pads in the middle) == clean single-sequence forwards."
    model, _ = tiny
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        seqs = {r: torch.randint(3, 5000, (int(torch.randint(10, 50, (1,), generator=g)),), generator=g).tolist()
                for r in range(5)}
        kv, got, pos = RaggedKV(model, list(seqs), 2), {r: [] for r in seqs}, {r: 0 for r in seqs}
        while any(pos[r] < len(s) for r, s in seqs.items()):
            chunks = {r: s[pos[r]:pos[r] + int(torch.randint(0 if pos[r] else 1, 7, (1,), generator=g))] for r, s in seqs.items()}
            if not any(chunks.values()): continue
            lg = kv.feed(chunks, all_logits=True)
            last = kv.n_real.clone()
            for i, r in enumerate(kv.rows): got[r].append(lg[i, :len(chunks[r])]); pos[r] += len(chunks[r])
        with torch.no_grad():
            for r, s in seqs.items():
                clean = model(input_ids=torch.tensor([s])).logits[0]
                assert (torch.cat(got[r]) - clean).abs().max().item() < 1e-4
        assert (kv.mask == 0).any()                          # there really were pads in the middle


def test_ragged_cache_select_and_last_logits(tiny):
    "feed() returns each row's logits after its last real token; select() drops rows without disturbing the rest."
    model, _ = tiny
    a, b, c = list(range(5, 25)), list(range(100, 107)), list(range(300, 331))
    kv = RaggedKV(model, [0, 1, 2], 2)
    out = kv.feed({0: a[:10], 1: b, 2: c[:3]})
    kv.select([0, 2])
    out2 = kv.feed({0: a[10:], 2: c[3:]})
    with torch.no_grad():
        ref = {k: model(input_ids=torch.tensor([s])).logits[0, -1] for k, s in [("b", b), ("a", a), ("c", c)]}
    assert (out[1] - ref["b"]).abs().max() < 1e-4
    assert (out2[0] - ref["a"]).abs().max() < 1e-4 and (out2[1] - ref["c"]).abs().max() < 1e-4


def test_groups_and_three_turns(trajs, tasks):
    test_G = 3
    assert len(trajs) == len(tasks) * test_G
    assert [(t.group, t.rollout) for t in trajs] == [(g, k) for g in range(len(tasks)) for k in range(test_G)]
    for t in trajs:
        assert t.task is tasks[t.group] and t.kind == "policy"
        assert len(t.actions) >= 3 and t.end == "end"            # random replies close one turn each: 3 turns
        assert [a.turn for a in t.actions] == [0, 1, 2]


def test_token_in_token_out_invariants(trajs, tiny):
    _, tok = tiny
    im_end = tok.convert_tokens_to_ids(IM_END)
    for t in trajs:
        assert len(t.ids) == len(t.loss_mask) == len(t.behaviour_logps)
        assert sum(t.loss_mask[:t.prompt_len]) == 0                             # prompt masked
        assert tok.decode(t.ids[:t.prompt_len]) == render_chat(t.messages[:2], add_generation_prompt=True)
        assert sum(t.loss_mask) == sum(a.n_tokens for a in t.actions)          # loss exactly on sampled tokens
        spans = set()
        for a in t.actions:
            assert a.end - a.start == a.n_tokens and t.loss_mask[a.start:a.end] == [1] * a.n_tokens
            spans |= set(range(a.start, a.end))
            body = t.ids[a.start:a.end] if a.truncated else t.ids[a.start:a.end - 1]
            assert tok.decode(body) == a.text
            if a.truncated: assert t.ids[a.end] == im_end and t.loss_mask[a.end] == 0   # appended, not sampled
            else: assert t.ids[a.end - 1] == im_end
        off = [i for i in range(len(t.ids)) if i not in spans]
        assert all(t.loss_mask[i] == 0 and t.behaviour_logps[i] == 0.0 for i in off)  # observations masked
        for a, nxt in zip(t.actions, t.actions[1:]):                           # between actions: env tokens
            gap = tok.decode(t.ids[a.end:nxt.start])
            assert gap.endswith(HEADER) and "<|im_start|>user\n" in gap


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_behaviour_logps_match_clean_forward(tiny, env, tasks, temperature):
    model, tok = tiny
    trajs = rollout(model, tok, env, tasks[:1], RolloutConfig(group_size=2, max_action_tokens=8, seed=1,
                                                              temperature=temperature))
    for t in trajs:
        m = torch.tensor(t.loss_mask).bool()
        diff = (clean_logps(model, t.ids, temperature)[m] - torch.tensor(t.behaviour_logps)[m]).abs().max().item()
        assert diff < 1e-4, diff


def test_top_p_logps_are_of_the_truncated_distribution(tiny, env, tasks):
    model, tok = tiny
    t = rollout(model, tok, env, tasks[:1], RolloutConfig(group_size=1, max_action_tokens=8, seed=0, top_p=0.5))[0]
    m = torch.tensor(t.loss_mask).bool()
    gap = torch.tensor(t.behaviour_logps)[m] - clean_logps(model, t.ids)[m]      # = -log(nucleus mass) >= 0
    assert (gap > -1e-5).all() and (gap > 1e-3).any()


def test_seed_reproducible_and_cache_modes_agree(tiny, env, tasks):
    model, tok = tiny
    run = lambda **kw: rollout(model, tok, env, tasks, RolloutConfig(group_size=2, max_action_tokens=8, **kw))
    a, b, c, d = run(seed=5), run(seed=5), run(seed=6), run(seed=5, reuse_cache=False)
    assert [t.ids for t in a] == [t.ids for t in b]
    assert [t.ids for t in a] != [t.ids for t in c]
    assert [t.ids for t in a] == [t.ids for t in d]                           # re-encoding baseline: same samples
    for x, y in zip(a, d): assert max(abs(p - q) for p, q in zip(x.behaviour_logps, y.behaviour_logps)) < 1e-4


def test_greedy_rows_identical(tiny, env, tasks):
    model, tok = tiny
    ts = rollout(model, tok, env, tasks[:1], RolloutConfig(group_size=3, max_action_tokens=6, greedy=True))
    assert ts[0].ids == ts[1].ids == ts[2].ids


def test_no_decode_reencode_drift(tiny, env, tasks):
    "The model is forced to write 'to' + 'ol' + <|im_end|>: text 'tool' re-tokenises to one id; we keep the two."
    model, tok = tiny
    to, ol, im_end = tok.convert_tokens_to_ids(["to", "ol", IM_END])
    forced = Forced(model, tok, [[to, ol, im_end]] * 3)
    t = rollout(forced, tok, env, tasks[:1], RolloutConfig(group_size=1, seed=0))[0]
    assert [a.text for a in t.actions] == ["tool"] * 3
    retok = tok("tool" + IM_END, add_special_tokens=False)["input_ids"]
    assert retok != [to, ol, im_end]                                             # the drift the reference code has
    for a in t.actions: assert t.ids[a.start:a.end] == [to, ol, im_end] and not a.truncated


def test_forced_gold_actions_score_and_record(tiny, env, tasks):
    "Gold fast-lane actions forced token by token: tool calls run, records are filled, the task passes."
    model, tok = tiny
    task = tasks[0]
    gold = env.gold_actions(task)
    acts = [tok(g, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids(IM_END)] for g in gold]
    t = rollout(Forced(model, tok, acts), tok, env, [task], RolloutConfig(group_size=1, seed=0))[0]
    assert t.score.passed and t.reward == 1.0 and t.end == "end"
    assert [a.text for a in t.actions] == gold
    assert [t.ids[a.start:a.end] for a in t.actions] == acts
    calls = [a for a in t.actions if a.n_calls]
    assert calls and all(a.state == "healthy_tool_call" and a.n_errors == 0 and a.parse_errors == [] for a in calls)
    assert {a.state for a in t.actions if not a.n_calls} == {"healthy_response"}
    assert [a.turn for a in t.actions] == [0, 0, 1, 1, 2, 2][:len(gold)]
    # with canonically tokenised actions, our ids equal the tokenised rendering of the final chat
    assert t.ids == tok(render_chat(t.messages), add_special_tokens=False)["input_ids"][:-1]   # minus the last "\n"


def test_limits(tiny, env, tasks):
    model, tok = tiny
    to, ol, im_end = tok.convert_tokens_to_ids(["to", "ol", IM_END])
    forced = lambda: Forced(model, tok, [[to, ol, im_end]] * 3)
    t = rollout(forced(), tok, env, tasks[:1], RolloutConfig(group_size=1, max_action_tokens=2, max_obs_tokens=6, seed=0))[0]
    a, b = t.actions[:2]
    assert a.truncated and a.n_tokens == 2 and t.ids[a.start:a.end + 1] == [to, ol, im_end] and t.loss_mask[a.end] == 0
    assert b.start - (a.end + 1) == 6 and tok.decode(t.ids[b.start - 4:b.start]) == HEADER
    t = rollout(forced(), tok, env, tasks[:1], RolloutConfig(group_size=1, max_total_tokens=t.prompt_len + 20, seed=0))[0]
    assert t.end == "max_total_tokens" and len(t.ids) <= t.prompt_len + 20 and not t.score.passed


def test_collate(trajs, tiny):
    _, tok = tiny
    batch = collate(trajs, tok.pad_token_id)
    B, T = len(trajs), max(len(t.ids) for t in trajs)
    for k in ("input_ids", "attention_mask", "loss_mask", "behaviour_logps"): assert batch[k].shape == (B, T)
    assert batch["rewards"].shape == batch["group"].shape == (B,)
    assert batch["attention_mask"].sum(1).tolist() == [len(t.ids) for t in trajs]
    for i, t in enumerate(trajs):
        n = len(t.ids)
        assert batch["input_ids"][i, :n].tolist() == t.ids and batch["loss_mask"][i, :n].tolist() == t.loss_mask
        assert batch["loss_mask"][i, n:].sum() == 0 and batch["attention_mask"][i, n:].sum() == 0
    assert (batch["loss_mask"] <= batch["attention_mask"]).all()
    assert batch["group"].tolist() == [t.group for t in trajs]
    # real <|im_end|> tokens (== pad id) keep attention 1: masks are never derived from ids
    im_end = tok.convert_tokens_to_ids(IM_END)
    real = ((batch["input_ids"] == im_end) & (batch["attention_mask"] == 1)).sum().item()
    assert real == sum(t.ids.count(im_end) for t in trajs) > 0


def test_grpo_consumes_batch(trajs, tiny):
    "The batch feeds grpo's token_logps; on-policy ratios are 1 on loss tokens."
    from toolrl_nb.grpo import token_logps
    model, tok = tiny
    batch = collate(trajs, tok.pad_token_id)
    with torch.no_grad(): lp, _ = token_logps(model, batch["input_ids"], batch["attention_mask"], 1.0)
    m = batch["loss_mask"].bool()
    assert (lp[m] - batch["behaviour_logps"][m]).abs().max() < 1e-4


def test_sample_tokens_top_p():
    lg = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(3000, 4)
    tok, lp = sample_tokens(lg, 1.0, 0.7, generator=torch.Generator().manual_seed(0))
    assert set(tok.tolist()) == {0, 1}
    assert torch.allclose(lp.exp(), torch.softmax(lg[0, :2], -1)[tok])


def test_stop_after_failed_turn_keeps_the_verdict(tiny, env, tasks):
    "Turn 1 answered without its calls: the cut episode ends there, with the full episode's verdict, failing turn and error."
    model, tok = tiny
    task, im_end = tasks[0], tok.convert_tokens_to_ids(IM_END)
    gold = env.gold_actions(task)
    assert len(gold) == 6                                                    # a call and a reply per turn, 3 turns
    enc = lambda texts: [tok(g, add_special_tokens=False)["input_ids"] + [im_end] for g in texts]
    broken = enc(gold[:2] + ["No."] + gold[4:])
    full, cut = (rollout(Forced(model, tok, broken), tok, env, [task], RolloutConfig(group_size=1, seed=0, stop_after_failed_turn=s))[0]
                 for s in (False, True))
    assert (full.end, cut.end) == ("end", "failed_turn") and not full.score.passed and not cut.score.passed
    assert (cut.score.first_failed_turn, cut.score.error_type) == (full.score.first_failed_turn, full.score.error_type) == (1, "empty_turn")
    assert len(full.actions) == 5 and [a.text for a in cut.actions] == [a.text for a in full.actions[:3]]
    ok = rollout(Forced(model, tok, enc(gold)), tok, env, [task], RolloutConfig(group_size=1, seed=0, stop_after_failed_turn=True))[0]
    assert ok.score.passed and ok.end == "end" and len(ok.actions) == 6    # a passing task is played to the end
