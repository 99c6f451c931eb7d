"""toolrl_nb.evaluation: rows, modes, lenient scoring, format OOD, resume, logging, the paper's tables.

Most tests replace the model by a scripted policy (gold or deliberately broken actions replayed through the real
environments: the fast lane and a handful of BFCL test tasks), so they are fast and their accuracies are known.
One test runs the tiny random model (random weights, accuracy 0) end to end."""
import json
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

import toolrl_nb.evaluation as ev
from toolrl_nb.bfcl import BfclEnv, split_tasks
from toolrl_nb.envs import EnvLimits, replay
from toolrl_nb.fastlane import FastLaneEnv
from toolrl_nb.rollout import RolloutConfig
from toolrl_nb.runlog import RunLog
from toolrl_nb.trainer import EnvConfig

FL = EnvConfig("fastlane", options=dict(n_tasks=3, n_distractors=0))
DUMMY = (SimpleNamespace(eval=lambda: None), None)   # no model: the scripted rollout below does not use it


def scripted(policy):
    "A stand-in for `rollout`: replays `policy(env, task, fmt)` through the real env; records every call."
    calls = []
    def _rollout(model, tok, env, tasks, cfg, fmt="json", progress=False):
        calls.append(dict(n=len(tasks), fmt=fmt, lenient=env.lenient, ids=[t.id for t in tasks]))
        out = []
        for t in tasks:
            acts = policy(env, t, fmt)
            _, score = replay(env, t, acts, fmt)
            out.append(SimpleNamespace(task=t, score=score, actions=acts))
            if callable(progress): progress(len(out))
        return out
    return _rollout, calls


def gold_if(pred):
    "Gold actions for tasks where pred(task), a tool-free reply otherwise (fails every checked turn)."
    return lambda env, t, fmt: env.gold_actions(t, fmt) if pred(t) else ["I cannot help."] * t.n_turns


def unclosed(env, t, fmt):
    "Gold actions with every </tool_call> missing: strict parsing rejects them, lenient parsing repairs them."
    return [a.replace("</tool_call>", "") for a in env.gold_actions(t, fmt)]


def run(monkeypatch, policy, **kw):
    fake, calls = scripted(policy)
    monkeypatch.setattr(ev, "rollout", fake)
    args = dict(env_cfg=FL, progress=False, policy=DUMMY, resume=False)
    args.update(kw)
    return ev.evaluate_checkpoint("scripted", **args), calls


def test_rows_per_category_and_avg_is_mean_of_categories(monkeypatch):
    # gold on task index 0 of each kind plus index 1 of fast_plain: unequal accuracies per category
    res, _ = run(monkeypatch, gold_if(lambda t: t.id.endswith("_0") or t.id == "fast_plain_1"), modes=("strict",))
    cats = res.filter(~pl.col("category").is_in(["avg", "all"]))
    assert cats["category"].to_list() == ["fast_plain", "fast_miss_func", "fast_miss_param", "fast_long_context"]
    assert cats["n_tasks"].to_list() == [3, 3, 3, 3]
    assert cats["accuracy"].to_list() == pytest.approx([200 / 3, 100 / 3, 100 / 3, 100 / 3])
    avg = res.filter(pl.col("category") == "avg").row(0, named=True)
    assert avg["accuracy"] == pytest.approx(cats["accuracy"].mean())
    allr = res.filter(pl.col("category") == "all").row(0, named=True)
    assert (allr["n_tasks"], allr["n_passed"]) == (12, 5)
    assert allr["ci_low"] < allr["accuracy"] < allr["ci_high"]
    assert (allr["ci_low"], allr["ci_high"]) == pytest.approx(ev.wilson(5, 12))


def test_avg_differs_from_pooled_when_sizes_differ():
    recs = [dict(category="a", passed=True)] + [dict(category="b", passed=False)] * 3
    rows = {r["category"]: r for r in ev.summary_rows(recs, "strict", "test")}
    assert rows["avg"]["accuracy"] == 50.0 and rows["all"]["accuracy"] == 25.0


@pytest.mark.parametrize("make_env,task", [
    (lambda lenient: FastLaneEnv(n_tasks=2, n_distractors=0, lenient=lenient), lambda: FastLaneEnv(n_tasks=2).tasks("test")[0]),
    (lambda lenient: BfclEnv(split="test", prompt="compact", lenient=lenient), lambda: split_tasks("test", ["base"])[0]),
], ids=["fastlane", "bfcl"])
@pytest.mark.parametrize("breakage", ["missing_close_tag", "single_quotes"])
def test_lenient_env_executes_slightly_broken_calls(make_env, task, breakage):
    t = task()
    strict, lenient = make_env(False), make_env(True)
    action = strict.gold_actions(t)[0]
    if breakage == "missing_close_tag": action = action.replace("</tool_call>", "")
    else: action = action.replace('"', "'")
    s, l = strict.reset(t).step(action), lenient.reset(t).step(action)
    assert s.n_calls == 0 and s.n_errors > 0             # strict: an error observation, nothing ran
    assert l.n_calls >= 1                                # lenient: executed
    assert any("repaired" in e or "Python-style" in e for e in l.parse.errors)   # the repair is reported


