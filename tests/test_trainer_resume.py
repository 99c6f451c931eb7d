"""Kill a real training run (SIGKILL, mid-step) and resume it: the log, and its TensorBoard and trackio mirrors, must
hold every step exactly once.

Uses the tiny random model (for speed) on the fast lane, through the `toolrl` command line as a user would."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import duckdb
import yaml

TOOLRL = [str(Path(sys.executable).parent / "toolrl")]
CFG = dict(seed=1, steps=6, tasks_per_step=2, checkpoint_every=2, keep_checkpoints=2, warmup_tasks=2,
           model=dict(name="tiny-random"), rollout=dict(group_size=2, max_action_tokens=12, max_total_tokens=1024),
           env=dict(options=dict(n_turns=[1, 2], n_distractors=0)),
           warmup=dict(epochs=1, batch_size=2), eval=dict(n_tasks=2, max_action_tokens=8))


def _steps(run_dir):
    con = duckdb.connect(str(run_dir / "log.duckdb"), read_only=True)
    try:
        return ([r[0] for r in con.execute("SELECT step FROM steps ORDER BY step").fetchall()],
                [r[0] for r in con.execute("SELECT kind FROM events ORDER BY ts").fetchall()],
                con.execute("SELECT count(DISTINCT step) FROM trajectories").fetchall()[0][0])
    finally: con.close()


def _check_mirrors(run_dir, env):
    "The trackers were rewritten from the log on resume: each RL step's reward is one point in each (read back by their own readers)."
    code = f"""
from toolrl_nb.interop import tensorboard_scalars
from trackio.sqlite_storage import SQLiteStorage
tb = [s for s, _ in tensorboard_scalars({str(run_dir)!r})["rl/reward_mean"]]
tr = [r["step"] for r in SQLiteStorage.get_logs("toolrl_nb", {run_dir.name!r}) if "rl/reward_mean" in r]
import json; print(json.dumps([sorted(tb), sorted(tr)]))
"""
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    tb, tr = json.loads(r.stdout.strip().splitlines()[-1])
    assert tb == tr == [1, 2, 3, 4, 5, 6], r.stdout  # RL steps 1-6 (step 0 is the SFT warm-up), each once


def test_sigkill_mid_step_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    cfg = dict(CFG, run_dir=str(run_dir), report_to=["tensorboard", "trackio"])
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONUNBUFFERED="1", TRACKIO_DIR=str(tmp_path / "trackio"))
    proc = subprocess.Popen(TOOLRL + ["train", str(tmp_path / "cfg.yaml")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # wait for the checkpoint after RL step 4 (global step: 1 SFT step + 4 RL steps - 1 = 4), then kill mid-run
    target = run_dir / "checkpoints" / "step_000004"
    deadline = time.time() + 600
    while not target.exists() and time.time() < deadline and proc.poll() is None: time.sleep(0.2)
    assert target.exists(), "training did not reach its second RL checkpoint"
    time.sleep(1.0)  # inside the next step (rollout or update)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()

    r = subprocess.run(TOOLRL + ["resume", str(run_dir)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    steps, events, traj_steps = _steps(run_dir)
    assert steps == list(range(7)), steps         # 1 SFT step + 6 RL steps, each once
    assert "resume" in events and events.count("checkpoint") >= 3
    assert traj_steps == 6                         # trajectories of every RL step, none twice
    assert (run_dir / "reward_kl.png").exists()
    _check_mirrors(run_dir, env)

    # the finished run's last checkpoint, evaluated from the command line into its own log
    r = subprocess.run(TOOLRL + ["eval", str(run_dir), "--n-tasks", "1", "--modes", "strict,format_ood",
                                 "--max-action-tokens", "8"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "avg" in r.stdout and "format_ood" in r.stdout


def test_bad_config_names_the_field(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(dict(CFG, run_dir=str(tmp_path / "r"), rollout=dict(group_size=1))))
    r = subprocess.run(TOOLRL + ["train", str(tmp_path / "bad.yaml")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == \
        "toolrl: error: rollout.group_size: must be >= 2 (GRPO compares rollouts in a group)"
