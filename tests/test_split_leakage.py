"""Held-out tasks are really held out: the fast lane shares no user question (and so no (state, question) pair) with its
training tasks; BFCL's question overlap (the paper's index split) is measured and printed."""
import json
import pytest
from toolrl_nb.bfcl import question_overlap, split_tasks, user_questions
from toolrl_nb.fastlane import FastLaneEnv

PRESET = dict(seed=0, n_tasks=100, n_turns=(1, 2), calls_per_turn=(1, 1), n_distractors=1)   # configs/cpu/*.yaml

@pytest.mark.parametrize("opts", [PRESET, dict(n_tasks=100), dict(seed=3, n_tasks=60, n_turns=(2, 4), calls_per_turn=(1, 3))])
def test_fastlane_zero_overlap(opts):
    env = FastLaneEnv(**opts)
    train = env.tasks("train")
    for held in ("test", "content_ood"):
        ov = question_overlap(train, env.tasks(held))
        print(f"fast lane {opts}: {held} {ov['n_shared']} of {ov['n_tasks']} share a question with train")
        assert ov["n_tasks"] > 0 and ov["n_shared"] == 0, ov["shared"][:5]
    # no (initial state, question) pair repeats across splits
    pair = lambda t: (json.dumps(t.meta["config"], sort_keys=True), json.dumps(t.questions))
    splits = {s: {pair(t) for t in env.tasks(s)} for s in ("train", "test", "content_ood")}
    assert not splits["train"] & splits["test"] and not splits["train"] & splits["content_ood"]
    assert not splits["test"] & splits["content_ood"]

def test_overlap_counts_a_shared_question():
    env = FastLaneEnv(**PRESET)
    train = env.tasks("train")
    ov = question_overlap(train, train[:5])          # a task shares its questions with itself
    assert ov["n_shared"] == 5 and ov["unseen"] == []

def test_bfcl_overlap_reported():
    cats = ["base", "miss_func", "miss_param"]       # configs/cpu_grpo_bfcl_compact.yaml: train vs its eval split (val)
    train = split_tasks("train", cats)
    for held in ("val", "test"):
        ov = question_overlap(train, split_tasks(held, cats))
        print(f"BFCL {held}: {ov['n_shared']} of {ov['n_tasks']} tasks share a user question verbatim with a training task")
        assert ov["n_shared"] + len(ov["unseen"]) == ov["n_tasks"] == 300
        assert all(user_questions(t) for t in split_tasks(held, cats)[:20])
