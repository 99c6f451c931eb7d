"""Every preset under configs/ is a valid TrainConfig (a broken preset names its bad field here, not mid-run), and every
arm of every experiment file (a YAML with a `base` key, e.g. configs/cpu/compare.yaml) expands to a valid one."""
from pathlib import Path
import pytest, yaml
from toolrl_nb.config import load_config, from_dict
from toolrl_nb.evaluation import load_experiment, expand_grid
from toolrl_nb.findings import RESERVED   # the campaign keys that are not sections of arms
from toolrl_nb.trainer import TrainConfig, make_env

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "configs").rglob("*.yaml"))
EXPERIMENTS = [p for p in FILES if "base" in yaml.safe_load(p.read_text())]
PRESETS = [p for p in FILES if p not in EXPERIMENTS]
ids = lambda p: str(p.relative_to(p.parents[1]))


@pytest.mark.parametrize("path", PRESETS, ids=ids)
def test_preset_loads(path):
    cfg = load_config(TrainConfig, path)
    assert cfg.rollout.group_size >= 2
    if not cfg.model.name.startswith("/"):   # CPU presets must build their environment here
        assert len(make_env(cfg.env).tasks(cfg.env.train_split)) >= cfg.tasks_per_step


@pytest.mark.parametrize("path", EXPERIMENTS, ids=ids)
def test_experiment_arms_load(path):
    spec = yaml.safe_load(path.read_text())
    sections = [k for k, v in spec.items() if k not in RESERVED and isinstance(v, dict) and v   # mappings of arms
                and all(isinstance(a, dict) for a in v.values())]
    assert sections, "an experiment file needs at least one section of arms"
    for section in sections:
        kw = load_experiment(path, section, repo=ROOT, strict=False)   # the warm-up run need not exist here
        arms = expand_grid(kw["base_config"], kw["grid"], (0,), kw["root"])
        assert len(arms) == len(spec[section])
        for name, d, _ in arms: from_dict(TrainConfig, d)
