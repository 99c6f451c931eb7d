"""Decode speed of the rollout's KV cache against the machine's bounds (issue 17).

Workload: SmolLM2-135M-Instruct fp32 (`load_policy("smollm2-135m")`), `RaggedKV` as the rollout uses it: R rows each
prefilled with an L-token context (random ids, every row distinct), then `--steps` decode feeds of one token per row
(the explicit ragged attention mask, position ids, logits at the last column only: exactly `rollout`'s decode loop
without the sampling). Time per decode step, median over the steps; repeats interleaved across variants.

  concat      : HF's `DynamicCache` (every append concatenates: the whole cache is copied each step)
  preallocate : `GrowingLayer` (the current default): appends write into a buffer with spare room
  packed      : preallocate, inside `packed_linears` (`rollout.packed_linears: true`): oneDNN-prepacked Linear weights;
                its logits are compared with preallocate's on the same feeds (max difference relative to max |logit|)
  int8, bf16  : preallocate on `sampling_copy(model, "int8" | "bf16")` (`rollout.sampler_precision`): a quarter / half
                the weight bytes per step, and a real sampler/trainer mismatch (the logit difference says how large)
The first variant is the baseline of the ratios and of the logit differences.

Bounds, measured in the same invocation with the same threads:
  weight-read bound = bytes of the weights / read bandwidth (`sum` over a buffer as large as the weights)
  matmul bound      = 2 x parameters x R FLOP per step / fp32 matmul peak (2048^3 `mm`)
A step's share of a bound = bound / measured step time (1.0 = at the bound). Attention over the cache is extra work
on top of either bound (reported as the KV bytes a step reads).

    .venv/bin/python bench/decode_bench.py --threads 2 --repeats 3 --variants preallocate,packed
    .venv/bin/python bench/decode_bench.py --threads 2 --rows 8 --ctx 500 --profile packed     # where a step's time goes
"""
import argparse, contextlib, json, os, platform, statistics, time
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


@contextlib.contextmanager
def prefilled(model, rows: int, ctx: int, variant: str, g: torch.Generator):
    "A `RaggedKV` of `rows` rows prefilled with `ctx` random ids each (the variant's cache and linears); yields (kv, logits)."
    from toolrl_nb.rollout import RaggedKV, packed_linears
    with packed_linears(model, rows) if variant == "packed" else contextlib.nullcontext():
        kv = RaggedKV(model, list(range(rows)), pad_id=2, preallocate=variant != "concat")
        yield kv, kv.feed({r: torch.randint(3, 40000, (ctx,), generator=g).tolist() for r in range(rows)})


def feed_one(kv, rows: int, g: torch.Generator) -> torch.Tensor:
    "One decode feed: a random token per row."
    tok = torch.randint(3, 40000, (rows,), generator=g).tolist()
    return kv.feed({r: [tok[r]] for r in range(rows)})


def decode_step_seconds(model, rows: int, ctx: int, steps: int, variant: str, seed: int = 0) -> tuple[float, torch.Tensor]:
    "Median seconds of a decode step (the first one untimed), and the logits of every feed."
    g = torch.Generator().manual_seed(seed)
    with prefilled(model, rows, ctx, variant, g) as (kv, first):
        outs, ts = [first], []
        for _ in range(steps):
            t = time.perf_counter(); outs.append(feed_one(kv, rows, g)); ts.append(time.perf_counter() - t)
    return statistics.median(ts[1:]), torch.stack(outs)


