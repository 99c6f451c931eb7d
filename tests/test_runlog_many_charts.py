"""toolrl_nb.runlog: open_many cross-run views and offline chart export (FABRICATED demo numbers)."""
import altair as alt
import polars as pl
import pytest

from toolrl_nb.runlog import (RunLog, SchemaVersionError, SCHEMA_VERSION, open_many, open_paths, probes_chart,
                              reward_kl_chart, save_chart, states_chart, steps_frame)


def _fill(log, shift=0.0, n=10):  # fabricated numbers, only to exercise the code
    log.log("steps", [dict(step=s, phase="rl", reward_mean=shift + 0.01 * s, reward_std=0.1, kl=0.001 * s)
                      for s in range(n)])
    log.log("actions", [dict(step=s, state=st) for s in range(n) for st in ("healthy_tool_call", "collapsed")])
    log.log("probe_summary", [dict(step=s, probe="p", token=t, mean=0.1, max=0.2, n=4) for s in range(n)
                              for t in ('{"', "<|im_end|>")])
    log.event(5, "collapse", "fabricated")


@pytest.fixture
def sweep(tmp_path):
    for i, name in enumerate(["a", "b"]):
        with RunLog.for_run(tmp_path, name) as lg:
            lg.log_run(name, {"i": i}, git_rev=None)
            _fill(lg, shift=i)
    return tmp_path


def test_open_many_union_views(sweep):
    with open_many([sweep / "a", sweep / "b" / "log.duckdb"]) as rs:
        assert rs.run_ids == ["a", "b"]
        df = rs.query("SELECT run_id, count(*) n, max(reward_mean) m FROM steps GROUP BY run_id ORDER BY run_id")
        assert df["n"].to_list() == [10, 10] and df["m"].to_list() == pytest.approx([0.09, 1.09])
        assert rs.query("SELECT run_id, logged_run_id FROM runs ORDER BY 1").rows() == [("a", "a"), ("b", "b")]
        assert steps_frame(rs).columns[0] == "run_id"
        with pytest.raises(duckdb_error()):
            rs.query("INSERT INTO a.steps (step) VALUES (99)")  # attached read-only
    with open_many({"x": sweep / "a"}) as rs:
        assert rs.query("SELECT DISTINCT run_id FROM events")["run_id"].to_list() == ["x"]


def duckdb_error():
    import duckdb
    return duckdb.Error


def test_open_many_refusals(sweep):
    lg = RunLog.for_run(sweep, "a")
    with pytest.raises(ValueError, match="close it before open_many"):
        open_many([sweep / "a"])
    lg._exec("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    lg.close()
    with pytest.raises(SchemaVersionError):
        open_many([sweep / "a", sweep / "b"])
    with pytest.raises(ValueError, match="duplicate run ids"):
        open_many([sweep / "b", sweep / "b" / "log.duckdb"])
    with pytest.raises(FileNotFoundError):
        open_many([sweep / "zzz.duckdb"])
    assert [p for p in open_paths() if p.startswith(str(sweep.resolve()))] == []  # other tests' logs do not count


def test_charts_single_and_multi(sweep, tmp_path):
    with RunLog.for_run(sweep, "a", read_only=True) as lg:
        for ch in (reward_kl_chart(lg), states_chart(lg), probes_chart(lg), probes_chart(lg, events=False)):
            assert isinstance(ch, alt.TopLevelMixin)
            ch.to_dict()  # valid Vega-Lite spec with inline data
        png = save_chart(probes_chart(lg), tmp_path / "out" / "p.png")
        assert png.read_bytes()[:4] == b"\x89PNG"
        svg = save_chart(states_chart(lg), tmp_path / "out" / "s.svg")
        assert "<svg" in svg.read_text()[:200]
        with pytest.raises(ValueError, match="'.jpg'"):
            save_chart(states_chart(lg), tmp_path / "x.jpg")
    with open_many([sweep / "a", sweep / "b"]) as rs:
        ch = probes_chart(rs)
        assert len(ch.vconcat) == 2
        ch.to_dict()
        states_chart(rs).to_dict()
