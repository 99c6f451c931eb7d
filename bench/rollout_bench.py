"""Benchmark of `toolrl_nb.rollout`: KV-cache reuse across turns vs re-encoding the context before every action.

Fixed workload: fast-lane tasks with 3 user turns (at most `--max-actions` actions per trajectory), G = 8, seeded
sampling at T = 1, CPU. One process loads the model once, does one small warm-up rollout per mode, then runs the
modes INTERLEAVED (reuse, reencode, reuse, reencode, ...) `--repeats` times, so a shared machine's load hits both
alike; medians and the ratio of medians are reported. Every `RaggedKV.feed` call is timed, which splits a rollout
into: the first context feed (the prompts), later context feeds (observations, or whole contexts when re-encoding)
and one-token decode feeds.

`--candidate PATH` adds a mode "candidate": the `rollout` of a modified copy of toolrl_nb/rollout.py (absolute
imports), run with reuse_cache=True, to measure a proposed change against the current code in the same process.

Peak RSS is the process's (all modes share one process). Writes bench/results/rollout_bench_<timestamp>.json.

    .venv/bin/python bench/rollout_bench.py                       # SmolLM2 if it can be loaded, else the tiny model
    .venv/bin/python bench/rollout_bench.py --model tiny-random --repeats 3
    .venv/bin/python bench/rollout_bench.py --candidate /tmp/rollout_proto.py
"""
import argparse, hashlib, importlib.util, json, os, platform, resource, statistics, sys, time
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


def instrument(mod, log):
    "Time every RaggedKV.feed of module `mod` into `log` (R rows, W columns, L cached columns, real tokens, seconds)."
    orig = mod.RaggedKV.feed
    if getattr(orig, "_bench", False): return
    def feed(self, chunks, all_logits=False):
        L, lens = self.mask.shape[1], [len(chunks.get(r, ())) for r in self.rows]
        t0 = time.perf_counter(); out = orig(self, chunks, all_logits)
        log.append(dict(R=len(self.rows), W=max(lens, default=0), L=L, real=sum(lens), s=time.perf_counter() - t0))
        return out
    feed._bench = True
    mod.RaggedKV.feed = feed


