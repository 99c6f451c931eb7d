"""Fault injection: each fault ends with a clear line (or a kill), and `toolrl resume` then finishes the run with every
step logged once and the same steps as an uninterrupted run.

Uses the tiny random model (for speed; its outputs are noise) on the fast lane, through the `toolrl` command line, in
subprocesses (tests/fault_inject.py injects the fault at the write call). One run with an SFT round in the middle
(interleaved ETS, rounds [2, 2]) is hit by four faults in a row, each followed by `toolrl resume`:
  1. SIGKILL during a log write (RL step 1's trajectories written, its actions not),
  2. SIGKILL during a checkpoint write (half of state.pt written),
  3. SIGKILL during the SFT round,
  4. ENOSPC while writing a checkpoint (a full disk);
the last resume completes. A second run diverges for real (`--set grpo.lr=1e6`), stops with one line, and resumes to
the end once the learning rate is lowered in its config.yaml.

Cost (measured 2026-12-02 on the shared 2-core machine at load average ~14, i.e. several other jobs running): the whole
file 20 min wall but 4 min 18 s of CPU (user + sys, subprocesses included); 9 `toolrl` processes in all. Alone on
2 cores it should take about its CPU time (~4 min, not measured alone)."""
import errno, os, re, subprocess, sys
from pathlib import Path

import duckdb
import pytest
import yaml

BIN = Path(sys.executable).parent
TOOLRL = [str(BIN / "toolrl")]
INJECT = [sys.executable, str(Path(__file__).parent / "fault_inject.py")]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")
CFG = dict(seed=1, steps=4, tasks_per_step=2, checkpoint_every=1, keep_checkpoints=2,
           model=dict(name="tiny-random"), rollout=dict(group_size=2, max_action_tokens=8, max_total_tokens=1024),
           env=dict(options=dict(n_turns=[1, 1], n_distractors=0)),
           supervision=dict(scheme="interleaved", rounds=[2, 2], round_sft=dict(epochs=1, batch_size=2, micro_batch_size=2)),
           diagnostics=dict(probes=False), eval=dict(n_tasks=1, at_start=False, max_action_tokens=8))


def _run(cmd, **kw):
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, **kw)

def _last_line(r) -> str: return r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""

def _steps(run_dir):
    "(step, phase) of every `steps` row, and per RL step the number of trajectory rows."
    con = duckdb.connect(str(run_dir / "log.duckdb"), read_only=True)
    try:
        steps = con.execute("SELECT step, phase FROM steps ORDER BY step").fetchall()
        trajs = con.execute("SELECT step, count(*) FROM trajectories GROUP BY step ORDER BY step").fetchall()
        events = con.execute("SELECT kind, message FROM events ORDER BY ts").fetchall()
        return steps, trajs, events
    finally: con.close()

def _ckpts(run_dir): return sorted(p.name for p in (run_dir / "checkpoints").iterdir())

def _train(tmp_path, name, cfg, fault=None, extra=()):
    run_dir = tmp_path / name
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(dict(cfg, run_dir=str(run_dir))))
    cmd = ["train", str(tmp_path / f"{name}.yaml"), *extra]
    return run_dir, _run(INJECT + [*fault, "--"] + cmd if fault else TOOLRL + cmd)

def _resume(run_dir, fault=None):
    return _run(INJECT + [*fault, "--", "resume", str(run_dir)] if fault else TOOLRL + ["resume", str(run_dir)])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir, r = _train(tmp_path_factory.mktemp("base"), "base", CFG)
    assert r.returncode == 0, r.stderr[-2000:]
    return run_dir, _steps(run_dir)


