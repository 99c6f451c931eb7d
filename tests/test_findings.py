"""The findings campaign end to end on a tiny budget, and `toolrl findings` on the committed logs.

The pipeline test uses the tiny random model (random weights, not SmolLM2): a warm-up run with a pinned checkpoint,
a two-arm learning-rate ladder with two seeds, the reference evaluated in two modes, every run exported and read
back into the findings table. The last test reads the logs committed in data/results/findings (what CI checks)."""
import json, subprocess, sys
from pathlib import Path

import duckdb, yaml

from toolrl_nb import findings as fd
from toolrl_nb.config import from_dict
from toolrl_nb.evaluation import pinned_checkpoint, read_task_results
from toolrl_nb.trainer import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = dict(steps=1, tasks_per_step=1, checkpoint_every=1, model=dict(name="tiny-random"),
            rollout=dict(group_size=2, max_action_tokens=6, max_total_tokens=560),
            env=dict(options=dict(n_tasks=12, n_turns=[1, 1], n_distractors=0)), eval=dict(n_tasks=1, max_action_tokens=4),
            diagnostics=dict(probes=False), warmup=dict(epochs=1, batch_size=2, micro_batch_size=2, max_len=600))
VERDICTS = {"reproduced", "not reproduced", "undetermined"}


def _campaign(tmp: Path) -> Path:
    (tmp / "configs" / "cpu").mkdir(parents=True)
    (tmp / "configs" / "cpu" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    warm = dict(TINY, warmup_tasks=2, run_dir=str(tmp / "runs" / "warm"))
    tr = Trainer(from_dict(TrainConfig, warm)); tr.run(); tr.log.close()
    assert pinned_checkpoint(tmp / "runs" / "warm") is not None
    spec = dict(base="configs/cpu/tiny.yaml", root="runs/findings", results="data/results/findings", warmup_run="runs/warm",
                seeds=[0, 1], eval=dict(n_tasks=1, max_action_tokens=4), overrides=dict(steps=1, warmup_tasks=0),
                reference_modes=["strict", "forced_prefix"], arm_modes={"lr_ladder/rl_lr1e-4": ["strict", "forced_prefix"]},
                lr_ladder={"rl_lr1e-4": {"grpo.lr": 1e-4}, "rl_lr1e-5": {"grpo.lr": 1e-5}})
    path = tmp / "configs" / "cpu" / "findings.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_campaign_runs_exports_and_decides(tmp_path, monkeypatch):
    path = _campaign(tmp_path)
    out = fd.run_findings({"reference": None, "lr_ladder": None}, path=path, progress=False)
    results = tmp_path / "data" / "results" / "findings"
    assert sorted(p.relative_to(results).as_posix() for p in out) == [
        "lr_ladder/method=rl_lr1e-4_seed=0", "lr_ladder/method=rl_lr1e-4_seed=1",
        "lr_ladder/method=rl_lr1e-5_seed=0", "lr_ladder/method=rl_lr1e-5_seed=1", "reference"]
    one = results / "lr_ladder" / "method=rl_lr1e-4_seed=1"
    assert {p.name for p in (one / "log").iterdir()} >= {"steps.parquet", "events.parquet", "evaluations.parquet", "actions.parquet"}
    assert not (one / "log" / "probes.parquet").exists() and (one / "config.yaml").exists()
    assert sum(f.stat().st_size for f in one.rglob("*") if f.is_file()) < 300_000          # small enough for git
    assert yaml.safe_load((one / "config.yaml").read_text())["seed"] == 1

    # a second call trains nothing: every run is exported
    built = []
    monkeypatch.setattr(fd, "sweep", lambda *a, **k: built.append(a) or (_ for _ in ()).throw(AssertionError("trained again")))
    fd.run_findings({"reference": None, "lr_ladder": None}, path=path, progress=False)
    assert built == []

    # a mode added to the campaign later is evaluated on the runs' kept checkpoints and exported again, still no training
    spec = yaml.safe_load(path.read_text())
    spec["reference_modes"].append("gold_loglik"); spec["arm_modes"]["lr_ladder/rl_lr1e-4"].append("gold_loglik")
    path.write_text(yaml.safe_dump(spec))
    again = fd.run_findings({"reference": None, "lr_ladder": None}, path=path, progress=False)
    assert built == [] and sorted(p.name for p in again) == ["method=rl_lr1e-4_seed=0", "method=rl_lr1e-4_seed=1", "reference"]
    assert fd.run_findings({"reference": None, "lr_ladder": None}, path=path, progress=False) == [results / "reference"]  # now complete
    # a redone run whose folder lacks a mode the old export had keeps it when a missing mode is completed
    run0 = next((tmp_path / "runs" / "findings" / "lr_ladder").glob("method=rl*lr1e-4_seed=0"))
    exp0 = results / "lr_ladder" / "method=rl_lr1e-4_seed=0"
    for f, drop in ((run0 / "eval_tasks.jsonl", "forced_prefix"), (exp0 / "eval_tasks.jsonl", "gold_loglik")):
        f.write_text("".join(line + "\n" for line in f.read_text().splitlines() if json.loads(line)["mode"] != drop))
    assert fd.run_findings({"lr_ladder": ["rl_lr1e-4"]}, path=path, progress=False, seeds=[0]) == [exp0] and built == []
    assert {r["mode"] for r in read_task_results(exp0 / "eval_tasks.jsonl")} == {"strict", "forced_prefix", "gold_loglik"}
    # arms start from the reference's warm-up: the checkpoint matches the reference's gold log-lik; another one stops a run
    assert fd.check_warmup(fd.campaign(path)) < 1e-4
    ref_file = results / "reference" / "eval_tasks.jsonl"; kept = ref_file.read_text()
    ref_file.write_text("".join(json.dumps(dict(r, mean_logp=r["mean_logp"] + 0.1) if r["mode"] == "gold_loglik" else r) + "\n"
                                for r in map(json.loads, kept.splitlines())))
    try: fd.run_findings({"lr_ladder": ["rl_lr1e-5"]}, path=path, progress=False, seeds=[2]); raise AssertionError("no error")
    except fd.WarmupMismatch as e: assert "runs/warm" in str(e) and "differs by up to 0.1 " in str(e)
    assert not (tmp_path / "runs" / "findings" / "lr_ladder" / ".rl_lr1e-5_seed=2.claim").exists()   # nothing trained, claim released
    ref_file.write_text(kept)

    runs = fd.load_results(results)
    assert len(runs) == 5 and {r["section"] for r in runs} == {"reference", "lr_ladder"}
    top = [r for r in runs if r["arm"] == "rl_lr1e-4"]
    assert all(set(r["outcomes"]) == {"strict", "forced_prefix"} and r["rl_steps"] == 1 for r in top)
    assert all(r["loglik"]["json"] and r["loglik"]["python"] for r in top) and all(not r["loglik"] for r in runs if r["arm"] == "rl_lr1e-5")
    # a section with its own warm-up (Q1's layout): its reference is evaluated first and its arms start from it
    warm2 = dict(TINY, warmup_tasks=2, seed=1, run_dir=str(tmp_path / "runs" / "warm2"))
    tr = Trainer(from_dict(TrainConfig, warm2)); tr.run(); tr.log.close()
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(dict(spec, section_warmups={"tags": "runs/warm2"}, tags={"five": {"grpo.lr": 1e-4}})))
    monkeypatch.undo()
    tags = fd.run_findings({"tags": None}, path=path, progress=False, seeds=[0])
    assert [p.relative_to(results).as_posix() for p in tags] == ["tags/reference", "tags/method=five_seed=0"]
    five = yaml.safe_load((results / "tags" / "method=five_seed=0" / "config.yaml").read_text())
    assert "warm2" in five["init_from"] and "warm2" in (results / "tags" / "reference" / "checkpoint.txt").read_text()

    rows = fd.findings_table(results)
    assert [r["finding"] for r in rows] == ["F1", "F2a", "F2b", "F3", "F4", "F5", "F6", "Q1", "Q2"]
    f1 = rows[0]
    assert f1["seeds_per_arm"] == [1, 2, 2] and f1["arms"] == ["reference", "lr_ladder/rl_lr1e-4", "lr_ladder/rl_lr1e-5"]
    assert f1["n_tasks"] == len(runs[-1]["outcomes"]["strict"]) > 0 and f1["p"] is not None and f1["verdict"] in VERDICTS
    assert "gold log-prob of the content tokens" in rows[2]["ours"]                     # F2b: the log-lik of the gold, split
    assert all(r["verdict"] == "undetermined" and "not run" in r["ours"] for r in rows[3:])
    assert "| F1 |" in fd.findings_markdown(rows)


