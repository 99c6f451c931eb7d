"""Every `__post_init__` check of every config dataclass is a `ConfigError` naming its field, one line through the CLI.

The checks are read from the sources (`check(cond, "field", ...)` calls), so a new check without a case here fails
`test_every_check_has_a_case`. No model is loaded: the CLI validates the config before it builds the trainer."""
import ast, dataclasses, importlib, inspect, pkgutil, textwrap

import pytest
import yaml

import toolrl_nb
from toolrl_nb.cli import main

# field -> one bad override per check that names it (in source order), as `--set` strings
CASES = {
    "env.name": [["env.name=gsm8k"]],
    "diagnostics.on_spike": [["diagnostics.on_spike=panic"]],
    "steps": [["steps=-1"]],
    "tasks_per_step": [["tasks_per_step=0"]],
    "rollout.group_size": [["rollout.group_size=1"]],
    "micro_batch_size": [["micro_batch_size=0"]],
    "checkpoint_every": [["checkpoint_every=0"]],
    "keep_checkpoints": [["keep_checkpoints=0"]],
    "on_diverge": [["on_diverge=retry"]],
    "warmup_tasks": [["supervision.scheme=sft_rl", "warmup_tasks=0"]],
    "supervision.rounds": [["supervision.scheme=interleaved", "supervision.rounds=[1,0]", "steps=1"],     # a round of 0 steps
                           ["supervision.scheme=interleaved", "supervision.rounds=[2,1]"],               # don't add up to steps
                           ["supervision.rounds=[2]", "steps=2"]],                                       # rounds without interleaved
    "supervision.ops_k": [["supervision.scheme=sync", "supervision.ops=true", "supervision.ops_k=2", "rollout.group_size=2"],
                          ["supervision.ops_k=-1"]],
    "supervision.scheme": [["supervision.scheme=magic"], ["supervision.ops=true"],
                           ["supervision.hbg=true"]],   # controls.synchronous_only (SupervisionConfig names it first at load)
    "supervision.ops_treatment": [["supervision.ops_treatment=sideways"]],
    "supervision.round_data": [["supervision.round_data=prs"]],
    "supervision.ets_rule": [["supervision.ets_rule=some"]],
    "supervision.ets_window": [["supervision.ets_window=0"]],
    "grpo.loss_agg": [["grpo.loss_agg=mean"]],
    "grpo.dual_clip": [["grpo.dual_clip=0.5"]],
    "grpo.temperature": [["grpo.temperature=0"]],
    "grpo.mini_batches": [["grpo.mini_batches=0"]],
    "grpo.epochs": [["grpo.epochs=0"]],
    "grpo.zero_advantage": [["grpo.zero_advantage=skip"]],
    "grpo.importance_level": [["grpo.importance_level=group"]],
    "grpo.mask_truncated": [["grpo.mask_truncated=all"]],
    "grpo.rollout_correction": [["grpo.rollout_correction=ppo"]],
    "grpo.correction_level": [["grpo.correction_level=batch"]],
    "grpo.dr_grpo_tokens": [["grpo.dr_grpo_tokens=0"]],
    "grpo.entropy_coef": [["grpo.entropy_coef=-0.01"]],
    "grpo.clip_eps_high": [["grpo.clip_eps_high=-0.1"]],
    "grpo.correction_cap": [["grpo.correction_cap=0"]],
    "grpo.correction_band": [["grpo.correction_band=[1.1,2.0]"]],
    "grpo.resample_tasks": [["grpo.resample_tasks=-1"]],
    "rollout.sampler_precision": [["rollout.sampler_precision=fp8"]],
    "controller.lr_factor": [["controller.lr_factor=1.5"]],
    "controller.lr_min_factor": [["controller.lr_min_factor=0"]],
    "controller.lr_recover_steps": [["controller.lr_recover_steps=0"]],
    "controller.unhealthy_share": [["controller.unhealthy_share=2"]],
    "controller.unhealthy_patience": [["controller.unhealthy_patience=0"]],
    "controller.sft_cooldown": [["controller.sft_cooldown=-1"]],
    "controller.reward_drop": [["controller.reward_drop=1"]],
    "controller.reward_window": [["controller.reward_window=0"]],
    "controller.lambda_decay": [["controller.lambda_decay=1"]],
    "controller.lambda_up": [["controller.lambda_up=0"]],
}
BASE = dict(steps=4, model=dict(name="tiny-random"), rollout=dict(group_size=2))


def _config_classes():
    "Every config dataclass of the package that validates in `__post_init__` (data records such as SFTExample are not configs)."
    seen = {}
    for m in pkgutil.iter_modules(toolrl_nb.__path__):
        if m.name.startswith("_"): continue
        mod = importlib.import_module(f"toolrl_nb.{m.name}")
        for name, cls in vars(mod).items():
            if (inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == mod.__name__
                    and "__post_init__" in vars(cls) and (name.endswith("Config") or name.endswith("Limits"))):
                seen[name] = cls
    return seen


def _checks(cls):
    "The fields named by each check of `cls.__post_init__`, in order; fails on any other `raise` there."
    return _check_fields(cls.__post_init__, cls.__name__)


def _check_fields(fn, owner):
    "The fields named by each `check(...)` in `fn`, in order; a `check_signals(...)` call adds those of the signals' checks."
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    fields = []
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Raise), f"{owner}.__post_init__ raises directly: use check(ok, field, why)"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("check", "check_one_of"):
            field = node.args[1]
            assert isinstance(field, ast.Constant), f"{owner}: check() must name its field with a string literal"
            fields.append((node.lineno, field.value))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_signals":   # controls.SIGNALS' checks
            from toolrl_nb.controls import SIGNALS
            for chk in dict.fromkeys(c for sig in SIGNALS.values() for c in sig.checks):
                fields += [(node.lineno, f) for f in _check_fields(chk, chk.__name__)]
    return [f for _, f in sorted(fields, key=lambda x: x[0])]


def _all_checks():
    return [(name, f) for name, cls in sorted(_config_classes().items()) for f in _checks(cls)]


def test_every_check_has_a_case():
    classes = _config_classes()
    assert {"TrainConfig", "GRPOConfig", "SupervisionConfig", "ControllerConfig", "EnvConfig", "DiagnosticsConfig"} <= set(classes)
    counts = {}
    for _, f in _all_checks(): counts[f] = counts.get(f, 0) + 1
    assert counts == {f: len(c) for f, c in CASES.items()}, "a check without a case (or a case without a check)"


def _run_cli(tmp_path, overrides):
    cfg = tmp_path / "cfg.yaml"; cfg.write_text(yaml.safe_dump(dict(BASE, run_dir=str(tmp_path / "run"))))
    with pytest.raises(SystemExit) as e: main(["train", str(cfg)] + [x for o in overrides for x in ("--set", o)])
    return str(e.value.code)


@pytest.mark.parametrize("field,i", [(f, i) for f, cs in CASES.items() for i in range(len(cs))],
                         ids=lambda x: str(x))
def test_bad_value_is_one_line_naming_the_field(tmp_path, field, i):
    line = _run_cli(tmp_path, CASES[field][i])
    assert line.startswith(f"toolrl: error: {field}: "), line
    assert "\n" not in line, line
    assert not (tmp_path / "run").exists()     # refused before anything was written