def breakdown(log):
    ctx = [x for x in log if x["W"] > 1 or x["L"] == 0]
    dec = [x for x in log if not (x["W"] > 1 or x["L"] == 0)]
    first = ctx[0] if ctx else dict(s=0.0, R=0, W=0, real=0)
    return dict(first_feed_s=first["s"], first_feed_rows_x_cols=[first["R"], first["W"]], first_feed_real=first["real"],
                later_context_s=sum(x["s"] for x in ctx[1:]), later_context_real=sum(x["real"] for x in ctx[1:]),
                later_context_padded=sum(x["R"] * x["W"] for x in ctx[1:]),
                decode_s=sum(x["s"] for x in dec), decode_steps=len(dec),
                decode_mean_cached_cols=statistics.mean(x["L"] for x in dec) if dec else 0,
                feed_total_s=sum(x["s"] for x in log))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="auto", help="auto | smollm2-135m | tiny-random | a checkpoint folder")
    p.add_argument("--tasks", type=int, default=1); p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-action-tokens", type=int, default=16); p.add_argument("--max-actions", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3); p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", default="reuse,reencode", help="comma list of reuse, reencode (and candidate)")
    p.add_argument("--candidate", help="path of a modified rollout.py copy: adds mode 'candidate' (reuse_cache=True)")
    args = p.parse_args()
    import torch
    import toolrl_nb.rollout as cur
    if args.threads: torch.set_num_threads(args.threads)
    name, model, tok = load(args.model)
    env, tasks, cfg = workload(args)
    impls = {"reuse": (cur, True), "reencode": (cur, False)}
    if args.candidate:
        spec = importlib.util.spec_from_file_location("rollout_candidate", args.candidate)
        cand = importlib.util.module_from_spec(spec); sys.modules[spec.name] = cand; spec.loader.exec_module(cand)
        impls["candidate"] = (cand, True)
    modes = [m for m in args.modes.split(",") if m in impls] + (["candidate"] if args.candidate and "candidate" not in args.modes else [])
    log = []
    for m in modes:
        mod, reuse = impls[m]; instrument(mod, log)
        mod.rollout(model, tok, env, tasks[:1], type(cfg)(**{**cfg.__dict__, "group_size": 2, "max_action_tokens": 4,
                                                            "reuse_cache": reuse}))   # warm-up
    res = {m: dict(runs=[]) for m in modes}
    for rep in range(args.repeats):
        for m in modes:                                   # interleaved: A B A B ...
            mod, reuse = impls[m]
            c = type(cfg)(**{**cfg.__dict__, "reuse_cache": reuse})
            log.clear()
            t0 = time.perf_counter(); trajs = mod.rollout(model, tok, env, tasks, c); dt = time.perf_counter() - t0
            n = sum(t.n_sampled for t in trajs)
            r = dict(seconds=dt, sampled_tokens=n, tokens_per_s=n / dt, actions=sum(len(t.actions) for t in trajs),
                     total_tokens=sum(len(t.ids) for t in trajs), load1=os.getloadavg()[0], **breakdown(log))
            res[m]["runs"].append(r)
            res[m]["ids_sha1"] = hashlib.sha1(json.dumps([t.ids for t in trajs]).encode()).hexdigest()[:12]
            res[m]["mean_actions_per_traj"] = r["actions"] / len(trajs)
            print(f"rep {rep} {m:9s} {dt:7.2f} s  first feed {r['first_feed_s']:.2f} s, later context "
                  f"{r['later_context_s']:.2f} s, decode {r['decode_s']:.2f} s ({r['decode_steps']} steps)  "
                  f"load {r['load1']:.1f}", flush=True)
    for m, r in res.items():
        for k in ("seconds", "tokens_per_s", "first_feed_s", "later_context_s", "decode_s"):
            r[f"median_{k}"] = statistics.median(x[k] for x in r["runs"])
        print(f"{m:9s} {name}: median {r['median_seconds']:.2f} s/batch ({r['median_tokens_per_s']:.2f} sampled tok/s; "
              f"first feed {r['median_first_feed_s']:.2f}, later context {r['median_later_context_s']:.2f}, decode "
              f"{r['median_decode_s']:.2f}), runs {[round(x['seconds'], 2) for x in r['runs']]}, ids {r['ids_sha1']}")
    ratios = {}
    if "reuse" in res and "reencode" in res:
        ratios["reencode_over_reuse"] = res["reencode"]["median_seconds"] / res["reuse"]["median_seconds"]
    if "candidate" in res:
        for m in ("reuse", "reencode"):
            if m in res: ratios[f"{m}_over_candidate"] = res[m]["median_seconds"] / res["candidate"]["median_seconds"]
    ids = {m: r["ids_sha1"] for m, r in res.items()}
    loads = [x["load1"] for r in res.values() for x in r["runs"]]
    print(f"speed-ups (ratio of medians): {', '.join(f'{k} {v:.2f}x' for k, v in ratios.items())}; "
          f"identical samples across modes: {len(set(ids.values())) == 1}")
    print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (whole process)")
    out = dict(workload=dict(vars(args), env="fastlane n_turns=(3,3)", temperature=1.0, seed=0, model_resolved=name,
                             order="one process, warm-up per mode, then modes interleaved per repeat"),
               results=res, ratios=ratios, identical_samples=len(set(ids.values())) == 1,
               loadavg_1m_during=dict(min=min(loads), median=statistics.median(loads), max=max(loads)),
               peak_rss_mb_process=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               threads=torch.get_num_threads(), cpu_count=os.cpu_count(), machine=platform.platform(),
               when=time.strftime("%Y-%m-%dT%H:%M:%S"))
    path = Path(__file__).parent / "results" / f"rollout_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.parent.mkdir(exist_ok=True); path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__": main()