def test_lenient_scores_at_least_strict_on_broken_trajectories(monkeypatch):
    res, calls = run(monkeypatch, unclosed, modes=("strict", "lenient"))
    acc = {m: res.filter((pl.col("mode") == m) & (pl.col("category") == "avg"))["accuracy"][0] for m in ("strict", "lenient")}
    assert acc["strict"] == 0.0 and acc["lenient"] == 100.0
    assert [c["lenient"] for c in calls] == [False, True]


def test_format_ood_uses_the_python_format(monkeypatch):
    res, calls = run(monkeypatch, gold_if(lambda t: True), modes=("strict", "format_ood"))
    assert [c["fmt"] for c in calls] == ["json", "python"]
    assert calls[0]["ids"] == calls[1]["ids"]             # the same tasks
    assert res.filter(pl.col("category") == "all")["accuracy"].to_list() == [100.0, 100.0]   # gold replay passes in python
    assert set(res.filter(pl.col("mode") == "format_ood")["fmt"]) == {"python"}


def test_format_ood_gold_replay_on_bfcl():
    env = BfclEnv(split="test", prompt="compact")
    for t in split_tasks("test", ["base", "miss_func"])[:2] + split_tasks("test", ["miss_param"])[:1]:
        acts = env.gold_actions(t, "python")
        assert acts[0].lstrip().startswith("[")
        assert replay(env, t, acts, "python")[1].passed, t.id


def test_content_ood_tasks_use_held_out_classes(monkeypatch):
    _, calls = run(monkeypatch, gold_if(lambda t: True), modes=("content_ood",), n_tasks=1)
    from toolrl_nb.fastlane import HELD_OUT_CLASSES
    held = FastLaneEnv(n_tasks=3, n_distractors=0).ood_split("content")["test"]
    assert calls[0]["ids"] == [t.id for t in held[::3]]
    assert all(set(t.meta["classes"]) <= set(HELD_OUT_CLASSES) for t in held)
    env, tasks, fmt = ev.mode_setup(EnvConfig("bfcl", options=dict(prompt="compact")), "content_ood", n_tasks=2)
    assert fmt == "json" and tasks and all({"TicketAPI", "TwitterAPI"} & set(t.meta["involved_classes"]) for t in tasks)


def test_resume_skips_finished_tasks(monkeypatch, tmp_path):
    path = tmp_path / "eval_tasks.jsonl"
    n_run = []
    base_policy = gold_if(lambda t: t.id.endswith("_1"))
    def dying(env, t, fmt):                              # the process "dies" inside the third batch
        if len(n_run) == 5: raise KeyboardInterrupt
        n_run.append(t.id); return base_policy(env, t, fmt)
    with pytest.raises(KeyboardInterrupt):
        run(monkeypatch, dying, modes=("strict",), batch_size=2, resume=True, results_path=path)
    assert len(ev.read_task_results(path)) == 4          # two finished batches were written
    with open(path, "a") as f: f.write('{"key": "torn')  # a torn last line is ignored
    res, calls = run(monkeypatch, base_policy, modes=("strict",), batch_size=2, resume=True, results_path=path)
    assert sum(c["n"] for c in calls) == 12 - 4          # only the unfinished tasks ran
    lines = path.read_text().split("\n")                # one line per task, the torn one closed by a single newline
    assert len(lines) == 4 + 1 + 8 + 1 and lines[4] == '{"key": "torn' and lines[-1] == ""
    assert res.filter(pl.col("category") == "all")["n_passed"][0] == 4
    res2, calls2 = run(monkeypatch, base_policy, modes=("strict",), resume=True, results_path=path)
    assert calls2 == [] and res2.equals(res) and path.read_text().count("\n") == 13   # nothing appended
    _, calls3 = run(monkeypatch, base_policy, modes=("strict",), resume=True, results_path=path, max_action_tokens=99)
    assert sum(c["n"] for c in calls3) == 12             # another setting does not reuse the results


def test_progress_bar_moves_as_episodes_finish(monkeypatch):
    # batch_size 0 puts every task in one batched rollout; the bar must still move per finished episode, not once at the end
    counts = []
    class Bar:
        def __init__(self, total, initial=0, **kw): self.n = initial
        def update(self, k): self.n += k; counts.append(self.n)
        def close(self): pass
    monkeypatch.setattr(ev, "tqdm", Bar)
    _, calls = run(monkeypatch, gold_if(lambda t: True), modes=("strict",), batch_size=0)
    n = calls[0]["n"]
    assert len(calls) == 1 and n > 1
    assert sorted(set(counts)) == list(range(1, n + 1)) and counts[-1] == n


