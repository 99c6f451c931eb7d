"""Decode speed of the rollout's KV cache against the machine's bounds (issue 17).

Workload: SmolLM2-135M-Instruct fp32 (`load_policy("smollm2-135m")`), `RaggedKV` as the rollout uses it: R rows each
prefilled with an L-token context (random ids, every row distinct), then `--steps` decode feeds of one token per row
(the explicit ragged attention mask, position ids, logits at the last column only: exactly `rollout`'s decode loop
without the sampling). Time per decode step, median over the steps; repeats interleaved across variants.

  concat      : HF's `DynamicCache` (every append concatenates: the whole cache is copied each step)
  preallocate : `GrowingLayer` (the current default): appends write into a buffer with spare room

Bounds, measured in the same invocation with the same threads:
  weight-read bound = bytes of the weights / read bandwidth (`sum` over a buffer as large as the weights)
  matmul bound      = 2 x parameters x R FLOP per step / fp32 matmul peak (2048^3 `mm`)
A step's share of a bound = bound / measured step time (1.0 = at the bound). Attention over the cache is extra work
on top of either bound (reported as the KV bytes a step reads).

    .venv/bin/python bench/decode_bench.py --threads 2 --repeats 3
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent


def bounds(nbytes: int, repeats: int = 7) -> dict:
    buf = torch.ones(nbytes // 4)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    def med(f):
        f(); ts = []
        for _ in range(repeats):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return statistics.median(ts)
    dst = torch.empty_like(buf)
    t_read, t_copy, t_mm = med(lambda: buf.sum()), med(lambda: dst.copy_(buf)), med(lambda: a @ b)
    return dict(read_GBps=nbytes / t_read / 1e9, copy_GBps=2 * nbytes / t_copy / 1e9, matmul_GFLOPs=2 * 2048 ** 3 / t_mm / 1e9)


def decode_step_seconds(model, rows: int, ctx: int, steps: int, preallocate: bool, seed: int = 0) -> float:
    from toolrl_nb.rollout import RaggedKV
    g = torch.Generator().manual_seed(seed)
    kv = RaggedKV(model, list(range(rows)), pad_id=2, preallocate=preallocate)
    kv.feed({r: torch.randint(3, 40000, (ctx,), generator=g).tolist() for r in range(rows)})
    ts = []
    for _ in range(steps):
        tok = torch.randint(3, 40000, (rows,), generator=g).tolist()
        t = time.perf_counter(); kv.feed({r: [tok[r]] for r in range(rows)}); ts.append(time.perf_counter() - t)
    return statistics.median(ts[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2); ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=17); ap.add_argument("--rows", default="8,32"); ap.add_argument("--ctx", default="500,1500")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from toolrl_nb.models import load_policy
    model = load_policy("smollm2-135m")[0].eval()
    n_params = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    c = model.config
    kv_per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4
    cases = [(r, L) for r in map(int, args.rows.split(",")) for L in map(int, args.ctx.split(","))]
    runs, bnds = [], []
    with torch.no_grad():
        for rep in range(args.repeats):
            bnds.append(bounds(nbytes))
            for r, L in cases:
                for pre in (False, True):
                    s = decode_step_seconds(model, r, L, args.steps, pre, seed=rep)
                    runs.append(dict(rep=rep, rows=r, ctx=L, variant="preallocate" if pre else "concat", seconds=s, load=os.getloadavg()[0]))
                    print(runs[-1], flush=True)
    bd = {k: statistics.median(b[k] for b in bnds) for k in bnds[0]}
    table = []
    for r, L in cases:
        med = {v: statistics.median(x["seconds"] for x in runs if x["rows"] == r and x["ctx"] == L and x["variant"] == v) for v in ("concat", "preallocate")}
        read_bound, mm_bound = nbytes / (bd["read_GBps"] * 1e9), 2 * n_params * r / (bd["matmul_GFLOPs"] * 1e9)
        table.append(dict(rows=r, ctx=L, concat_ms=1e3 * med["concat"], preallocate_ms=1e3 * med["preallocate"], ratio=med["concat"] / med["preallocate"],
                          weight_read_bound_ms=1e3 * read_bound, matmul_bound_ms=1e3 * mm_bound,
                          share_of_read_bound=read_bound / med["preallocate"], share_of_matmul_bound=mm_bound / med["preallocate"],
                          kv_MB_read_per_step=kv_per_token * r * L / 1e6))
    out = dict(machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=args.threads,
                            torch=torch.__version__), weights_MB=nbytes / 1e6, bounds=bd, bounds_runs=bnds, table=table, runs=runs,
               load_range=(min(x["load"] for x in runs), max(x["load"] for x in runs)))
    path = ROOT / "results" / f"decode_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(dict(bounds=bd, table=table, load_range=out["load_range"]), indent=1)); print(f"wrote {path}")


if __name__ == "__main__":
    main()
