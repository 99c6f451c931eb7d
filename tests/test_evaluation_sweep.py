"""toolrl_nb.evaluation.sweep resume, and evaluating a real run directory's checkpoint.

Uses the tiny random model on the fast lane (1 RL step per run, short episodes) for speed."""
import polars as pl

import toolrl_nb.evaluation as ev
from toolrl_nb.runlog import RunLog

TINY = dict(steps=1, tasks_per_step=1, checkpoint_every=1, model=dict(name="tiny-random"),
            rollout=dict(group_size=2, max_action_tokens=6, max_total_tokens=560),
            env=dict(options=dict(n_tasks=1, n_turns=[1, 1], n_distractors=0)), eval=dict(n_tasks=2, max_action_tokens=4),
            diagnostics=dict(probes=False))
GRID = {"grpo.lr": [1e-6, 1e-5]}


def test_sweep_resume_and_checkpoint_evaluation(tmp_path, monkeypatch):
    root = tmp_path / "sweep"
    s1 = ev.sweep(TINY, GRID, root=root, limit=1)                 # "interrupted" after the first run
    assert s1["status"].to_list() == ["done", "pending"]
    assert s1["name"].to_list() == ["grpo.lr=1e-06_seed=0", "grpo.lr=1e-05_seed=0"]
    first = root / s1["name"][0]
    mtime = (first / "log.duckdb").stat().st_mtime_ns

    built = []
    orig = ev.Trainer.__init__
    def counting(self, cfg, *a, **k): built.append(cfg.run_dir); return orig(self, cfg, *a, **k)
    monkeypatch.setattr(ev.Trainer, "__init__", counting)
    s2 = ev.sweep(TINY, GRID, root=root)
    assert built == [str(root / s1["name"][1])]                    # the finished run was skipped
    assert (first / "log.duckdb").stat().st_mtime_ns == mtime
    assert s2["status"].to_list() == ["done", "done"] and s2["rl_steps"].to_list() == [1, 1]
    assert s2["grpo.lr"].to_list() == [1e-6, 1e-5]
    for col in ("final_accuracy", "best_accuracy", "collapse_step", "first_spike_step"): assert col in s2.columns
    assert s2["final_accuracy"].to_list() == [0.0, 0.0]             # random weights
    assert pl.read_parquet(root / "summary.parquet").equals(s2)
    assert ev.sweep(TINY, GRID, root=root, run=False)["status"].to_list() == ["done", "done"]
    assert built == [str(root / s1["name"][1])]

    # evaluate the first run's last checkpoint from its run directory, into its own log
    res = ev.evaluate_checkpoint(first, modes=("strict", "format_ood"), n_tasks=1, max_action_tokens=4, log=True,
                                 progress=False)
    ck = ev.checkpoints(first)[-1]
    assert set(res["checkpoint"]) == {ck.name} and set(res["step"]) == {int(ck.name.split("_")[-1]) + 1}
    assert (first / "eval_tasks.jsonl").exists()
    with RunLog(first, read_only=True) as log:
        n = log.query("SELECT count(*) AS n FROM evaluations WHERE checkpoint = ?", [ck.name])["n"][0]
    assert n == len(res)
    t = ev.paper_table({"GRPO": first})
    assert t["method"].to_list() == ["GRPO", "GRPO"] and t["n"][0] == "1/category"
