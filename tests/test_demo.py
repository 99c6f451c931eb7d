"""The README's main job, at smoke-test size, with the REAL default model (SmolLM2-135M-Instruct): it must show one
action end to end (reply, parse, state, environment answer), train, and leave a log and charts behind."""
import subprocess, sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def test_demo_quick(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent / "toolrl"), "demo", "--quick",
                        "--config", str(ROOT / "configs" / "demo.yaml"), "--run-dir", str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for line in ("reply       :", "parsed calls:", "state       :", "environment :", "Look at them with SQL"):
        assert line in out, out[-3000:]
    run = tmp_path / "demo"
    con = duckdb.connect(str(run / "log.duckdb"), read_only=True)
    phases = dict(con.execute("SELECT phase, count(*) FROM steps GROUP BY phase").fetchall())
    n_eval = con.execute("SELECT count(*) FROM evaluations").fetchall()[0][0]
    con.close()
    assert phases.get("sft", 0) >= 1 and phases.get("rl") == 2 and n_eval >= 2
    assert (run / "reward_kl.png").stat().st_size > 1000 and (run / "states.png").exists()
