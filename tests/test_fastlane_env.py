"Fast lane: gold replay, wrong actions fail the right turn, isolation, determinism, splits, hints, limits."
import time
import pytest
from toolrl_nb.envs import EnvLimits, Env, Episode, replay
from toolrl_nb.format import ToolCall, FORMATS
from toolrl_nb.fastlane import (FastLaneEnv, KINDS, CLARIFY, TRAIN_CLASSES, HELD_OUT_CLASSES, make_task,
                                parse_call_string, get_format)

ENV = FastLaneEnv(n_tasks=60)

def _turn_actions(env, task, fmt="json"):
    acts, out = env.gold_actions(task, fmt), []
    for g in task.ground_truth:
        n = 2 if g else 1; out.append(acts[:n]); acts = acts[n:]
    return out

def test_protocol():
    assert isinstance(ENV, Env) and isinstance(ENV.reset(ENV.tasks()[0]), Episode)

@pytest.mark.parametrize("fmt", ["json", "python"])
def test_gold_scores_one(fmt):
    t0, n = time.time(), 0
    for split in ("train", "test", "content_ood"):
        for task in ENV.tasks(split):
            ep, sc = replay(ENV, task, ENV.gold_actions(task, fmt), fmt); n += 1
            assert (sc.reward, sc.passed, ep.done) == (1.0, True, True), (task.id, split, sc)
            assert sc.turn_passed == [True if g else None for g in task.ground_truth]
    assert n >= 700
    print(f"{n} gold replays ({fmt}) in {time.time() - t0:.2f}s")

def test_partial_gold_and_knobs():
    env = FastLaneEnv(n_tasks=10, reward="partial", n_turns=(2, 4), calls_per_turn=(2, 3), n_distractors=4)
    for task in env.tasks("train"):
        assert replay(env, task, env.gold_actions(task))[1].reward == 1.0

def _bad_value(call):
    n, a = parse_call_string(call)
    return n, ({k: (v + 1 if isinstance(v, int) else v + "x") for k, v in a.items()} if a else {"bogus": 1})

@pytest.mark.parametrize("fmt", ["json", "python"])
def test_wrong_actions_fail_the_right_turn(fmt):
    f, checked = get_format(fmt), 0
    for task in ENV.tasks("train")[::3]:
        scored = [t for t, g in enumerate(task.ground_truth) if g]
        for t in scored:
            per = _turn_actions(ENV, task, fmt)
            # 1) a reply instead of the calls: empty turn
            per_empty = per[:t] + [["No."]] + per[t + 1:]
            sc = replay(ENV, task, [a for x in per_empty for a in x], fmt)[1]
            assert (sc.passed, sc.first_failed_turn, sc.error_type) == (False, t, "empty_turn"), (task.id, t, sc)
            # 2) a wrong value in the turn's last call: state or response check (unless the call takes no argument
            #    or was made in an earlier turn: its gold result is then already among the results, as in BFCL)
            last = task.ground_truth[t][-1]
            if last.endswith("()") or any(last in g for g in task.ground_truth[:t]): continue
            calls = [parse_call_string(c) for c in task.ground_truth[t]]
            per_bad = per[:t] + [[f.render_calls([ToolCall(*c) for c in calls[:-1]] + [ToolCall(*_bad_value(task.ground_truth[t][-1]))]), "Ok."]] + per[t + 1:]
            sc = replay(ENV, task, [a for x in per_bad for a in x], fmt)[1]
            assert not sc.passed and sc.first_failed_turn == t, (task.id, t, sc)
            assert sc.error_type in ("state_mismatch", "response_mismatch")
            assert sc.turn_passed[:t] == [True if g else None for g in task.ground_truth[:t]]
            checked += 2
        # 3) stopping early: turn count
        per = _turn_actions(ENV, task, fmt)
        sc = replay(ENV, task, [a for x in per[:-1] for a in x], fmt)[1]
        assert (sc.passed, sc.error_type, sc.first_failed_turn) == (False, "turn_count", task.n_turns - 1)
    assert checked > 100

def test_isolation_interleaved():
    for task in ENV.tasks("test")[::7]:
        acts = ENV.gold_actions(task)
        a, b = ENV.reset(task), ENV.reset(task)
        for x in acts:
            a.step(x); b.step(x); b.step(x) if not b.done else None   # b does everything twice
        assert a.score().reward == 1.0
        assert all(a.instances[c] is not b.instances[c] for c in a.instances)

def test_deterministic_ids_and_splits():
    e1, e2 = FastLaneEnv(n_tasks=5), FastLaneEnv(n_tasks=50)
    assert e1.tasks("train") == [t for t in e2.tasks("train") if int(t.id.rsplit("_", 1)[1]) < 5]
    assert {t.id for t in e1.tasks()} == {f"fast_{k}_{i}" for k in KINDS for i in range(5)}
    assert FastLaneEnv(seed=1).tasks()[0] != e1.tasks()[0]
    assert {c for t in ENV.tasks("test") for c in t.meta["involved"]} <= set(TRAIN_CLASSES)
    assert {c for t in ENV.tasks("content_ood") for c in t.meta["involved"]} <= set(HELD_OUT_CLASSES)
    vals = lambda ts: {v for t in ts for g in t.ground_truth for c in g for v in parse_call_string(c)[1].values()
                       if isinstance(v, str)}
    assert vals(ENV.tasks("train")) & vals(ENV.tasks("test")) <= {"heat", "cool", "eco", "off"}
    assert ENV.ood_split("format")["fmt"] == "python" and ENV.ood_split("both")["fmt"] == "python"
    assert ENV.ood_split("content")["test"] == ENV.tasks("content_ood")
    with pytest.raises(ValueError): ENV.tasks("valid")
    with pytest.raises(ValueError): FastLaneEnv(kinds=("nope",))

def test_hint():
    for env in (ENV, FastLaneEnv(n_tasks=20, fmt="python", n_turns=(3, 4), calls_per_turn=(3, 3))):
        for task in env.tasks("train"):
            h = env.hint(task)
            assert len(h.split()) <= 100 and h == env.hint(task) and "Format" in h
            assert all(c.split("(")[0] in h for g in task.ground_truth for c in g)

def test_limits():
    env = FastLaneEnv(n_tasks=3, limits=EnvLimits(max_actions=4, max_actions_per_turn=2, max_calls_per_action=1))
    task = env.tasks()[0]
    call = env.gold_actions(task)[0]
    ep = env.reset(task)
    o1 = ep.step(call); o2 = ep.step(call)
    assert o2.kind in ("next_turn", "end") and len(ep.states) == 1        # turn closed by the per-turn limit
    while not ep.done: o = ep.step(call)
    assert ep.n_actions <= 4
    assert ep.step("hi").kind == "end"                                       # after done: nothing happens
    if len(task.ground_truth[0]) > 1: assert any("at most 1 calls" in e for e in o1.errors)