def profile(model, rows: int, ctx: int, steps: int, variant: str, top: int = 12) -> list[dict]:
    "Self CPU time per op over `steps` decode feeds (after the prefill and one untimed feed), its share of the total."
    from torch.profiler import profile as prof, ProfilerActivity
    g = torch.Generator().manual_seed(0)
    with prefilled(model, rows, ctx, variant, g) as (kv, _):
        feed_one(kv, rows, g)
        with prof(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(steps): feed_one(kv, rows, g)
    ev = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return [dict(op=e.key, calls=e.count, ms_per_step=e.self_cpu_time_total / 1e3 / steps, share=e.self_cpu_time_total / total)
            for e in ev[:top]] + [dict(op="(all ops)", calls=sum(e.count for e in ev), ms_per_step=total / 1e3 / steps, share=1.0)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2); ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=17); ap.add_argument("--rows", default="8,32"); ap.add_argument("--ctx", default="500,1500")
    ap.add_argument("--variants", default="preallocate,packed", help="two or more of concat, preallocate, packed, int8, bf16; the first is the baseline")
    ap.add_argument("--profile", default="", metavar="VARIANT", help="instead of timing: profile VARIANT's decode steps per case (top ops)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from toolrl_nb.models import load_policy
    model = load_policy("smollm2-135m")[0].eval()
    n_params = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    c = model.config
    kv_per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4
    cases = [(r, L) for r in map(int, args.rows.split(",")) for L in map(int, args.ctx.split(","))]
    variants = args.variants.split(","); base = variants[0]
    known = ("concat", "preallocate", "packed", "int8", "bf16")
    if bad := [v for v in variants if v not in known]: ap.error(f"unknown variant {bad[0]!r}: choose from {', '.join(known)}")
    from toolrl_nb.rollout import sampling_copy
    if args.profile:
        m = sampling_copy(model, args.profile) if args.profile in ("int8", "bf16") else model
        with torch.no_grad(): prof_ = {f"{r}x{L}": profile(m, r, L, args.steps, args.profile) for r, L in cases}
        for case, rows in prof_.items():
            print(f"{args.profile} {case}:"); [print(f"  {x['op']:<40} {x['calls']:>6} calls {x['ms_per_step']:8.2f} ms/step {100 * x['share']:5.1f} %") for x in rows]
        out = ROOT / "results" / f"decode_profile_{time.strftime('%Y%m%d_%H%M%S')}.json"
        out.write_text(json.dumps(dict(variant=args.profile, threads=args.threads, steps=args.steps, load=os.getloadavg()[0], profile=prof_), indent=1))
        print("wrote", out); return
    copies = {v: sampling_copy(model, v) for v in variants if v in ("int8", "bf16")}
    runs, bnds, rel_diff = [], [], {}
    with torch.no_grad():
        for rep in range(args.repeats):
            bnds.append(bounds(nbytes))
            for r, L in cases:
                logits = {}
                for v in variants:
                    s, logits[v] = decode_step_seconds(copies.get(v, model), r, L, args.steps, v, seed=rep)
                    runs.append(dict(rep=rep, rows=r, ctx=L, variant=v, seconds=s, load=os.getloadavg()[0]))
                    print(runs[-1], flush=True)
                for v in variants[1:]:
                    d = float((logits[v].float() - logits[base].float()).abs().max() / logits[base].float().abs().max())
                    rel_diff[(r, L, v)] = max(rel_diff.get((r, L, v), 0.0), d)
    bd = {k: statistics.median(b[k] for b in bnds) for k in bnds[0]}
    table = []
    for r, L in cases:
        sec = {v: [x["seconds"] for x in runs if x["rows"] == r and x["ctx"] == L and x["variant"] == v] for v in variants}
        med = {v: statistics.median(xs) for v, xs in sec.items()}
        read_bound, mm_bound = nbytes / (bd["read_GBps"] * 1e9), 2 * n_params * r / (bd["matmul_GFLOPs"] * 1e9)
        table.append(dict(rows=r, ctx=L, **{f"{v}_ms": 1e3 * med[v] for v in variants},
                          ratio={v: med[base] / med[v] for v in variants[1:]},
                          pair_ratios={v: [a / b for a, b in zip(sec[base], sec[v])] for v in variants[1:]},
                          weight_read_bound_ms=1e3 * read_bound, matmul_bound_ms=1e3 * mm_bound,
                          # the bounds are those of fp32 weights: int8 / bf16 read fewer bytes, their shares are left out
                          share_of_read_bound={v: read_bound / med[v] for v in variants if v not in ("int8", "bf16")},
                          share_of_matmul_bound={v: mm_bound / med[v] for v in variants if v not in ("int8", "bf16")},
                          max_rel_logit_diff={v: rel_diff[(r, L, v)] for v in variants[1:]}, kv_MB_read_per_step=kv_per_token * r * L / 1e6))
    out = dict(variants=variants, machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=args.threads,
                            torch=torch.__version__), weights_MB=nbytes / 1e6, bounds=bd, bounds_runs=bnds, table=table, runs=runs,
               load_range=(min(x["load"] for x in runs), max(x["load"] for x in runs)))
    path = ROOT / "results" / f"decode_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(dict(bounds=bd, table=table, load_range=out["load_range"]), indent=1)); print(f"wrote {path}")


if __name__ == "__main__":
    main()
