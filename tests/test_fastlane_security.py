"Fast lane: fuzz (>= 10,000 random/mutated actions, nothing raises) and injection attempts (nothing executes)."
import json, os, random, time
from toolrl_nb.envs import EnvLimits, Observation
from toolrl_nb.format import ToolCall
from toolrl_nb.fastlane import FastLaneEnv, DOCS, public_state, get_format

ENV = FastLaneEnv(n_tasks=25)
SMALL = FastLaneEnv(n_tasks=25, limits=EnvLimits(max_actions=6, max_actions_per_turn=3, max_calls_per_action=2,
                                                  max_result_chars=200))
NAMES = list(DOCS) + ["", "x", "_load_scenario", "__init__", "__class__", "__dict__", "notes", "catalog", "eval",
                      "exec", "open", "os.system", "__import__('os').system('id')", "list_notes.__globals__", "None"]
VALUES = [None, True, 0, -1, 2, 10**30, 1.5, float("nan"), "", "apple", "kitchen", "x" * 5000, [], [1, [2]], {"a": {}},
          "__import__('os').system('touch /tmp/fastlane_pwned')", "'); import os; os.system('id') #"]

def _mutate(rng, text):
    ops = rng.randrange(6)
    if not text or ops == 0: return "".join(rng.choice("<>{}[]()\"':,_ toolcal/|imend") for _ in range(rng.randrange(60)))
    i = rng.randrange(len(text))
    if ops == 1: return text[:i]                                            # truncated
    if ops == 2: return text[:i] + text[i + 1:]                             # one char dropped
    if ops == 3: return text[:i] + rng.choice(["<tool_call>", "</tool_call>", "<|im_end|>", "{", "]", '"', "\n"]) + text[i:]
    if ops == 4: return text + text                                         # doubled
    return text.replace(rng.choice(["name", "arguments", "(", "=", ":"]), rng.choice(["", "nme", "))", "==", "::"]))

def _random_call_action(rng, fmt):
    calls = [ToolCall(rng.choice(NAMES), {rng.choice(["title", "text", "name", "quantity", "room", "celsius", "mode",
                                                      "code", "account", "amount", "todo_id", "zz"]): rng.choice(VALUES)
                                          for _ in range(rng.randrange(4))}) for _ in range(rng.randrange(1, 4))]
    if fmt == "json":
        return "\n".join("<tool_call>\n" + json.dumps({"name": c.name, "arguments": c.arguments}) + "\n</tool_call>"
                         for c in calls)
    return "[" + ", ".join(f"{c.name}(" + ", ".join(f"{k}={v!r}" for k, v in c.arguments.items()) + ")" for c in calls) + "]"

def test_fuzz_nothing_raises():
    rng, t0 = random.Random(0), time.time()
    counts = dict(actions=0, episodes=0, calls=0, errors=0, tool=0, next_turn=0, end=0, limit=0)
    while counts["actions"] < 10_000:
        env = rng.choice([ENV, SMALL])
        task = rng.choice(env.tasks(rng.choice(["train", "test", "content_ood"])))
        fmt = rng.choice(["json", "python"])
        eps = [env.reset(task, fmt) for _ in range(2)]       # two interleaved episodes
        gold = env.gold_actions(task, fmt); counts["episodes"] += 2
        for _ in range(rng.randrange(1, 40)):
            live = [e for e in eps if not e.done]
            if not live: break
            ep = rng.choice(live)
            r = rng.random()
            a = (rng.choice(gold) if r < .25 else _mutate(rng, rng.choice(gold)) if r < .6 else
                 _random_call_action(rng, fmt) if r < .9 else rng.choice(["", " ", "ok", "<|im_end|>", "<tool_call>",
                                                                          "[]", "[f()]", "\x00", "🙂" * 50]))
            o = ep.step(a); counts["actions"] += 1
            assert isinstance(o, Observation) and isinstance(o.messages, list)
            assert all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in o.messages)
            counts["calls"] += o.n_calls; counts["errors"] += o.n_errors; counts[o.kind] += 1
        for ep in eps:
            sc = ep.score()
            assert 0.0 <= sc.reward <= 1.0 and not ep.internal_errors and len(sc.turn_passed) == task.n_turns
    assert not os.path.exists("/tmp/fastlane_pwned")
    print(f"fuzz: {counts} in {time.time() - t0:.1f}s")

def _one(fmt, name, args):
    if fmt == "json": return '<tool_call>\n' + json.dumps({"name": name, "arguments": args}) + '\n</tool_call>'
    return f"[{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")]"

INJECTIONS = [("__import__", {"name": "os"}), ("__import__('os').system", {"command": "touch /tmp/fastlane_pwned"}),
              ("_load_scenario", {"config": {}}), ("__init__", {}), ("__class__", {}), ("__dict__", {}),
              ("eval", {"source": "1"}), ("exec", {"source": "1"}), ("open", {"file": "/etc/passwd"}),
              ("list_notes.__globals__", {}), ("os.system", {"command": "id"}), ("notes", {}), ("catalog", {}),
              ("add_note", {"__class__": 1}), ("add_note", {"_x": 1, "title": "a", "text": "b"}),
              ("add_item", {"name": "__import__('os').system('touch /tmp/fastlane_pwned')", "quantity": 1}),
              ("set_mode", {"mode": "heat'); __import__('os').system('touch /tmp/fastlane_pwned'); ('"}),
              ("get_temperature", {"room": {"__class__": "x"}})]

def test_injection_is_rejected():
    for fmt in ("json", "python"):
        for task in ENV.tasks("train")[:8] + ENV.tasks("content_ood")[:8]:
            ep = ENV.reset(task, fmt); before = public_state(ep.instances)
            for name, args in INJECTIONS:
                n_msgs = len(ep.messages)
                o = ep.step(_one(fmt, name, args))
                assert o.kind in ("tool", "next_turn", "end", "limit")
                if o.kind == "tool":
                    assert o.n_errors >= 1, (name, args, o)
                    assert any("rror" in m["content"] for m in o.messages)
                assert public_state(ep.instances) == before, (name, args)
                assert not ep.internal_errors
    assert not os.path.exists("/tmp/fastlane_pwned")
