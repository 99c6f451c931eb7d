"""Benchmark of `toolrl_nb.rollout`: KV-cache reuse across turns vs re-encoding the context before every action.

Fixed workload: fast-lane tasks with 3 user turns (at most `--max-actions` actions per trajectory), G = 8, seeded
sampling at T = 1, CPU. Each mode runs in its own subprocess (so peak RSS is per mode): one warm-up rollout, then
`--repeats` timed rollouts; medians are reported. Writes bench/results/rollout_bench_<timestamp>.json.

    .venv/bin/python bench/rollout_bench.py                 # SmolLM2 if it can be loaded, else the tiny model
    .venv/bin/python bench/rollout_bench.py --model tiny-random --repeats 3
"""
import argparse, hashlib, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

def workload(args):
    from toolrl_nb.envs import EnvLimits
    from toolrl_nb.fastlane import FastLaneEnv
    from toolrl_nb.rollout import RolloutConfig
    env = FastLaneEnv(seed=0, n_turns=(3, 3), limits=EnvLimits(max_actions=args.max_actions))
    tasks = env.tasks("train")[:args.tasks]
    cfg = RolloutConfig(group_size=args.group_size, max_action_tokens=args.max_action_tokens, seed=0, temperature=1.0)
    return env, tasks, cfg

def load(name):
    from toolrl_nb.models import load_policy
    if name == "auto":
        try: return ("smollm2-135m",) + tuple(load_policy("smollm2-135m"))
        except Exception as e: print(f"SmolLM2 unavailable ({type(e).__name__}: {e}); using tiny-random", file=sys.stderr)
        name = "tiny-random"
    return (name,) + tuple(load_policy(name))

def child(args):
    "Run one mode; print one JSON line."
    import torch
    from toolrl_nb.rollout import rollout
    if args.threads: torch.set_num_threads(args.threads)
    name, model, tok = load(args.model)
    env, tasks, cfg = workload(args)
    cfg.reuse_cache = args.mode == "reuse"
    rollout(model, tok, env, tasks[:1], type(cfg)(**{**cfg.__dict__, "group_size": 2, "max_action_tokens": 4}))  # warm-up
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter(); trajs = rollout(model, tok, env, tasks, cfg); dt = time.perf_counter() - t0
        n = sum(t.n_sampled for t in trajs)
        runs.append(dict(seconds=dt, sampled_tokens=n, tokens_per_s=n / dt, actions=sum(len(t.actions) for t in trajs),
                         total_tokens=sum(len(t.ids) for t in trajs)))
    digest = hashlib.sha1(json.dumps([t.ids for t in trajs]).encode()).hexdigest()[:12]
    print(json.dumps(dict(mode=args.mode, model=name, threads=torch.get_num_threads(), runs=runs, ids_sha1=digest,
                          mean_actions_per_traj=runs[-1]["actions"] / len(trajs),
                          peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="auto", help="auto | smollm2-135m | tiny-random | a checkpoint folder")
    p.add_argument("--tasks", type=int, default=1); p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-action-tokens", type=int, default=16); p.add_argument("--max-actions", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3); p.add_argument("--threads", type=int, default=0)
    p.add_argument("--mode", choices=["reuse", "reencode"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode: return child(args)
    res = {}
    for mode in ("reuse", "reencode"):
        cmd = [sys.executable, __file__, "--mode", mode] + [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                                                            if k != "mode"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode: sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        res[mode] = r = json.loads(out.stdout.strip().splitlines()[-1])
        r["median_seconds"] = statistics.median(x["seconds"] for x in r["runs"])
        r["median_tokens_per_s"] = statistics.median(x["tokens_per_s"] for x in r["runs"])
        print(f"{mode:9s} {r['model']}: median {r['median_seconds']:.2f} s/batch, {r['median_tokens_per_s']:.1f} sampled tok/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB, {r['mean_actions_per_traj']:.1f} actions/traj, runs "
              f"{[round(x['seconds'], 2) for x in r['runs']]}")
    ratio = res["reencode"]["median_seconds"] / res["reuse"]["median_seconds"]
    same = res["reuse"]["ids_sha1"] == res["reencode"]["ids_sha1"]
    print(f"cache reuse speed-up: {ratio:.2f}x (target >= 1.5x); identical samples in both modes: {same}")
    load1 = os.getloadavg()[0]
    print(f"note: load average {load1:.1f} on {os.cpu_count()} cores (shared machine: timings are noisy)")
    out = dict(workload=dict(vars(args), env="fastlane n_turns=(3,3)", temperature=1.0, seed=0), results=res,
               speedup=ratio, identical_samples=same, loadavg_1m=load1, cpu_count=os.cpu_count(),
               machine=platform.platform(), when=time.strftime("%Y-%m-%dT%H:%M:%S"))
    path = Path(__file__).parent / "results" / f"rollout_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.parent.mkdir(exist_ok=True); path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")

if __name__ == "__main__": main()
