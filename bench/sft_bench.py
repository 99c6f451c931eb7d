"""One SFT warm-up step: the lm head from the first target position on (`sft_loss` now) vs at every position (before).

Workload: SmolLM2-135M-Instruct fp32 with the collapse preset's model settings (configs/cpu/collapse.yaml: single-token
tool tags), the gold conversations of the first 8 fast-lane training tasks in the JSON call format (`gold_trajectories` +
`conversation_example`, the warm-up's data), one optimiser step of `sft_train` (batch 8, micro-batches of `--micro-batch`, AdamW).

  window : `sft_loss` as it is (logits_to_keep from the micro-batch's first target position)
  full   : the previous `sft_loss` (logits at every position), patched in

Each measurement is a fresh worker process (its own peak RSS), variants alternating, one untimed warm-up step per
worker; the loss of the step is reported so the two can be compared (the change is exact).

    .venv/bin/python bench/sft_bench.py --repeats 3 --threads 2 --micro-batch 2
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(variant: str, threads: int, mbs: int) -> dict:
    import torch, torch.nn.functional as F
    torch.set_num_threads(threads)
    from toolrl_nb import sft
    from toolrl_nb.config import load_config
    from toolrl_nb.models import load_policy
    from toolrl_nb.trainer import TrainConfig, make_env
    if variant == "full":
        def full_loss(model, batch, n_tokens=None):
            ids, att, lm = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1]
            m = lm[:, 1:].bool() & att[:, 1:].bool()
            sel, tgt = logits[m].float(), ids[:, 1:][m]
            nll = F.cross_entropy(sel, tgt, reduction="sum"); n = int(m.sum())
            s = float(nll.detach())
            return nll / (n_tokens or max(n, 1)), {"loss": s / max(n, 1), "n_tokens": n, "accuracy": 0.0, "nll_sum": s, "n_correct": 0}
        sft.sft_loss = full_loss
    cfg = load_config(TrainConfig, ROOT / "configs/cpu/collapse.yaml")
    model, tok = load_policy(cfg.model)
    env = make_env(cfg.env)
    gold = sft.gold_trajectories(env, env.tasks(cfg.env.train_split)[:8], strict=True)
    exs = [sft.conversation_example(tok, m, task_id=t.id) for t, m in gold]
    scfg = sft.SFTConfig(lr=1e-5, epochs=1, batch_size=8, micro_batch_size=mbs, max_len=1536, warmup_ratio=0.0)
    sft.sft_train(model, exs, scfg, progress=False, pad_id=tok.pad_token_id)            # warm-up step
    t = time.perf_counter(); hist = sft.sft_train(model, exs, scfg, progress=False, pad_id=tok.pad_token_id); dt = time.perf_counter() - t
    return dict(variant=variant, seconds=dt, loss=hist[0]["loss"], n_tokens=hist[0]["n_tokens"],
                tokens=sum(len(e.input_ids) for e in exs), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--micro-batch", type=int, default=2); ap.add_argument("--worker")
    args = ap.parse_args()
    if args.worker:
        print("@@" + json.dumps(worker(args.worker, args.threads, args.micro_batch))); return
    runs = []
    for rep in range(args.repeats):
        for v in ("window", "full"):
            out = subprocess.run([sys.executable, __file__, "--worker", v, "--threads", str(args.threads), "--micro-batch", str(args.micro_batch)],
                                 capture_output=True, text=True, cwd=ROOT)
            line = [l for l in out.stdout.splitlines() if l.startswith("@@")]
            if not line: sys.exit(out.stderr[-3000:])
            runs.append(dict(json.loads(line[0][2:]), rep=rep, load=os.getloadavg()[0])); print(runs[-1], flush=True)
    med = {v: statistics.median(r["seconds"] for r in runs if r["variant"] == v) for v in ("window", "full")}
    rss = {v: statistics.median(r["peak_rss_mb"] for r in runs if r["variant"] == v) for v in ("window", "full")}
    res = dict(machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=args.threads),
               micro_batch=args.micro_batch, median_s=med, ratio=med["full"] / med["window"], peak_rss_mb=rss, runs=runs)
    path = ROOT / "bench" / "results" / f"sft_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1)); print(json.dumps({k: res[k] for k in ("median_s", "ratio", "peak_rss_mb")}), f"\nwrote {path}")


if __name__ == "__main__":
    main()
