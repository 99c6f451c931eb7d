"""Every preset under configs/ is a valid TrainConfig (a broken preset names its bad field here, not mid-run)."""
from pathlib import Path
import pytest
from toolrl_nb.config import load_config
from toolrl_nb.trainer import TrainConfig, make_env

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_preset_loads(path):
    cfg = load_config(TrainConfig, path)
    assert cfg.rollout.group_size >= 2
    if not cfg.model.name.startswith("/"):   # CPU presets must build their environment here
        assert len(make_env(cfg.env).tasks(cfg.env.train_split)) >= cfg.tasks_per_step
