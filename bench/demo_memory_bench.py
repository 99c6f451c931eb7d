"""Peak memory and wall time of the README's main job (`configs/demo.yaml`) at several micro-batch sizes.

Workload: `configs/demo.yaml` (SmolLM2-135M, CPU fp32, SFT warm-up on fast-lane gold conversations, then GRPO) with a
smaller budget (`--steps` RL steps, `--warmup-tasks` gold conversations, `--eval-tasks`), the SFT warm-up's and the RL
update's micro-batch both set to each value of `--mbs`. Gradient accumulation makes the update the same whatever the
micro-batch; only memory and time change. Each run is a fresh `toolrl train` process (its own peak RSS, read with
`os.wait4`), the variants interleaved (A B A B ...) so that machine load hits both alike. Prints a table and writes
bench/results/demo_memory_bench_<timestamp>.json.

    .venv/bin/python bench/demo_memory_bench.py                      # micro-batch 4 vs 2, 2 repeats each
    .venv/bin/python bench/demo_memory_bench.py --mbs 4 2 1 --repeats 3
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_once(mbs: int, args, run_dir: Path) -> dict:
    sets = [f"run_dir={run_dir}", f"steps={args.steps}", f"warmup_tasks={args.warmup_tasks}", f"eval.n_tasks={args.eval_tasks}",
            f"micro_batch_size={mbs}", f"warmup.micro_batch_size={mbs}"]
    cmd = [str(BIN / "toolrl"), "train", str(ROOT / "configs" / "demo.yaml")] + [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0: raise RuntimeError(f"micro-batch {mbs} failed:\n{err[-3000:]}")
    return dict(mbs=mbs, wall_s=round(wall, 1), peak_rss_gb=round(usage.ru_maxrss / 1024**2, 2),
                load_1min=round(os.getloadavg()[0], 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mbs", type=int, nargs="+", default=[4, 2], help="micro-batch sizes (the first is the baseline)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="RL steps per run")
    ap.add_argument("--warmup-tasks", type=int, default=16, help="gold conversations in the SFT warm-up")
    ap.add_argument("--eval-tasks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS) of each run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for m in args.mbs:
                rows.append(run_once(m, args, Path(tmp) / f"mbs{m}_{r}") | dict(repeat=r))
                print(rows[-1], flush=True)
    med = {m: {k: statistics.median(x[k] for x in rows if x["mbs"] == m) for k in ("wall_s", "peak_rss_gb")} for m in args.mbs}
    base = med[args.mbs[0]]
    print(f"\n| micro-batch | median wall (s) | median peak RSS (GB) | wall / baseline | peak RSS / baseline |\n|---|---|---|---|---|")
    for m in args.mbs:
        print(f"| {m} | {med[m]['wall_s']:.0f} | {med[m]['peak_rss_gb']:.2f} | {med[m]['wall_s'] / base['wall_s']:.2f} | "
              f"{med[m]['peak_rss_gb'] / base['peak_rss_gb']:.2f} |")
    out = ROOT / "bench" / "results" / f"demo_memory_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.write_text(json.dumps(dict(args=vars(args), machine=dict(cpus=os.cpu_count(), python=platform.python_version(),
                                                                  platform=platform.platform()), runs=rows, medians=med), indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
