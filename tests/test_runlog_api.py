"""toolrl_nb.runlog: schema, batched writes, validation, resume, persistence, schema version, registry."""
import json
import dataclasses

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from toolrl_nb.runlog import (RunLog, SCHEMA_VERSION, STEP_TABLES, TABLES, SchemaVersionError, open_paths,
                              steps_frame, state_shares, probe_series)


def held(tmp_path):
    "Run logs under this test's folder that this process still holds (other tests' open logs do not count)."
    return [p for p in open_paths() if p.startswith(str(tmp_path.resolve()))]


@pytest.fixture
def log(tmp_path):
    lg = RunLog.for_run(tmp_path, "r1")
    yield lg
    lg.close()


def test_creates_tables_and_meta_idempotently(tmp_path):
    with RunLog(tmp_path / "x" / "log.duckdb") as a:
        names = set(a.query("SELECT table_name FROM information_schema.tables")["table_name"])
        assert names == {*TABLES, "meta"}
    with RunLog(tmp_path / "x") as b:  # reopen through the run directory; no duplicate meta rows
        assert b.query("SELECT key, value FROM meta").rows() == [("schema_version", str(SCHEMA_VERSION))]
    assert held(tmp_path) == []


def test_log_one_insert_missing_columns_null(log):
    assert log.log("steps", [dict(step=0, phase="rl", reward_mean=0.5), dict(step=1, kl=0.1)]) == 2
    df = log.query("SELECT step, phase, reward_mean, kl, skipped, ts FROM steps ORDER BY step")
    assert df["phase"].to_list() == ["rl", None]
    assert df["kl"].to_list() == [None, 0.1]
    assert df["skipped"].null_count() == 2
    assert df["ts"].null_count() == 0  # filled by the column default


def test_log_accepts_pandas_polars_arrow_and_json(log):
    log.log("actions", pd.DataFrame(dict(step=[1], traj_id=["a"], parse_errors=[["x", 1]])))
    log.log("actions", pl.DataFrame(dict(step=[2], traj_id=["b"], parse_errors=[{"k": 1}])))
    log.log("actions", pa.table(dict(step=[3], traj_id=["c"], parse_errors=['{"raw": true}'])))
    log.log("actions", [dict(step=4, traj_id="d", parse_errors={"k": [1, 2]})])
    got = log.query("SELECT parse_errors FROM actions ORDER BY step")["parse_errors"].to_list()
    assert [json.loads(g) for g in got] == [["x", 1], {"k": 1}, {"raw": True}, {"k": [1, 2]}]


def test_log_single_statement(log, monkeypatch):
    calls = []
    orig = log._exec
    monkeypatch.setattr(log, "_exec", lambda sql, params=None: (calls.append(sql), orig(sql, params))[1])
    log.log("actions", [dict(step=0, traj_id=f"t{i}", action_idx=i) for i in range(1000)])
    assert len(calls) == 1 and calls[0].startswith('INSERT INTO "actions" BY NAME SELECT')
    assert log.count("actions") == 1000


def test_unknown_table_and_columns_are_named(log):
    with pytest.raises(ValueError, match="'nope'"):
        log.log("nope", [dict(step=1)])
    with pytest.raises(ValueError, match="'meta'"):
        log.log("meta", [dict(key="x")])
    with pytest.raises(ValueError, match=r"'rewardz', 'foo'"):
        log.log("steps", [dict(step=1, rewardz=1.0), dict(foo=2)])
    with pytest.raises(duckdb.ConstraintException):
        log.log("trajectories", [dict(step=1, kind="teacher")])
    assert log.count("steps") == 0 and log.count("trajectories") == 0
    with pytest.raises(TypeError):
        log.log("steps", "step=1")


def test_event_and_log_run(log):
    @dataclasses.dataclass
    class Cfg:
        lr: float = 1e-6
        n: int = 8
    log.log_run("r1", Cfg(), note="n1", git_rev="abc")
    log.log_run("r1", {"lr": 1e-5}, note="resumed", git_rev="abc")  # replaces, no duplicate run row
    runs = log.query("SELECT * FROM runs")
    assert runs.height == 1 and runs["note"][0] == "resumed" and json.loads(runs["config"][0]) == {"lr": 1e-5}
    assert runs["host"][0] and runs["started_at"][0] is not None
    with pytest.raises(ValueError, match="'bogus'"):
        log.log_run("r1", {}, bogus=1)
    log.event(3, "spike", "p up", token="<|im_end|>", value=0.4)
    ev = log.query("SELECT * FROM events")
    assert ev["kind"][0] == "spike" and json.loads(ev["data"][0]) == {"token": "<|im_end|>", "value": 0.4}


