"""Benchmark of one GRPO update on a real multi-turn batch: a group's prompt encoded once, logits only where the loss
reads them, against the full forward.

Workload: the CPU comparison preset's setting (configs/cpu/collapse.yaml: SmolLM2-135M fp32, fast lane, 72-token
action cap): 8 trajectories = 2 groups of 4 (`--distinct 1`: 8 groups of 1, the 2026-12-06 05:47 workload), each the
gold trajectory of a training task replayed through a real episode (prompt with the tool docs, calls, tool
responses; the same token layout a rollout gives; a group's 4 rows replay the same task, as its rollouts share the
prompt), fixed rewards so every advantage is nonzero. One update = `grpo_backward` with micro-batches of
`--micro-batch` (2: compare.yaml; 4: collapse.yaml) and the reference forward (k3 KL 1e-4), i.e. the work of
`Trainer.update` for one mini-batch (no optimiser step).

  shared : the current code: a micro-batch's common prompt encoded once (`shared_prefix`) + the logits window
  window : the logits window only (`shared_prefix` forced to 0)
  full   : neither (`first_needed` forced to 1 as well: the lm head at every position; the code of main at 1f81cba)
  lora   : shared, on a peft LoRA policy (`model.lora: true`: rank 16 on q/k/v/o, the base frozen) with the adapter-off
           base as the reference (`reference_policy`: no second copy of the weights); its backward computes no weight
           gradients of the base, only the input gradients through it
`--optimizer` adds the AdamW step over the trainable parameters to each timed update (LoRA's other saving: no Adam
state for the base); the loss/gradient checks then compare updates taken after one warm-up step (not exact).

Each measurement is a fresh worker process (its own peak RSS), variants alternating shared, window, full, shared, ...;
one untimed warm-up update per worker. Checks that both give the same loss and gradient norm (exact change).

Efficiency (issue 17: the training forward + backward at >= 60 % of the fp32 matmul peak): each worker counts the
FLOPs of what its variant computes, micro-batch by micro-batch, padded columns included: the linear layers
(2 x their weights per column encoded: a shared prompt once, the rest per row), attention (QK^T and AV, counted
causally: each column against the keys before it, as SDPA's causal kernel computes; a padded batch's masked kernel
does up to twice that, so this is a lower bound of the work done), the lm head on the logits window; the policy pass forward + backward (3x its forward), the
reference pass forward only. It divides by the update's seconds and by the 2048^3 fp32 `mm` rate measured in the same
worker at the same threads (the median of 5).
Writes bench/results/update_bench_<timestamp>.json.

    .venv/bin/python bench/update_bench.py --repeats 3 --threads 2 --micro-batch 2
"""
import argparse, dataclasses, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def computed_flops(c, batch, mbs: int, share: bool, window: bool, lora: bool = False) -> float:
    "FLOPs of one update (policy forward + backward, reference forward) as `token_logps` runs it on config `c`."
    from toolrl_nb.grpo import first_needed, shared_prefix
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    h, q, kvh = c.hidden_size, c.num_attention_heads * hd, c.num_key_value_heads * hd
    per_col = c.num_hidden_layers * 2 * (2 * h * q + 2 * h * kvh + 3 * h * c.intermediate_size)  # q, o, k, v, mlp
    total = 0.0
    for s in range(0, len(batch["input_ids"]), mbs):
        ids, am, lm = (batch[k][s:s + mbs] for k in ("input_ids", "attention_mask", "loss_mask"))
        B, T = ids.shape
        first = first_needed(lm) if window else 1
        P = shared_prefix(ids, am, first - 1) if share else 0
        P = P if P >= 32 else 0
        cols = P + B * (T - P)                                              # columns the transformer encodes
        attn = c.num_hidden_layers * 4 * q * (P * P + B * (T * T - P * P)) / 2   # QK^T and AV, causal: column j sees j keys
        head = 2 * h * c.vocab_size * B * (T - first + 1)                   # lm head on the window
        if lora: total += 3 * (per_col * cols + head) + 4 * attn           # frozen linears: no weight gradient (fwd + dX + ref)
        else: total += 4 * (per_col * cols + attn + head)                   # policy 3x (fwd + bwd) + reference 1x
    return total


def matmul_gflops(repeats: int = 5) -> float:
    import torch
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048); a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    return 2 * 2048 ** 3 / statistics.median(ts) / 1e9


