"""The same training command under `accelerate launch --num_processes 2` on CPU (gloo): each process rolls out its
share of the tasks, DDP averages gradients, only the main process writes the log. Tiny random model, for speed."""
import shutil, socket, subprocess, sys
from pathlib import Path

import duckdb
import yaml

BIN = Path(sys.executable).parent


def test_two_process_cpu_run(tmp_path):
    run_dir = tmp_path / "run"
    cfg = dict(run_dir=str(run_dir), seed=3, steps=2, tasks_per_step=2, checkpoint_every=1, keep_checkpoints=2,
               model=dict(name="tiny-random"), env=dict(options=dict(n_turns=[1, 2], n_distractors=0)),
               rollout=dict(group_size=2, max_action_tokens=8, max_total_tokens=1024), eval=dict(n_tasks=2, max_action_tokens=8))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    with socket.socket() as sk: sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]   # a free rendezvous port
    # torchrun: `accelerate launch --cpu --num_processes 2` starts a single process (its simple launcher)
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           str(BIN / "toolrl"), "train", str(tmp_path / "cfg.yaml")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    con = duckdb.connect(str(run_dir / "log.duckdb"), read_only=True)
    steps = con.execute("SELECT step, n_trajectories FROM steps ORDER BY step").fetchall()
    groups = con.execute("SELECT step, count(DISTINCT group_idx), count(*) FROM trajectories GROUP BY step ORDER BY step").fetchall()
    runs = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]
    con.close()
    assert steps == [(0, 4), (1, 4)]                 # 2 tasks x 2 rollouts per step, gathered from both processes
    assert groups == [(0, 2, 4), (1, 2, 4)]          # one group from each process, no duplicate ids
    assert runs == 1                                 # only the main process logged the run
    assert [p.name for p in sorted((run_dir / "checkpoints").glob("step_*"))] == ["step_000000", "step_000001"]