def test_logs_to_evaluations_once(monkeypatch, tmp_path):
    with RunLog(tmp_path / "log.duckdb") as log:
        for _ in range(2): run(monkeypatch, gold_if(lambda t: True), modes=("strict", "lenient"), log=log, resume=True)
        rows = log.query("SELECT mode, category, accuracy FROM evaluations ORDER BY mode, category")
    assert len(rows) == 2 * 6 and set(rows["accuracy"]) == {100.0}
    assert (tmp_path / "eval_tasks.jsonl").exists()      # the sidecar sits next to the log


def test_tiny_random_model_end_to_end(tmp_path):
    "The tiny random model (random weights: it never writes a valid call) through the real batched rollout."
    cfg = EnvConfig("fastlane", options=dict(n_tasks=1, n_distractors=0, limits=EnvLimits(max_actions=2)))
    tw = ev.three_way("tiny-random", env_cfg=cfg, max_action_tokens=4, progress=False, results_path=tmp_path / "r.jsonl",
                      rollout_cfg=RolloutConfig(max_total_tokens=600))
    assert tw.columns == ["category", "n_tasks", "strict", "lenient", "format_ood"]
    assert tw["category"].to_list()[-2:] == ["avg", "all"] and tw["n_tasks"].to_list()[-1] == 4
    assert len(ev.read_task_results(tmp_path / "r.jsonl")) == 12


def _fake_log(path, step, rows):
    with RunLog(path) as log:
        log.log("evaluations", [dict(step=step, checkpoint=f"s{step}", split="test", category=c, mode=m, n_tasks=100,
                                     n_passed=int(a), accuracy=float(a), seed=0) for m, c, a in rows])


def test_paper_table_layout(tmp_path):
    cats = ["base", "miss_func", "miss_param", "long_context"]
    _fake_log(tmp_path / "a.duckdb", 10, [("strict", c, 10.0) for c in cats] + [("strict", "avg", 10.0)])
    _fake_log(tmp_path / "a.duckdb", 20, [("strict", c, a) for c, a in zip(cats, [1.0, 2.0, 3.0, 6.0])] + [("strict", "avg", 3.0),
              ("format_ood", "avg", 20.0), ("lenient", "avg", 8.0)])
    _fake_log(tmp_path / "b.duckdb", 5, [("strict", c, 0.0) for c in cats])
    runs = {"PRS": tmp_path / "a.duckdb", "my method": tmp_path / "b.duckdb"}
    t = ev.paper_table(runs)
    assert t.columns == ["method", "source", "Base", "Miss Func", "Miss Param", "Long Ctx", "Avg", "n", "step"]
    assert t["method"].to_list() == ["PRS", "PRS", "my method"]
    ours, paper = t.row(0, named=True), t.row(1, named=True)
    assert (ours["Base"], ours["Long Ctx"], ours["Avg"], ours["step"]) == (1.0, 6.0, 3.0, 20)   # the last step
    assert (paper["Base"], paper["Avg"]) == (31.0, 25.75) and "Qwen2.5-1.5B-Instruct" in paper["source"]
    assert t.row(2, named=True)["Avg"] == 0.0          # no avg row logged: the mean of categories
    best = ev.paper_table(runs, which="best", paper_model=None)
    assert best["Avg"].to_list() == [10.0, 0.0] and best["step"].to_list() == [10, 5]
    q3 = ev.paper_table({"ETS": tmp_path / "b.duckdb"}, paper_model="Qwen3-1.7B (non-thinking)")
    assert q3["Avg"].to_list() == [0.0, 23.25]
    o = ev.ood_table(runs)
    assert o.columns == ["method", "source", "Strict", "Lenient", "Format OOD", "Content OOD"]
    assert o.row(0, named=True) == dict(method="PRS", source="ours", Strict=3.0, Lenient=8.0, **{"Format OOD": 20.0, "Content OOD": None})
    assert o.row(1, named=True)["Format OOD"] == 12.0 and "ACEBench" in o.row(1, named=True)["source"]
    md = ev.to_markdown(t)
    assert md.splitlines()[0].startswith("| method | source | Base |") and "25.75" in md and "–" in md


def test_paper_results_file_is_consistent():
    d = ev.paper_results()
    assert len(d["bfcl"]) == 16 and len(d["acebench_ood"]) == 7
    for r in d["bfcl"]:
        assert r["avg"] == pytest.approx(sum(r[k] for k in ev.COLUMNS) / 4), r
        assert r["seeds"] == 1 and r["n_per_category"] == 100
