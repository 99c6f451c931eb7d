"""Benchmark of one GRPO update (forward + backward + optimiser step): `toolrl_nb.grpo.train_step` vs TRL 1.16.

Fixed single-turn workload: SmolLM2-135M (`load_policy("smollm2-135m")`, CPU fp32), 1 prompt x G = 8 completions,
prompt `--prompt-len` tokens (a fast-lane chat prompt, cut/padded to length), completions of `--completion-len`
tokens sampled once from the model with a fixed seed (EOS suppressed, so every completion has the full length), fixed
rewards. Both sides update on exactly these ids.

  ours : `train_step(model, batch, opt, sched, GRPOConfig(loss_agg="token-mean", kl_coef=K), ref, micro_batch_size=M)`
  trl  : `GRPOTrainer.train()` for ONE optimisation step (max_steps=1, called again for each repeat, with a
         persistent AdamW passed as `optimizers=(opt, None)`), `rollout_func` returning the fixed ids,
         per_device_train_batch_size=M, gradient_accumulation_steps=8/M, num_generations=8, loss_type="dapo",
         beta=K, scale_rewards="group", num_iterations=1. Its update time is measured from `on_step_begin` to
         `on_step_end` (a callback): it includes TRL's `_generate_and_score_completions` (rollout_func call, reward,
         advantages and, with beta > 0, the reference forward), the micro-batch forwards/backwards, clipping and
         `optimizer.step()`. `_generate_and_score_completions` and `rollout_func` are also timed on their own.

Each side lives in its own worker process (per-side peak RSS); after one warm-up update per side the parent asks
them for updates in turn (ours, trl, ours, trl, ...), so both see the same machine load. Writes
bench/results/grpo_step_bench_<timestamp>.json.

    .venv/bin/python bench/grpo_step_bench.py                       # kl 0 and kl 1e-4, micro-batch 4, 3 repeats
    .venv/bin/python bench/grpo_step_bench.py --kl 0 --mbs 8 --repeats 5 --threads 2
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

START = time.strftime("%Y%m%d_%H%M%S")
REWARDS = [1.0, 0.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0]
G = len(REWARDS)


def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cache_path(args):
    return Path(args.cache_dir) / f"grpo_batch_p{args.prompt_len}_c{args.completion_len}_s{args.seed}.json"


def fixed_batch(args, model, tok):
    "Prompt ids (one, `prompt_len`) and G completions (`completion_len` sampled tokens each), cached per setting."
    import torch
    cache = cache_path(args)
    if cache.is_file(): return json.loads(cache.read_text())
    from toolrl_nb.fastlane import FastLaneEnv
    from toolrl_nb.format import render_chat
    env = FastLaneEnv(seed=0, n_turns=(1, 1))
    ep = env.reset(env.tasks("train")[0], "json")
    ids = tok(render_chat(ep.messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    head = tok("<|im_start|>system\n", add_special_tokens=False)["input_ids"]
    while len(ids) < args.prompt_len: ids = head + ids            # long enough, then keep the end (the header)
    prompt = ids[-args.prompt_len:]
    torch.manual_seed(args.seed)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt] * G), attention_mask=torch.ones(G, len(prompt), dtype=torch.long),
                             do_sample=True, temperature=1.0, top_p=1.0, top_k=0, min_new_tokens=args.completion_len,
                             max_new_tokens=args.completion_len, pad_token_id=tok.pad_token_id)
    comps = out[:, len(prompt):].tolist()
    assert all(len(c) == args.completion_len and tok.eos_token_id not in c for c in comps)
    data = dict(prompt=prompt, completions=comps)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp"); tmp.write_text(json.dumps(data)); tmp.replace(cache)
    return data


# ---------------------------------------------------------------------------------------------- workers
def worker(args):
    "Load the model, build the update, do one warm-up, then one update per 'step' line on stdin."
    import warnings
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    torch.set_num_threads(args.threads)
    from toolrl_nb.models import load_policy, prepare_default_model
    model, tok = load_policy("smollm2-135m")
    data = fixed_batch(args, model, tok)
    P, C = data["prompt"], data["completions"]
    if args.worker == "ours": update, info = ours_update(args, model, tok, P, C)
    else: update, info = trl_update(args, model, tok, P, C, prepare_default_model)
    t0 = time.perf_counter(); extra = update(); warm = time.perf_counter() - t0
    emit(dict(ready=True, warmup_s=warm, rss_mb=rss_mb(), threads=torch.get_num_threads(), **info, **extra))
    for line in sys.stdin:
        if line.strip() != "step": break
        t0 = time.perf_counter(); extra = update(); dt = time.perf_counter() - t0
        emit(dict(seconds=extra.pop("update_s", dt), wall_s=dt, rss_mb=rss_mb(), load1=os.getloadavg()[0], **extra))


def emit(d): print("@@" + json.dumps(d), flush=True)


def ours_update(args, model, tok, P, C):
    import torch
    from toolrl_nb.grpo import GRPOConfig, make_optimizer, train_step
    from toolrl_nb.models import reference_policy
    T = len(P) + len(C[0])
    ids = torch.tensor([P + c for c in C])
    lm = torch.zeros(G, T, dtype=torch.long); lm[:, len(P):] = 1
    batch = dict(input_ids=ids, attention_mask=torch.ones(G, T, dtype=torch.long), loss_mask=lm,
                 rewards=torch.tensor(REWARDS), group=torch.zeros(G, dtype=torch.long))   # on-policy: no behaviour_logps
    cfg = GRPOConfig(lr=1e-6, warmup_steps=0, loss_agg="token-mean", kl_coef=args.kl, eps=1e-4)
    ref = reference_policy(model) if args.kl else None
    opt, sched = make_optimizer(model.parameters(), cfg)
    last = {}
    def update():
        st = train_step(model, batch, opt, sched, cfg, ref_model=ref, micro_batch_size=args.mbs)
        last.update(loss=st["loss"], grad_norm=st["grad_norm"], kl=st["kl"])
        return dict(loss=st["loss"], grad_norm=st["grad_norm"])
    return update, dict(side="ours", cfg=dict(kl_coef=args.kl, micro_batch_size=args.mbs, loss_agg="token-mean",
                                               ref="reference_policy (frozen deep copy)" if args.kl else None))


def trl_update(args, model, tok, P, C, prepare_default_model):
    import tempfile
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig, GRPOTrainer
    # the ref model (beta > 0) is rebuilt by TRL from config._name_or_path: point it at a copy of this policy (the
    # packaged folder lacks the single-token tool tags load_policy adds, whose ids the sampled batch can hold)
    ref_dir = tempfile.mkdtemp(prefix="grpo_bench_ref_"); model.save_pretrained(ref_dir); tok.save_pretrained(ref_dir)
    model.config._name_or_path = model.name_or_path = ref_dir
    tok.padding_side = "left"
    def rollout_func(prompts, trainer):
        t0 = time.perf_counter()
        out = {"prompt_ids": [list(P) for _ in prompts], "completion_ids": [list(c) for c in C],
               "logprobs": [[0.0] * len(c) for c in C]}
        times["rollout_func_s"] += time.perf_counter() - t0
        return out
    def reward_fn(prompts, completions, **_): return list(REWARDS)
    gas = G // args.mbs
    targs = TRLConfig(output_dir=tempfile.mkdtemp(prefix="grpo_bench_trl_"), per_device_train_batch_size=args.mbs,
                      gradient_accumulation_steps=gas, num_generations=G, loss_type="dapo", beta=args.kl,
                      scale_rewards="group", num_iterations=1, use_bias_correction_kl=False, use_cpu=True, bf16=False,
                      gradient_checkpointing=False, max_completion_length=len(C[0]), learning_rate=1e-6,
                      weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="constant", warmup_steps=0,
                      max_steps=1, logging_steps=1000, report_to=[], save_strategy="no", disable_tqdm=True,
                      dataloader_num_workers=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)
    times = dict(rollout_func_s=0.0, gen_and_score_s=0.0, step_s=0.0)
    class Clock(TrainerCallback):
        def on_step_begin(self, a, s, c, **k): times["t0"] = time.perf_counter()
        def on_step_end(self, a, s, c, **k): times["step_s"] = time.perf_counter() - times["t0"]
    tr = GRPOTrainer(model=model, reward_funcs=reward_fn, args=targs, processing_class=tok,
                     train_dataset=Dataset.from_dict({"prompt": ["fixed prompt"] * 4}), rollout_func=rollout_func,
                     optimizers=(opt, None), callbacks=[Clock()])
    gas_fn = tr._generate_and_score_completions
    def timed_gas(*a, **k):
        t0 = time.perf_counter(); out = gas_fn(*a, **k); times["gen_and_score_s"] += time.perf_counter() - t0
        return out
    tr._generate_and_score_completions = timed_gas
    def update():
        for k in ("rollout_func_s", "gen_and_score_s", "step_s"): times[k] = 0.0
        out = tr.train()
        return dict(update_s=times["step_s"], gen_and_score_s=times["gen_and_score_s"],
                    rollout_func_s=times["rollout_func_s"], loss=out.training_loss)
    return update, dict(side="trl", cfg=dict(beta=args.kl, per_device_train_batch_size=args.mbs,
                                              gradient_accumulation_steps=gas, num_generations=G, loss_type="dapo",
                                              path="GRPOTrainer.train(), max_steps=1 per repeat; "
                                                   "time = on_step_begin..on_step_end"))


# ---------------------------------------------------------------------------------------------- parent
class Worker:
    def __init__(self, side, args, kl):
        cmd = [sys.executable, __file__, "--worker", side, f"--kl={kl}", f"--mbs={args.mbs}", f"--threads={args.threads}",
               f"--prompt-len={args.prompt_len}", f"--completion-len={args.completion_len}", f"--seed={args.seed}",
               f"--cache-dir={args.cache_dir}"]
        self.side, self.p = side, subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def read(self):
        for line in self.p.stdout:
            if line.startswith("@@"): return json.loads(line[2:])
        raise RuntimeError(f"{self.side} worker died (rc {self.p.wait()})")

    def step(self): self.p.stdin.write("step\n"); self.p.stdin.flush(); return self.read()
    def close(self): self.p.stdin.write("quit\n"); self.p.stdin.flush(); self.p.wait(timeout=120)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kl", type=float, nargs="+", default=[0.0, 1e-4], help="kl_coef / beta values, one comparison each")
    p.add_argument("--mbs", type=int, default=4, help="micro-batch (ours) = per_device_train_batch_size (TRL)")
    p.add_argument("--repeats", type=int, default=3); p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=200); p.add_argument("--completion-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=os.path.join(os.environ.get("TOOLRL_CACHE", os.path.expanduser("~/.cache/toolrl_nb")), "bench"))
    p.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.kl = args.kl[0]
        return worker(args)
    if G % args.mbs: sys.exit(f"--mbs must divide {G}")
    results, loads = [], []
    for kl in args.kl:
        ws = {"ours": Worker("ours", args, kl)}
        while not cache_path(args).is_file() and ws["ours"].p.poll() is None: time.sleep(1)   # batch sampled once
        ws["trl"] = Worker("trl", args, kl)
        ready = {s: w.read() for s, w in ws.items()}          # both load and warm up (in parallel; untimed)
        runs = {s: [] for s in ws}
        for _ in range(args.repeats):                          # interleaved: ours, trl, ours, trl, ...
            for s in ("ours", "trl"):
                r = ws[s].step(); runs[s].append(r); loads.append(r["load1"])
                print(f"kl={kl:g} {s:4s} {r['seconds']:.2f} s  (load {r['load1']:.1f})", flush=True)
        for w in ws.values(): w.close()
        res = dict(kl=kl, micro_batch_size=args.mbs)
        for s in ws:
            res[s] = dict(ready[s], runs=runs[s], median_s=statistics.median(r["seconds"] for r in runs[s]),
                          peak_rss_mb=max([ready[s]["rss_mb"]] + [r["rss_mb"] for r in runs[s]]))
        if "gen_and_score_s" in runs["trl"][0]:
            res["trl"]["median_gen_and_score_s"] = statistics.median(r["gen_and_score_s"] for r in runs["trl"])
            res["trl"]["median_rollout_func_s"] = statistics.median(r["rollout_func_s"] for r in runs["trl"])
        res["ratio_ours_over_trl"] = res["ours"]["median_s"] / res["trl"]["median_s"]
        results.append(res)
        t = res["trl"]
        print(f"kl={kl:g} mbs={args.mbs}: ours median {res['ours']['median_s']:.2f} s (peak RSS {res['ours']['peak_rss_mb']:.0f} MB)"
              f" | trl median {t['median_s']:.2f} s (of which gen+score {t.get('median_gen_and_score_s', 0):.2f} s, "
              f"rollout_func {t.get('median_rollout_func_s', 0) * 1e3:.2f} ms; peak RSS {t['peak_rss_mb']:.0f} MB)"
              f" | ours/trl {res['ratio_ours_over_trl']:.2f}", flush=True)
        write(args, results, loads)                              # after every comparison: a partial run keeps its data


def write(args, results, loads):
    out = dict(workload=dict(model="smollm2-135m fp32 CPU", prompt_len=args.prompt_len, completion_len=args.completion_len,
                             G=G, rewards=REWARDS, mbs=args.mbs, threads=args.threads, repeats=args.repeats,
                             order="warm-up each side, then ours,trl interleaved"),
               results=results, loadavg_1m_during=dict(min=min(loads), median=statistics.median(loads), max=max(loads)),
               cpu_count=os.cpu_count(), machine=platform.platform(), cpu=_cpu_model(),
               when=time.strftime("%Y-%m-%dT%H:%M:%S"))
    path = Path(__file__).parent / "results" / f"grpo_step_bench_{START}.json"
    path.parent.mkdir(exist_ok=True); path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}", flush=True)


def _cpu_model():
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception: return platform.processor()


if __name__ == "__main__": main()
