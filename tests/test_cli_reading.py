"""Level 2 (CLI in subprocesses): reading commands never create or write anything, and a run log held open for
writing by another process (an open panel) is still readable. No model is loaded: the run log is written directly."""
import os, subprocess, sys, tempfile
from pathlib import Path

import pytest

from toolrl_nb.runlog import RunLog, RunLogLocked
from toolrl_nb.panel import Panel

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def toolrl(*args, cwd):
    return subprocess.run([sys.executable, "-c", "from toolrl_nb.cli import main; main()", *args],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120)


def tree(d: Path): return sorted((str(p.relative_to(d)), p.stat().st_size) for p in d.rglob("*"))


@pytest.mark.parametrize("args, names", [
    (["report", "no/such/run"], "no/such/run is not a run directory"),
    (["report", "empty"], "empty is not a run directory (no log.duckdb"),
    (["eval", "no/such/run/checkpoints/step_000003"], "no/such/run/checkpoints/step_000003: no such run, checkpoint"),
    (["resume", "empty"], "empty is not a run directory (no config.yaml"),
])
def test_reading_commands_write_nothing(tmp_path, args, names):
    (tmp_path / "empty").mkdir()
    before = tree(tmp_path)
    r = toolrl(*args, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.strip() == r.stderr.strip().splitlines()[0] and names in r.stderr, r.stderr   # one line naming the path
    assert tree(tmp_path) == before, "a reading command wrote something"


def test_panel_from_run_on_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run log at .*nope"):
        Panel.from_run(tmp_path / "nope", auto_refresh=False)
    assert not (tmp_path / "nope").exists()


WRITER = """import sys, time
from toolrl_nb.runlog import RunLog
log = RunLog(sys.argv[1])
log.log("steps", [dict(step=s, phase="rl", reward_mean=0.25 * s, kl=0.0) for s in range(3)])
print("ready", flush=True)
time.sleep(120)"""


def test_a_log_open_for_writing_stays_readable(tmp_path):
    run = tmp_path / "run"
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(run / "log.duckdb")], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert w.stdout.readline().strip() == "ready"
        r = toolrl("report", str(run), "--no-charts", cwd=tmp_path)          # another process reads: a snapshot
        assert r.returncode == 0, r.stderr
        assert "read-only copy" in r.stdout and "│ rl    ┆ 3 " in r.stdout, r.stdout
        snaps = lambda: set(Path(tempfile.gettempdir()).glob("runlog-snapshot-*"))
        had = snaps()
        with RunLog(run, read_only=True) as ro:                              # the same in this process
            assert ro.snapshot and ro.last_step() == 2 and len(snaps() - had) == 1
        assert snaps() == had, "the snapshot copy was not removed on close"
        with pytest.raises(RunLogLocked, match=rf"open for writing by process {w.pid} .*Stop button"):
            RunLog(run)                                                      # a second writer: one clear line
    finally:
        w.kill(); w.wait()
    with RunLog(run, read_only=True) as ro: assert not ro.snapshot          # the writer is gone: the file itself