def worker(variant: str, threads: int, mbs: int, distinct: int, optimizer: bool = False) -> dict:
    import torch
    torch.set_num_threads(threads)
    from toolrl_nb import grpo
    from toolrl_nb.config import load_config
    from toolrl_nb.models import load_policy, reference_policy
    from toolrl_nb.rollout import collate
    from toolrl_nb.supervision import gold_trajectory
    from toolrl_nb.trainer import TrainConfig, make_env
    if variant in ("window", "full"): grpo.shared_prefix = lambda *a: 0      # no prompt sharing
    if variant == "full": grpo.first_needed = lambda loss_mask: 1          # the pre-window behaviour
    cfg = load_config(TrainConfig, ROOT / "configs/cpu/collapse.yaml")
    model, tok = load_policy(dataclasses.replace(cfg.model, lora=variant == "lora"))
    env = make_env(cfg.env)
    tasks = [t for t in env.tasks(cfg.env.train_split)[:8 // (4 // distinct)] for _ in range(4 // distinct)]
    trajs = [gold_trajectory(tok, env, t, cfg=cfg.rollout, group=i // 4, rollout_idx=i % 4) for i, t in enumerate(tasks)]
    batch = collate(trajs, tok.pad_token_id)
    batch["rewards"] = torch.tensor([1.0, 0.0, 0.0, 1.0] * 2)
    ref = reference_policy(model) if variant == "lora" else load_policy(cfg.model)[0].eval()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4) if optimizer else None
    gcfg = grpo.GRPOConfig(lr=1e-4, kl_coef=1e-4, temperature=0.7)
    model.train()

    def once():
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        st = grpo.grpo_backward(model, batch, gcfg, ref_model=ref, micro_batch_size=mbs)
        if opt is not None: opt.step()
        dt = time.perf_counter() - t                                        # the gradient norm below is untimed
        gn = float(torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])))
        return dt, st, gn
    once()                                                                  # warm-up
    dt, st, gn = once()
    am, lm = batch["attention_mask"], batch["loss_mask"]
    flops = computed_flops(model.config, batch, mbs, variant in ("shared", "lora"), variant != "full", lora=variant == "lora")
    peak = matmul_gflops()
    return dict(variant=variant, seconds=dt, gflop=flops / 1e9, gflops_per_s=flops / dt / 1e9, matmul_peak_gflops=peak,
                share_of_peak=flops / dt / 1e9 / peak, loss=st["loss"], optimizer=optimizer,
                trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad), grad_norm=gn, t_ref=st["t_ref"],
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                tokens=int(am.sum()), loss_tokens=int(lm.sum()), shape=list(am.shape),
                first_sampled=[int(r.nonzero()[0]) for r in lm])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--distinct", type=int, default=1, help="distinct tasks per group of 4 (1: a rollout group; 4: 8 different tasks)")
    ap.add_argument("--variants", default="shared,window,full")
    ap.add_argument("--optimizer", action="store_true", help="time the AdamW step too")
    ap.add_argument("--worker", default="")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.threads, a.micro_batch, a.distinct, a.optimizer))); return
    variants = a.variants.split(",")
    runs = []
    for i in range(a.repeats):
        for v in variants:
            load = os.getloadavg()[0]
            out = subprocess.run([sys.executable, __file__, "--worker", v, "--threads", str(a.threads),
                                  "--micro-batch", str(a.micro_batch), "--distinct", str(a.distinct)] + ["--optimizer"] * a.optimizer,
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1]); r["load_before"] = round(load, 2); runs.append(r)
            print(f"{v:>6}: {r['seconds']:.2f} s  {r['gflop']:.0f} GFLOP at {r['share_of_peak']:.0%} of {r['matmul_peak_gflops']:.0f} GFLOP/s  "
                  f"peak {r['peak_rss_mb']:.0f} MB  loss {r['loss']:.6f}  "
                  f"grad_norm {r['grad_norm']:.6f}  load {load:.2f}", flush=True)
    med = {v: statistics.median(r["seconds"] for r in runs if r["variant"] == v) for v in variants}
    mem = {v: statistics.median(r["peak_rss_mb"] for r in runs if r["variant"] == v) for v in variants}
    first = {v: next(r for r in runs if r["variant"] == v) for v in variants}
    base, w = first[variants[-1]], first[variants[0]]                  # the last variant is the baseline
    eff = {v: statistics.median(r["share_of_peak"] for r in runs if r["variant"] == v) for v in variants}
    summary = dict(median_s=med, median_share_of_matmul_peak=eff, gflop={v: first[v]["gflop"] for v in variants}, **{f"ratio_{variants[-1]}_over_{v}": med[variants[-1]] / med[v] for v in variants[:-1]},
                   median_peak_rss_mb=mem, micro_batch=a.micro_batch, optimizer=a.optimizer, distinct_tasks_per_group=a.distinct,
                   loss_abs_diff={v: abs(first[v]["loss"] - base["loss"]) for v in variants[:-1]},
                   grad_norm_rel_diff={v: abs(first[v]["grad_norm"] - base["grad_norm"]) / base["grad_norm"] for v in variants[:-1]},
                   batch=dict(shape=w["shape"], tokens=w["tokens"], loss_tokens=w["loss_tokens"], first_sampled=w["first_sampled"]))
    print(json.dumps(summary, indent=1))
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), threads=a.threads,
                python=platform.python_version(), when=time.strftime("%Y-%m-%d %H:%M:%S"))
    dest = ROOT / "bench" / "results" / f"update_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    dest.write_text(json.dumps(dict(meta=meta, summary=summary, runs=runs), indent=1))
    print(dest.relative_to(ROOT))


if __name__ == "__main__": main()