def test_query_pandas_params_and_as_check(log):
    log.log("steps", [dict(step=s, reward_mean=s / 10) for s in range(5)])
    df = log.query("SELECT step FROM steps WHERE step > $k ORDER BY step", {"k": 2}, as_="pandas")
    assert isinstance(df, pd.DataFrame) and df["step"].tolist() == [3, 4]
    with pytest.raises(ValueError, match="as_"):
        log.query("SELECT 1", as_="arrow")


def test_delete_after_then_relog_no_duplicates(log):
    for s in range(6):
        for t in STEP_TABLES:
            log.log(t, [dict(step=s)])
    assert log.last_step() == 5
    assert log.delete_after(3) == 2 * len(STEP_TABLES)
    assert log.last_step() == 3
    for s in (4, 5):
        for t in STEP_TABLES:
            log.log(t, [dict(step=s)])
    for t in STEP_TABLES:
        assert log.query(f"SELECT count(*) n, count(DISTINCT step) d FROM {t}").rows() == [(6, 6)], t


def test_persistence_close_reopen(tmp_path):
    with RunLog.for_run(tmp_path, "p") as a:
        a.log_run("p", {"x": 1}, git_rev=None)
        a.log("steps", [dict(step=s, phase="rl", reward_mean=s * 0.1) for s in range(10)])
        a.log("actions", [dict(step=1, traj_id="t", action_idx=i, state="collapsed") for i in range(7)])
    assert held(tmp_path) == []
    with RunLog.for_run(tmp_path, "p", read_only=True) as b:
        assert b.count("steps") == 10 and b.count("actions") == 7 and b.last_step() == 9
        assert steps_frame(b)["reward_mean"].to_list() == pytest.approx([s * 0.1 for s in range(10)])
        with pytest.raises(PermissionError):
            b.log("steps", [dict(step=10)])


def test_newer_schema_refused(tmp_path):
    with RunLog(tmp_path / "f") as a:
        a._exec("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    for ro in (False, True):
        with pytest.raises(SchemaVersionError, match=f"schema_version {SCHEMA_VERSION + 1}"):
            RunLog(tmp_path / "f", read_only=ro)
    assert held(tmp_path) == []


def test_read_only_on_foreign_file(tmp_path):
    p = tmp_path / "other.duckdb"
    c = duckdb.connect(str(p)); c.execute("CREATE TABLE x(a INT)").fetchall(); c.close()
    with pytest.raises(ValueError, match="not a run log"):
        RunLog(p, read_only=True)
    assert held(tmp_path) == []


def test_registry_shares_connection(tmp_path):
    a = RunLog(tmp_path / "s")
    b = RunLog(tmp_path / "s")
    ro = RunLog(tmp_path / "s", read_only=True)
    assert a.con is b.con is ro.con and len(held(tmp_path)) == 1
    b.log("steps", [dict(step=1)])
    assert a.count("steps") == 1 == ro.count("steps")
    a.close(); a.close()  # idempotent
    assert b.count("steps") == 1  # still open for the others
    b.close(); ro.close()
    assert held(tmp_path) == []
    with pytest.raises(RuntimeError, match="closed"):
        b.query("SELECT 1")
    # read-only first, then a writer: refused with a clear message
    ro = RunLog(tmp_path / "s", read_only=True)
    with pytest.raises(ValueError, match="already open read-only"):
        RunLog(tmp_path / "s")
    ro.close()
    assert held(tmp_path) == []


def test_helpers_on_small_log(log):
    log.log("actions", [dict(step=0, state="a"), dict(step=0, state="a"), dict(step=0, state="b"),
                        dict(step=1, state="b"), dict(step=1, state=None)])
    sh = state_shares(log)
    assert sh.filter(pl.col("step") == 0).select("state", "n").rows() == [("a", 2), ("b", 1), ("unclassified", 0)]
    assert sh.filter(pl.col("step") == 1)["share"].to_list() == pytest.approx([0, 0.5, 0.5])
    log.log("probe_summary", [dict(step=0, probe="p", token="x", mean=0.3, max=0.4, n=2)])
    log.log("probes", [dict(step=0, probe="p", token="x", prob=0.9), dict(step=1, probe="p", token="x", prob=0.2),
                       dict(step=1, probe="p", token="x", prob=0.4)])
    ps = probe_series(log)
    assert ps.select("step", "mean", "n").rows() == [(0, 0.3, 2), (1, pytest.approx(0.3), 2)]
