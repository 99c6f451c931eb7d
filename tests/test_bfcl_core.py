"Split, loading and scorer basics of toolrl_nb.bfcl."
import json, random
from pathlib import Path
from toolrl_nb.bfcl import (paper_split_indices, split_tasks, load_tasks, parse_call_string, check_trajectory, gold_calls,
                            hint, ood_split, BfclEnv, SPLIT_FILE, HELD_OUT_CLASSES)
from toolrl_nb.envs import Env, Episode

ROOT = Path(__file__).resolve().parents[1]

def test_split_matches_paper_and_file():
    train, test = paper_split_indices()
    assert train[:5] == [66, 187, 101, 193, 111]
    state = random.getstate(); random.seed(42); idx = list(range(200)); random.shuffle(idx); random.setstate(state)
    assert idx == train + test
    saved = json.loads((ROOT / SPLIT_FILE).read_text())
    assert (saved["train"], saved["test"]) == (train, test)
    assert [len(split_tasks(s)) for s in ("train", "test", "val")] == [300, 400, 300]

def test_protocols():
    env = BfclEnv(); assert isinstance(env, Env)
    assert isinstance(env.reset(env.tasks()[0]), Episode)

def test_ast_only():
    import pytest
    for bad in ["__import__('os').system('x')", "f(a=open('x'))", "a.b()", "f(x)"]:
        with pytest.raises(ValueError): parse_call_string(bad)

def test_scorer_rules():
    t = load_tasks("base")[3]; gold = [[c] if c else [] for c in gold_calls(t)]
    assert check_trajectory(t, gold).passed
    assert check_trajectory(t, gold + [[]]).error_type == "turn_count"
    s = check_trajectory(t, [[]] * len(gold))
    assert (s.passed, s.error_type, s.first_failed_turn) == (False, "empty_turn", 0)
    assert check_trajectory(t, [[]] * len(gold), reward="partial").reward == 0.0

def test_hints_and_ood():
    assert max(len(hint(t).split()) for t in split_tasks("all")) <= 300
    co = ood_split("content")
    assert co["train"] and co["test"]
    assert all(not set(t.meta["involved_classes"]) & set(HELD_OUT_CLASSES) for t in co["train"])
