"""toolrl_nb.sft data: gold replay, loss masks (vs TRL's generation masks), the pad == eos trap, truncation, pairs.

Uses SmolLM2's tokenizer (the tiny random model's tokenizer) only; no model weights."""
import json, warnings
from dataclasses import dataclass, field

import pytest

from toolrl_nb.envs import Observation, Score, Task
from toolrl_nb.models import load_tokenizer
from toolrl_nb.sft import (SFTExample, action_pairs, collate_sft, conversation_example, gold_conversations,
                           gold_examples, render_spans, text_pair_example)

CALL = '<tool_call>\n{{"name": "{}", "arguments": {{}}}}\n</tool_call>'

# --- a small environment implementing the Env protocol (two turns; the gold solution calls one tool per turn) ---
@dataclass
class ToyEpisode:
    task: Task
    messages: list = field(default_factory=list)
    done: bool = False
    actions: list = field(default_factory=list)
    turn: int = 0
    def step(self, action):
        self.actions.append(action); self.messages.append({"role": "assistant", "content": action})
        if "<tool_call>" in action:
            name = json.loads(action.split("<tool_call>")[1].split("</tool_call>")[0])["name"]
            obs = [{"role": "tool", "content": json.dumps({"result": f"TOOLRESULT_{name}"})}]
            self.messages += obs; return Observation(obs, False, "tool", n_calls=1)
        self.turn += 1
        if self.turn == len(self.task.questions): self.done = True; return Observation([], True, "end")
        obs = list(self.task.questions[self.turn]); self.messages += obs
        return Observation(obs, False, "next_turn")
    def score(self):
        ok = self.actions == ToyEnv().gold_actions(self.task) and not self.task.meta.get("broken")
        return Score(float(ok), ok, [ok] * len(self.task.questions))

class ToyEnv:
    name = "toy"
    def tasks(self, split="train"):
        return [Task(f"toy_{i}", "toy", [[{"role": "user", "content": f"USERQ_{i}_{t}"}] for t in range(2)],
                     [[f"f{i}_{t}()"] for t in range(2)], meta={"broken": i == 2}) for i in range(4)]
    def reset(self, task, fmt="json"):
        return ToyEpisode(task, [{"role": "system", "content": "SYSTEMTEXT"}] + list(task.questions[0]))
    def gold_actions(self, task, fmt="json"):
        i = task.id.split("_")[1]
        if task.meta.get("broken"): return [CALL.format(f"f{i}_0")]   # stops early: its replay does not pass
        return [a for t in range(2) for a in (CALL.format(f"f{i}_{t}"), f"ANSWER_{i}_{t}")]

@pytest.fixture(scope="module")
def tok(): return load_tokenizer("tiny-random")

@pytest.fixture(scope="module")
def convs():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = gold_conversations(ToyEnv(), ToyEnv().tasks())
    assert len(w) == 1 and "1 of 4" in str(w[0].message)
    return out

def masked_text(tok, ex): return tok.decode([t for t, m in zip(ex.input_ids, ex.loss_mask) if m])
def runs(ex):
    "The masked token runs as (start, end) index pairs."
    out, start = [], None
    for i, m in enumerate(ex.loss_mask + [0]):
        if m and start is None: start = i
        if not m and start is not None: out.append((start, i)); start = None
    return out

def test_gold_conversations_skip_failing(convs):
    assert len(convs) == 3
    assert all(sum(m["role"] == "assistant" for m in c) == 4 for c in convs)
    with pytest.raises(AssertionError, match="did not pass"): gold_conversations(ToyEnv(), ToyEnv().tasks(), strict=True)

def test_mask_covers_exactly_actions_and_im_end(tok, convs):
    for c in convs:
        ex = conversation_example(tok, c)
        actions = [m["content"] for m in c if m["role"] == "assistant"]
        spans = runs(ex)
        assert len(spans) == len(actions)
        for (a, b), act in zip(spans, actions):
            assert tok.decode(ex.input_ids[a:b]) == act + "<|im_end|>"
        text = masked_text(tok, ex)
        for bad in ("SYSTEMTEXT", "USERQ", "TOOLRESULT", "<|im_start|>", "assistant\n", "tool_response"):
            assert bad not in text