def test_kills_and_full_disk_then_resume(tmp_path, uninterrupted):
    base_steps, base_trajs, base_events = uninterrupted[1]
    n_sft = sum(p == "sft" for _, p in base_steps)
    assert n_sft >= 2 and [s for s, _ in base_steps] == list(range(4 + n_sft))   # RL 0-1, the round, RL 2-3

    # 1. SIGKILL during a log write: RL step 1's trajectories are in the log, its actions are not
    run_dir, r = _train(tmp_path, "run", CFG, fault=("kill_log", "2"))
    assert r.returncode == -9, r.stderr[-2000:]
    assert _ckpts(run_dir) == ["step_000000"]
    # 2. SIGKILL half-way through writing checkpoint step_000001: only its .tmp folder is left
    r = _resume(run_dir, fault=("kill_ckpt", "1"))
    assert r.returncode == -9, r.stderr[-2000:]
    assert _ckpts(run_dir) == ["step_000000", "step_000001.tmp"]
    # 3. SIGKILL at the 2nd SFT step of the round
    r = _resume(run_dir, fault=("kill_sft", "2"))
    assert r.returncode == -9, r.stderr[-2000:]
    assert _ckpts(run_dir) == ["step_000000", "step_000001"]
    # 4. a full disk at the 2nd checkpoint of this resume (the one after RL step 2): one line, the previous one intact
    r = _resume(run_dir, fault=("enospc_ckpt", "2"))
    assert r.returncode == 1, r.stderr[-2000:]
    line, last = _last_line(r), f"step_{2 + n_sft:06d}"
    assert re.fullmatch(rf"toolrl: error: no space left on device writing {run_dir}/checkpoints/{last}: needs about "
                        r"[0-9.]+ MB, [0-9.]+ MB free; free some space, then resume the run", line), line
    assert _ckpts(run_dir) == ["step_000001", f"step_{1 + n_sft:06d}"]       # no half-written folder left
    # space freed: the resume finishes the run
    r = _resume(run_dir)
    assert r.returncode == 0, r.stderr[-2000:]
    steps, trajs, events = _steps(run_dir)
    assert steps == base_steps and trajs == base_trajs      # every step once, as in the uninterrupted run
    kinds = [k for k, _ in events]      # (a resume's own event goes when a later resume drops the steps after it)
    assert "resume" in kinds and kinds.count("checkpoint") == [k for k, _ in base_events].count("checkpoint")
    print(f"\n{len(steps)} steps ({n_sft} SFT) after 4 faults, as uninterrupted; the full-disk line: {line}")


def test_diverging_update_stops_then_resumes(tmp_path):
    cfg = dict(CFG, steps=3, supervision={})
    run_dir, r = _train(tmp_path, "div", cfg, extra=["--set", "grpo.lr=1e6", "--set", "grpo.warmup_steps=0"])
    assert r.returncode == 1, r.stderr[-2000:]
    line = _last_line(r)
    m = re.fullmatch(r"toolrl: error: policy diverged at step (\d+): lr 1e\+06, grad_norm \S+, last good checkpoint "
                     r"(step_\d+) \(non-finite weights after the update\); lower grpo.lr in (\S+), then `toolrl resume (\S+)`", line)
    assert m, line
    assert "Traceback" not in r.stderr
    step, good = int(m[1]), m[2]
    assert _ckpts(run_dir)[-1] == good == f"step_{step - 1:06d}"      # nothing saved after the last good update
    steps, _, events = _steps(run_dir)
    assert [s for s, _ in steps] == list(range(step)) and ("diverged", line.removeprefix("toolrl: error: ").split("; lower")[0]) in events
    # the user lowers the learning rate and resumes: the run completes with every RL step once
    cfg_file = run_dir / "config.yaml"
    saved = yaml.safe_load(cfg_file.read_text()); saved["grpo"]["lr"] = 1e-6; cfg_file.write_text(yaml.safe_dump(saved))
    r = _resume(run_dir)
    assert r.returncode == 0, r.stderr[-2000:]
    steps, trajs, _ = _steps(run_dir)
    assert steps == [(i, "rl") for i in range(3)] and [n for _, n in trajs] == [4, 4, 4]
    print(f"\ndiverged at step {step}, resumed from {good}: {len(steps)} RL steps; the line: {line}")


def test_full_disk_on_a_chart_or_the_log_is_one_line(uninterrupted, monkeypatch):
    import altair as alt
    from toolrl_nb.cli import main, disk_full_line
    run_dir = uninterrupted[0]
    def full(self, *a, **k): raise OSError(errno.ENOSPC, "No space left on device")     # at the chart's write call
    monkeypatch.setattr(alt.TopLevelMixin, "save", full)
    with pytest.raises(SystemExit) as e: main(["report", str(run_dir)])
    assert re.fullmatch(rf"toolrl: error: no space left on device writing {run_dir}/reward_kl.png: [0-9.]+ MB free; "
                        r"free some space, then resume the run", str(e.value.code)), e.value.code
    # DuckDB's error when the log cannot grow (its message, not an OSError) is one line too
    err = duckdb.IOException(f'IO Error: Could not write file "{run_dir}/log.duckdb.wal": No space left on device\nmore')
    assert disk_full_line(err) == (f'IO Error: Could not write file "{run_dir}/log.duckdb.wal": No space left on device; '
                                   "free some space, then resume the run")