def test_workers_share_a_campaign(tmp_path):
    "Two worker processes (tiny random model) on two arms x one seed: every run trained and exported exactly once, each worker's log written."
    path = _campaign(tmp_path)
    out = fd.run_workers({"lr_ladder": None}, workers=2, path=path, seeds=[0])
    assert sorted(p.name for p in out) == ["method=rl_lr1e-4_seed=0", "method=rl_lr1e-5_seed=0"]   # none twice
    logs = sorted((tmp_path / "runs" / "findings").glob("worker-*.log"))
    assert len(logs) == 2 and all("torch thread(s)" in f.read_text() for f in logs)
    assert not list((tmp_path / "runs" / "findings").rglob("*.claim"))                          # claims released
    assert fd.run_workers({"lr_ladder": None}, workers=2, path=path, seeds=[0]) == []            # all exported: nothing to do
    try: fd.run_workers({"lr_ladder": None}, workers=0, path=path); raise AssertionError("no error")
    except fd.ConfigError as e: assert "workers" in str(e)


def test_a_missing_warmup_is_trained_from_the_recipe(tmp_path):
    "A fresh machine: no warm-up run. The reference's evaluation trains it (SFT only), with the weights a full run's warm-up pins."
    import shutil, torch
    (tmp_path / "configs" / "cpu").mkdir(parents=True)
    (tmp_path / "configs" / "cpu" / "tiny.yaml").write_text(yaml.safe_dump(dict(TINY, warmup_tasks=2)))
    path = tmp_path / "configs" / "cpu" / "findings.yaml"
    path.write_text(yaml.safe_dump(dict(base="configs/cpu/tiny.yaml", root="runs/findings", results="data/results/findings",
                                        warmup_run="runs/warm", seeds=[0], eval=dict(n_tasks=1, max_action_tokens=4),
                                        overrides=dict(steps=1, warmup_tasks=0), tags={"five": {"grpo.lr": 1e-4}},
                                        section_warmups={"tags": {"run": "runs/warm5", "set": {"model.single_token_tags": False}}})))
    with fd._claim(tmp_path / "runs/findings/.reference.claim") as held:   # another worker evaluating the reference:
        assert held and fd.run_findings({"reference": None}, path=path, progress=False) == []   # the warm-up, no evaluation
    assert pinned_checkpoint(tmp_path / "runs" / "warm") and not (tmp_path / "data/results/findings/reference").exists()
    assert fd.run_findings({"reference": None}, path=path, progress=False) == [tmp_path / "data/results/findings/reference"]
    ck = pinned_checkpoint(tmp_path / "runs" / "warm"); spec = fd.campaign(path)
    assert ck is not None and fd.ensure_warmup(spec, progress=False) == ck                # trained once, then found
    assert yaml.safe_load((ck.parent.parent / "config.yaml").read_text())["steps"] == 0   # no RL steps
    with duckdb.connect(str(ck.parent.parent / "log.duckdb"), read_only=True) as db:      # and no evaluation of the test split
        assert not db.sql("select * from information_schema.tables where table_name = 'evaluations'").fetchall() \
            or db.sql("select count(*) from evaluations").fetchall() == [(0,)]
    full = Trainer(from_dict(TrainConfig, dict(TINY, warmup_tasks=2, run_dir=str(tmp_path / "full")))); full.run(); full.log.close()
    a, b = torch.load(ck / "weights.pt"), torch.load(pinned_checkpoint(tmp_path / "full") / "weights.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)              # = the warm-up of a full run
    five = fd.ensure_warmup(spec, "tags", progress=False)                                  # a section's recipe: base + `set`
    assert "warm5" in str(five) and yaml.safe_load((five.parent.parent / "config.yaml").read_text())["model"]["single_token_tags"] is False
    shutil.rmtree(five.parent)                                                             # an interrupted warm-up is named
    try: fd.ensure_warmup(spec, "tags", progress=False); raise AssertionError("no error")
    except FileNotFoundError as e: assert "section_warmups.tags" in str(e) and "remove it" in str(e)

def test_campaign_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "configs" / "cpu" / "f.yaml"; bad.parent.mkdir(parents=True)
    bad.write_text(yaml.safe_dump(dict(base="x", root="r", results="d", seeds=[0])))
    try: fd.campaign(bad); raise AssertionError("no error")
    except fd.ConfigError as e: assert "eval" in str(e)
    bad.write_text(yaml.safe_dump(dict(base="x", root="r", results="d", seeds=[0], eval={}, ladder=[1, 2])))
    try: fd.campaign(bad); raise AssertionError("no error")
    except fd.ConfigError as e: assert "ladder" in str(e)


def test_findings_command_on_committed_logs():
    "What CI runs: the table regenerated from data/results/findings without training."
    p = subprocess.run([str(Path(sys.executable).parent / "toolrl"), "findings", "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {r["finding"]: r for r in json.loads(p.stdout)["findings"]}
    assert list(rows) == ["F1", "F2a", "F2b", "F3", "F4", "F5", "F6", "Q1", "Q2"]
    assert all(r["verdict"] in VERDICTS for r in rows.values())
    committed = REPO / "data" / "results" / "findings" / "lr_ladder"
    if committed.exists():   # the table counts exactly the committed runs, each evaluated on >= 100 held-out tasks
        runs = fd.load_results()
        for arm, n in zip(rows["F1"]["arms"][1:], rows["F1"]["seeds_per_arm"][1:]):
            assert n == len(list(committed.glob(f"method={arm.split('/')[1]}_seed=*"))), (arm, n)
        assert rows["F1"]["n_tasks"] >= 100 and all(len(r["outcomes"]["strict"]) >= 100 for r in runs), rows["F1"]


def test_findings_todo_lists_the_runs_to_go():
    "`toolrl findings --todo`: the arms whose seeds are not exported yet, counted, from the committed results only."
    p = subprocess.run([str(Path(sys.executable).parent / "toolrl"), "findings", "--todo"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    todo = fd.campaign_todo()
    n = int(todo["seeds_todo"].list.len().sum())
    assert f"{n} runs to go" in p.stdout
    redo = int(todo["seeds_lacking_modes"].list.len().sum())
    assert (f"; {redo} exported runs lack a mode" in p.stdout) == (redo > 0), p.stdout[-500:]
    shown = set(todo.filter((todo["seeds_todo"].list.len() > 0) | (todo["seeds_lacking_modes"].list.len() > 0)).select("section", "arm").iter_rows())
    for section, arm in todo.select("section", "arm").iter_rows():   # a row per arm with work left, none for the others
        assert (f"| {section} | {arm} |" in p.stdout) == ((section, arm) in shown), (section, arm)


def test_restore_run_at_once_from_several_threads(tmp_path):
    "Notebooks run in parallel (CI) restore the same committed run at once: each gets the whole run, nothing is left aside."
    from concurrent.futures import ThreadPoolExecutor
    run = fd.load_results()[0]["dir"]
    dest = tmp_path / "restored" / run.name
    with ThreadPoolExecutor(4) as ex: outs = list(ex.map(lambda _: fd.restore_run(run, dest), range(8)))
    assert outs == [dest] * 8 and (dest / "config.yaml").exists() and (dest / "log.duckdb").exists()
    assert not [p for p in dest.parent.iterdir() if "partial" in p.name]
