"""Caps from the gold: every preset in configs/ fits >= 99% of its environment's gold actions and gold trajectories
(tokenised with the preset's tokenizer) within its action and trajectory caps, in every split and evaluation mode it
uses. The paper presets (configs/paper/) need their Qwen tokenizer: they are skipped when it is not available locally."""
import warnings
from pathlib import Path
import pytest
from toolrl_nb.config import from_dict, load_config
from toolrl_nb.evaluation import load_experiment
from toolrl_nb.format import render_chat
from toolrl_nb.models import load_tokenizer, ModelError
from toolrl_nb.sft import gold_trajectories
from toolrl_nb.trainer import TrainConfig, make_env

ROOT = Path(__file__).resolve().parent.parent
PRESETS = sorted((ROOT / "configs").rglob("*.yaml"))
MIN_SHARE = 0.99
_TOK, _LENS = {}, {}

def _tokenizer(name):
    if name not in _TOK:
        try: _TOK[name] = load_tokenizer(name)
        except (ModelError, OSError, ValueError) as e: _TOK[name] = e
    return _TOK[name]

def uses(cfg) -> list[tuple[str, str, str, str]]:
    "(purpose, split or OOD, format, which action cap) the preset's run and its evaluations use."
    out = [("rl", cfg.env.train_split, cfg.env.fmt, "rollout")]
    if cfg.warmup_tasks: out.append(("warmup", cfg.env.train_split, cfg.env.fmt, "warmup"))
    other = "python" if cfg.env.fmt == "json" else "json"
    out += [("strict", cfg.env.eval_split, cfg.env.fmt, "eval"), ("format_ood", cfg.env.eval_split, other, "eval"),
            ("content_ood", "content_ood", cfg.env.fmt, "eval")]
    return out

def _tasks(env, split):
    if split != "content_ood": return env.tasks(split)
    if hasattr(env, "ood_split"): return env.ood_split("content")["test"]
    from toolrl_nb.bfcl import ood_split
    return ood_split("content", env.categories)["test"]

def gold_lengths(cfg, tok, split, fmt) -> tuple[list[int], list[int]]:
    "Token counts of every gold action (+ its <|im_end|>) and every gold trajectory (whole rendered chat) of a split."
    key = (repr(cfg.env), cfg.model.name, split, fmt)
    if key not in _LENS:
        env = make_env(cfg.env)
        n = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trajs = gold_trajectories(env, _tasks(env, split), fmt)
        acts = [n(m["content"]) + 1 for _, msgs in trajs for m in msgs if m["role"] == "assistant"]
        _LENS[key] = acts, [n(render_chat(msgs)) for _, msgs in trajs]
    return _LENS[key]

def share(xs, cap): return sum(x <= cap for x in xs) / len(xs)

@pytest.mark.parametrize("path", PRESETS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_caps_fit_gold(path):
    if "warmup_run" in path.read_text():   # an experiment file: its arms share the merged base config
        import yaml
        spec = yaml.safe_load(path.read_text())
        section = next(k for k, v in spec.items() if k != "overrides" and isinstance(v, dict) and v
                       and all(isinstance(a, dict) for a in v.values()))   # the first mapping of arms
        cfg = from_dict(TrainConfig, load_experiment(path, section, repo=ROOT, strict=False)["base_config"])
    else: cfg = load_config(TrainConfig, path)
    tok = _tokenizer(cfg.model.name)
    if isinstance(tok, Exception): pytest.skip(f"tokenizer of {cfg.model.name} not available locally: {tok}")
    worst = []
    for purpose, split, fmt, capkind in uses(cfg):
        acts, trajs = gold_lengths(cfg, tok, split, fmt)
        act_cap = {"rollout": cfg.rollout.max_action_tokens, "eval": cfg.eval.max_action_tokens, "warmup": None}[capkind]
        traj_cap = cfg.warmup.max_len if purpose == "warmup" else cfg.rollout.max_total_tokens
        a = share(acts, act_cap) if act_cap else 1.0
        t = share(trajs, traj_cap)
        print(f"{path.name} {purpose:11s} {split:11s} {fmt:6s} actions<= {act_cap}: {a:.3f} (max {max(acts)}) "
              f"trajectories<= {traj_cap}: {t:.3f} (max {max(trajs)})")
        worst.append((min(a, t), purpose, a, act_cap, t, traj_cap))
    s, purpose, a, act_cap, t, traj_cap = min(worst)
    print(f"{path.name}: worst gold-within-cap share {s:.3f} ({purpose})")
    assert a >= MIN_SHARE, f"{path.name} {purpose}: only {a:.1%} of gold actions fit the action cap {act_cap}"
    assert t >= MIN_SHARE, f"{path.name} {purpose}: only {t:.1%} of gold trajectories fit the trajectory cap {traj_cap}"

def test_truncation_is_its_own_state(tmp_path):
    "An action cut by the cap is flagged, logged as actions.truncated and counted as 'truncated' (TINY RANDOM model)."
    from toolrl_nb.fastlane import FastLaneEnv
    from toolrl_nb.models import tiny_random
    from toolrl_nb.rollout import RolloutConfig, rollout
    from toolrl_nb.runlog import RunLog, state_shares
    from toolrl_nb.trainer import trajectory_rows
    model, tok = tiny_random(0)
    env = FastLaneEnv(n_tasks=2)
    trajs = rollout(model, tok, env, env.tasks("train")[:2], RolloutConfig(group_size=2, max_action_tokens=4, seed=0))
    _, ac = trajectory_rows(0, trajs)
    assert ac and all(r["truncated"] == a.truncated for r, a in zip(ac, [a for t in trajs for a in t.actions]))
    assert any(r["truncated"] for r in ac)
    with RunLog(tmp_path / "log.duckdb") as log:
        log.log("actions", ac)
        sh = state_shares(log)
    n = dict(zip(sh["state"], sh["n"]))
    assert n["truncated"] == sum(r["truncated"] for r in ac) and sum(n.values()) == len(ac)
