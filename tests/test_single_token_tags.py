"""Single-token tool tags (issue 16 item 1): the collapse preset's tokenizer, and a save -> resume -> init_from round trip.

The round trip uses the tiny random model (random weights, SmolLM2's tokenizer: only ids and rows matter here); one
check loads the real SmolLM2 of the collapse preset (a few seconds once the model is cached)."""
import json, shutil
from pathlib import Path

import pytest, torch

from toolrl_nb.config import ConfigError, from_dict, load_config, to_dict
from toolrl_nb.models import TAGS_FILE, ModelConfig, load_policy
from toolrl_nb.trainer import TrainConfig, Trainer, checkpoints

ROOT = Path(__file__).resolve().parents[1]
TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")


def _ids(tok, s): return tok.encode(s, add_special_tokens=False)


def test_collapse_preset_tags_are_single_tokens():
    "The real SmolLM2 the collapse preset loads: each tag is one id, its row its first piece's row (`<` or `</`)."
    cfg = load_config(TrainConfig, ROOT / "configs/cpu/collapse.yaml")
    assert cfg.model.single_token_tags
    model, tok = load_policy(cfg.model)
    for t in TAGS: assert len(_ids(tok, t)) == 1, t
    assert _ids(tok, "<tool_call>") != _ids(tok, "</tool_call>")
    E = model.get_input_embeddings().weight
    for tag, first in (("<tool_call>", "<"), ("</tool_call>", "</")):
        assert torch.equal(E[_ids(tok, tag)[0]], E[tok.encode(first, add_special_tokens=False)[0]]), tag
    assert model.get_output_embeddings().weight.data_ptr() == E.data_ptr()   # tied head: the same row


def _cfg(run_dir, **kw):
    d = dict(run_dir=str(run_dir), steps=1, tasks_per_step=2, checkpoint_every=1, model=dict(name="tiny-random"),
             env=dict(name="fastlane", options=dict(seed=0, n_tasks=20, n_turns=[1, 1], calls_per_turn=[1, 1])),
             rollout=dict(group_size=2, max_action_tokens=6, max_total_tokens=1200), grpo=dict(lr=1e-3),
             eval=dict(n_tasks=1, at_start=False, max_action_tokens=4), diagnostics=dict(bank_contexts=0))
    for k, v in kw.items(): d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return from_dict(TrainConfig, d)


def test_save_resume_init_from_round_trip(tmp_path):
    with Trainer(_cfg(tmp_path / "a"), progress=False) as tr:
        tr.run()
        ids = {t: _ids(tr.tok, t) for t in TAGS}
        row = tr.policy.get_input_embeddings().weight[ids["<tool_call>"][0]].detach().clone()
    ckpt = checkpoints(tmp_path / "a")[-1]
    saved = json.loads((ckpt / TAGS_FILE).read_text())
    assert saved["single_token"] and saved["ids"]["tool_call"] == ids["<tool_call>"]
    with Trainer.resume(tmp_path / "a", progress=False) as tr:                       # resume: same ids, same trained row
        assert {t: _ids(tr.tok, t) for t in TAGS} == ids
        assert torch.equal(tr.policy.get_input_embeddings().weight[ids["<tool_call>"][0]], row)
    with Trainer(_cfg(tmp_path / "b", init_from=str(ckpt)), progress=False) as tr:  # init_from: the same
        assert {t: _ids(tr.tok, t) for t in TAGS} == ids
        assert torch.equal(tr.policy.get_input_embeddings().weight[ids["<tool_call>"][0]], row)
        assert all(len(v) == 1 for v in ids.values())
    with pytest.raises(ConfigError, match="set model.single_token_tags: true"):      # the other form: the field to set
        Trainer(_cfg(tmp_path / "c", init_from=str(ckpt), model=dict(single_token_tags=False)), progress=False)


def test_old_checkpoint_is_five_piece(tmp_path):
    "A checkpoint without tool_tags.json predates the switch: it loads with single_token_tags false, else a clear error."
    with Trainer(_cfg(tmp_path / "old", model=dict(single_token_tags=False)), progress=False) as tr: tr.run()
    ckpt = checkpoints(tmp_path / "old")[-1]
    (ckpt / TAGS_FILE).unlink()                                                       # as written before the switch
    with pytest.raises(ConfigError, match="predates single-token tool tags.*single_token_tags: false"):
        Trainer(_cfg(tmp_path / "new", init_from=str(ckpt)), progress=False)
    with Trainer(_cfg(tmp_path / "new5", init_from=str(ckpt), model=dict(single_token_tags=False)), progress=False) as tr:
        assert len(_ids(tr.tok, "<tool_call>")) == 5


def test_parser_classifier_probes_sft_in_both_forms():
    "The same action text parses, classifies and is probed alike with five-piece and single-token tags (tiny-random)."
    from toolrl_nb.diagnostics import ProbeVocab, hand_sequence, probe_positions
    from toolrl_nb.fastlane import FastLaneEnv
    from toolrl_nb.format import State, classify_action, parse_calls
    from toolrl_nb.sft import conversation_example, gold_conversations
    env = FastLaneEnv(seed=0, n_tasks=10, n_turns=(1, 1), calls_per_turn=(1, 1))
    conv = gold_conversations(env, env.tasks("train")[:1])[0]
    action = '<tool_call>\n{"name": "ls", "arguments": {}}\n</tool_call><|im_end|>'
    for single in (False, True):
        _, tok = load_policy(ModelConfig(name="tiny-random", single_token_tags=single))
        ids, mask = hand_sequence(tok, [("<|im_start|>assistant\n", 0), (action, 1)])
        text = tok.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)
        assert text == action and parse_calls(text).ok and classify_action(text) == State.HEALTHY_CALL
        v = ProbeVocab(tok)
        assert len(v.tool_call) == (1 if single else 5)
        rp = probe_positions(ids, mask, v)
        assert len(rp.tag_sequence) == 1 and len(rp.after_tool_call) == 1    # found the tag, read after "<tool_call>\n"
        assert ids[rp.after_tool_call[0][1]] == v.json_open
        ex = conversation_example(tok, conv)
        target = tok.decode([i for i, m in zip(ex.input_ids, ex.loss_mask) if m], skip_special_tokens=False)
        assert "<tool_call>" in target and "</tool_call>" in target          # the gold SFT targets keep the tags
        assert (v.tool_call[0] in ex.input_ids) and (single == (len(tok) > 49152))
