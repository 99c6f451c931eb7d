"""toolrl_nb.runlog: a writer thread inserts while the main thread reads through fresh cursors."""
import threading

from toolrl_nb.runlog import RunLog


def test_writer_thread_and_reader(tmp_path):
    log = RunLog.for_run(tmp_path, "live")
    errors, counts = [], []

    def write():
        try:
            for i in range(200):  # 200 batched inserts, 10 rows each
                log.log("actions", [dict(step=i, traj_id=f"t{j}", action_idx=0, state="healthy_tool_call")
                                    for j in range(10)])
                log.log("steps", [dict(step=i, phase="rl", reward_mean=0.1)])
        except Exception as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    th = threading.Thread(target=write)
    th.start()
    reads = 0
    while th.is_alive():
        df = log.query("SELECT (SELECT count(*) FROM actions) AS a, (SELECT count(*) FROM steps) AS s")
        counts.append(df["a"][0]); reads += 1
    th.join()
    counts.append(log.count("actions"))
    assert errors == []
    assert reads > 1
    assert all(a <= b for a, b in zip(counts, counts[1:])), "counts went down"
    assert counts[-1] == 2000 and log.last_step() == 199
    log.close()


def test_two_writer_threads_share_writer_cursor(tmp_path):
    with RunLog.for_run(tmp_path, "two") as log:
        errors = []
        def write(k):
            try:
                for i in range(50):
                    log.log("events", [dict(step=i, kind=f"w{k}")])
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        ths = [threading.Thread(target=write, args=(k,)) for k in range(2)]
        for t in ths: t.start()
        for t in ths: t.join()
        assert errors == [] and log.count("events") == 100
