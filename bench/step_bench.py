"""One whole RL step of the CPU comparison preset: this checkout against an older commit (default 1f81cba, issue 17's
baseline), interleaved in one invocation.

Workload (the same in both): SmolLM2-135M-Instruct fp32 on CPU with the tool tags in five pieces (1f81cba knows no
other form; `model.single_token_tags: false` here), the fast lane as in configs/cpu/collapse.yaml (1-2 turns, one call
each, one distractor class, at most 6 actions), 2 tasks x 4 rollouts per step at T = 0.7, 72 tokens per action and
2304 per trajectory, vanilla GRPO (LR 1e-4, k3 KL 1e-4) with micro-batches of 2 (the findings campaign's), seed 0, no
warm-up (the base model: its actions mostly run to the cap, so sampling is at its heaviest). One step = what
`Trainer.run` does per RL step: `rl_step()` (sample, score, reference forward, update, log) and, where it exists, the
probe bank's reading (`read_bank`). Each worker is a fresh process (the baseline's from a `git worktree` of the old
commit on PYTHONPATH) that builds the trainer untimed and times `--steps` RL steps; variants alternate
new, old, new, old ... so both see the same load. Tokens per step are reported: the two versions' tasks and samples
are not identical (the fast lane's split changed since), so time per sampled token is given beside time per step.

`--variants new,packed` compares this checkout with itself sampling through `packed_linears` (`rollout.packed_linears:
true`: oneDNN-prepacked weights for the decode; the same samples up to float rounding), no baseline worktree.

    .venv/bin/python bench/step_bench.py --repeats 3 --steps 2 --threads 1
    .venv/bin/python bench/step_bench.py --variants new,packed --repeats 2 --steps 2 --threads 1
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = dict(seed=0, steps=100, tasks_per_step=2, micro_batch_size=2, checkpoint_every=100, warmup_tasks=0,
              model=dict(name="smollm2-135m"),
              env=dict(name="fastlane", options=dict(seed=0, n_tasks=100, n_turns=[1, 2], calls_per_turn=[1, 1], n_distractors=1,
                                                   limits=dict(max_actions=6, max_actions_per_turn=3))),
              rollout=dict(group_size=4, temperature=0.7, max_action_tokens=72, max_total_tokens=2304),
              grpo=dict(lr=1e-4, warmup_steps=0, kl_coef=1e-4), eval=dict(n_tasks=1, max_action_tokens=8, at_start=False))


def worker(variant: str, steps: int, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    from toolrl_nb.config import from_dict
    from toolrl_nb import trainer as T
    cfg = json.loads(json.dumps(CONFIG))
    if "single_token_tags" in T.ModelConfig.__dataclass_fields__: cfg["model"]["single_token_tags"] = False
    if variant == "packed": cfg["rollout"]["packed_linears"] = True
    if "zero_advantage" in T.GRPOConfig.__dataclass_fields__: cfg["grpo"].update(mini_batches=1, zero_advantage="update")
    cfg["run_dir"] = tempfile.mkdtemp(prefix=f"step_bench_{variant}_")
    tr = T.Trainer(from_dict(T.TrainConfig, cfg), progress=False)
    read_bank = getattr(T, "read_bank", None)
    if read_bank: read_bank(tr)                      # the pre-RL reading, as in `run` (untimed)
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        row = tr.rl_step()
        if read_bank: read_bank(tr)
        out.append(dict(s=time.perf_counter() - t0, n_tokens=int(row.get("n_tokens") or 0), reward=float(row["reward_mean"]),
                        **{k: float(row[k]) for k in ("t_sample", "t_env", "t_ref", "t_update") if row.get(k) is not None}))
    tr.close()
    return dict(variant=variant, steps=out, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                load1=os.getloadavg()[0], torch=torch.__version__, code=T.__file__)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3); ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1); ap.add_argument("--baseline", default="1f81cba")
    ap.add_argument("--variants", default="new,old", help="of new (this checkout), old (--baseline), packed (new + packed_linears)")
    ap.add_argument("--worker", default="")
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.steps, a.threads))); return
    variants = a.variants.split(",")
    if bad := [v for v in variants if v not in ("new", "old", "packed")]: ap.error(f"unknown variant {bad[0]!r}")
    old = Path(tempfile.mkdtemp(prefix="step_bench_wt_")) / a.baseline
    if "old" in variants:
        subprocess.run(["git", "worktree", "add", "--detach", str(old), a.baseline], cwd=ROOT, check=True, capture_output=True)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    try:
        res = {v: [] for v in variants}
        for i in range(a.repeats):
            for v, path in ((v, old if v == "old" else ROOT) for v in variants):
                env = dict(os.environ, PYTHONPATH=str(path), OMP_NUM_THREADS=str(a.threads))
                p = subprocess.run([sys.executable, __file__, "--worker", v, "--steps", str(a.steps), "--threads", str(a.threads)],
                                   cwd=path, env=env, capture_output=True, text=True)
                line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
                if not line: sys.exit(f"{v} worker failed:\n{p.stderr[-3000:]}")
                r = json.loads(line[0][7:]); res[v].append(r)
                print(f"{v} #{i}: " + ", ".join(f"{s['s']:.1f} s ({s['n_tokens']} tok)" for s in r["steps"]) +
                      f"  peak {r['peak_rss_mb']:.0f} MB  load {r['load1']:.2f}", flush=True)
    finally:
        if "old" in variants: subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    med = {v: statistics.median(s["s"] for r in rs for s in r["steps"]) for v, rs in res.items()}
    per_tok = {v: statistics.median(s["s"] / max(s["n_tokens"], 1) * 1000 for r in rs for s in r["steps"]) for v, rs in res.items()}
    out = dict(workload=CONFIG, baseline=a.baseline, this=rev, threads=a.threads, steps_per_worker=a.steps, repeats=a.repeats,
               machine=dict(cpus=os.cpu_count(), platform=platform.platform()), runs=res,
               median_step_s=med, median_ms_per_token=per_tok)
    if "old" in med: out.update(ratio_old_over_new=med["old"] / med["new"], ratio_per_token=per_tok["old"] / per_tok["new"])
    if "packed" in med: out.update(ratio_new_over_packed=med["new"] / med["packed"], ratio_per_token_packed=per_tok["new"] / per_tok["packed"],
                                   pair_ratios_packed=[a["steps"][j]["s"] / b["steps"][j]["s"] for a, b in zip(res["new"], res["packed"])
                                                       for j in range(len(a["steps"]))])
    print(json.dumps({k: v for k, v in out.items() if k.startswith(("median", "ratio", "pair"))}, indent=1))
    dest = ROOT / "bench" / "results" / f"step_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    dest.write_text(json.dumps(out, indent=1)); print("wrote", dest)


if __name__ == "__main__":
    main()