def test_generation_mask_equals_trl(tok, convs):
    for c in convs:
        ref = tok.apply_chat_template(c, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        gen = conversation_example(tok, c, mask="generation")
        assert gen.input_ids == list(ref["input_ids"]) and gen.loss_mask == list(ref["assistant_masks"])
        act = conversation_example(tok, c)
        assert act.input_ids == gen.input_ids
        extra = [i for i, (a, g) in enumerate(zip(act.loss_mask, gen.loss_mask)) if g != a]
        assert all(gen.loss_mask[i] == 1 and act.loss_mask[i] == 0 for i in extra)
        assert [tok.decode([act.input_ids[i]]) for i in extra] == ["\n"] * (2 * len(runs(act)))

def test_fastlane_masks_equal_trl(tok):
    fastlane = pytest.importorskip("toolrl_nb.fastlane")
    env = fastlane.FastLaneEnv()
    for c in gold_conversations(env, env.tasks("train")[:6]):
        ref = tok.apply_chat_template(c, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        gen = conversation_example(tok, c, mask="generation")
        assert gen.input_ids == list(ref["input_ids"]) and gen.loss_mask == list(ref["assistant_masks"])
        ex = conversation_example(tok, c)
        assert [tok.decode(ex.input_ids[a:b]) for a, b in runs(ex)] == \
               [m["content"] + "<|im_end|>" for m in c if m["role"] == "assistant"]

def test_pad_eq_eos_trap(tok, convs):
    "Each action's closing <|im_end|> (id 2 == pad) is a target; a mask from ids != pad would fail this test."
    assert tok.pad_token_id == tok.eos_token_id == 2
    ex = conversation_example(tok, convs[0])
    ends = [b - 1 for a, b in runs(ex)]
    assert all(ex.input_ids[i] == tok.pad_token_id and ex.loss_mask[i] == 1 for i in ends)
    naive = [int(t != tok.pad_token_id) * m for t, m in zip(ex.input_ids, ex.loss_mask)]
    assert naive != ex.loss_mask
    # ... and it survives padding: collate keeps the explicit mask
    short = action_pairs(tok, convs[0])[0]
    b = collate_sft([short, ex], pad_id=tok.pad_token_id)
    assert b["loss_mask"][0].tolist() == short.loss_mask + [0] * (len(ex.input_ids) - len(short.input_ids))
    assert b["loss_mask"][0, len(short.input_ids) - 1] == 1 and b["input_ids"][0, len(short.input_ids) - 1] == 2
    assert b["attention_mask"][0].tolist() == [1] * len(short.input_ids) + [0] * (len(ex.input_ids) - len(short.input_ids))
    assert b["attention_mask"][1].sum() == len(ex.input_ids)   # all real, though many ids equal pad

def test_left_truncation_keeps_end(tok, convs):
    full = conversation_example(tok, convs[0])
    for n in (5, 40, len(full.input_ids) - 1):
        ex = conversation_example(tok, convs[0], max_len=n)
        assert ex.input_ids == full.input_ids[-n:] and ex.loss_mask == full.loss_mask[-n:]
        assert ex.truncated == len(full.input_ids) - n
    p = action_pairs(tok, convs[0], max_len=20)
    assert all(len(e.input_ids) == 20 and e.input_ids[-1] == 2 and e.loss_mask[-1] == 1 for e in p)

def test_action_pairs(tok, convs):
    for c in convs:
        ps = action_pairs(tok, c, source="ets", task_id="x")
        assistants = [i for i, m in enumerate(c) if m["role"] == "assistant"]
        assert len(ps) == len(assistants)
        full = conversation_example(tok, c)
        for p, i in zip(ps, assistants):
            prompt = tok.apply_chat_template(c[:i], tokenize=False, add_generation_prompt=True)
            n = sum(1 for m in p.loss_mask if m == 0)
            assert tok.decode(p.input_ids[:n]) == prompt
            assert masked_text(tok, p) == c[i]["content"] + "<|im_end|>"
            assert p.loss_mask == [0] * n + [1] * (len(p.input_ids) - n)
            assert p.input_ids == full.input_ids[:len(p.input_ids)]   # same tokens as the whole conversation here
            assert (p.source, p.task_id) == ("ets", "x")

def test_text_pair_and_gold_examples(tok):
    tp = text_pair_example(tok, "PROMPT", "REFLECTION")
    assert masked_text(tok, tp) == "REFLECTION<|im_end|>" and tp.source == "prs"
    assert "You are a helpful assistant." in tok.decode(tp.input_ids) and "Qwen" not in tok.decode(tp.input_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = gold_examples(tok, ToyEnv(), ToyEnv().tasks(), form="pairs", source="ets")
        whole = gold_examples(tok, ToyEnv(), ToyEnv().tasks(), form="conversation")
    assert len(pairs) == 12 and {p.task_id for p in pairs} == {"toy_0", "toy_1", "toy_3"}
    assert len(whole) == 3 and all(e.source == "gold" for e in whole)

def test_bad_inputs(tok):
    with pytest.raises(ValueError): SFTExample([1, 2], [1])
    with pytest.raises(ValueError): render_spans(tok, [{"role": "user", "content": "x"}], mask="all")
