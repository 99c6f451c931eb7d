"""The stabilisers in a real run: switched mid-run through the run controls (logged as events, used by the next
update), dynamic sampling's replacement of flat groups, and an int8 sampler the mismatch monitor reads.
TINY RANDOM model (random weights: its rewards are 0, so every group is flat) on the fast-lane environment."""
import dataclasses

import pytest
from toolrl_nb.config import ConfigError, from_dict
from toolrl_nb.envs import Score
from toolrl_nb.trainer import Trainer, TrainConfig


def _cfg(tmp_path, name, **kw):
    return from_dict(TrainConfig, {**dict(run_dir=str(tmp_path / name), steps=3, tasks_per_step=2, model=dict(name="tiny-random"),
                                          rollout=dict(group_size=2, max_action_tokens=8), eval=dict(n_tasks=0),
                                          diagnostics=dict(bank_contexts=0)), **kw})


def test_switch_stabilisers_mid_run(tmp_path):
    tr = Trainer(_cfg(tmp_path, "switch", grpo=dict(warmup_steps=0, lr=1e-4)), progress=False)
    tr.safe_point(); tr.rl_step()                                      # step 0: the config's (no bonus, token ratios)
    tr.controls.set_value("grpo.entropy_coef", 0.05)
    with pytest.raises(ConfigError, match="grpo.importance_level"): tr.controls.set_value("grpo.importance_level", "word")
    with pytest.raises(ValueError, match="unknown stabiliser"): tr.controls.set_value("grpo.lr", 1.0)
    tr.safe_point(); tr.rl_step()                                      # step 1: the entropy bonus on
    tr.controls.set_value("grpo.entropy_coef", None)                   # back to the config's
    tr.controls.set_value("grpo.mask_truncated", "action")
    tr.safe_point(); tr.rl_step()                                      # step 2: cut actions out of the loss
    rows = tr.log.query("SELECT step, entropy_bonus, n_tokens, n_truncated_masked FROM steps ORDER BY step").to_dicts()
    assert rows[0]["entropy_bonus"] == 0 and rows[0]["n_truncated_masked"] == 0 and rows[0]["n_tokens"] > 0
    assert rows[1]["entropy_bonus"] > 0 and rows[1]["n_truncated_masked"] == 0
    # an 8-token cap cuts the random model's actions (it rarely samples <|im_end|>): their tokens leave the loss
    assert rows[2]["n_truncated_masked"] > 0 and rows[2]["n_tokens"] < rows[0]["n_tokens"]
    ev = tr.log.query("SELECT step, message FROM events WHERE kind = 'set' ORDER BY ts").rows()
    assert ev == [(1, "grpo.entropy_coef: None -> 0.05"), (2, "grpo.entropy_coef: 0.05 -> None"),
                  (2, "grpo.mask_truncated: None -> action")]
    assert tr.controls.state()["values"]["grpo.mask_truncated"] == "action"           # saved with the checkpoint
    tr.close()


def test_resample_replaces_flat_groups(tmp_path, monkeypatch):
    tr = Trainer(_cfg(tmp_path, "resample", steps=1, grpo=dict(zero_advantage="resample", resample_tasks=3)), progress=False)
    real, calls = tr.roll_out, []
    def roll_out(step, tasks, temperature, times):
        "The real rollout; the 2nd call's (the first resampling round's) first group is given rewards 1 and 0."
        trajs = real(step, tasks, temperature, times); calls.append([t.id for t in tasks])
        if len(calls) == 2:
            for t, r in zip(trajs[:2], (1.0, 0.0)): t.score = dataclasses.replace(t.score, reward=r)
        return trajs
    monkeypatch.setattr(tr, "roll_out", roll_out)
    tr.safe_point(); row = tr.rl_step()
    first, fresh = calls[0], calls[1]
    assert len(fresh) == 2 and not set(fresh) & set(first)             # both flat groups: 2 fresh tasks, not this step's
    assert len(calls) == 3 and len(calls[2]) == 1                       # one group left flat: the last task of the budget
    assert row["n_resampled"] == 3
    logged = tr.log.query("SELECT group_idx, task_id, reward FROM trajectories ORDER BY group_idx, rollout_idx").rows()
    assert [r[1] for r in logged[:2]] == [fresh[0]] * 2 and [r[2] for r in logged[:2]] == [1.0, 0.0]   # group 0 replaced
    assert row["zero_adv_share"] == 0.5 and row["n_updates"] == 1       # the flat group left is dropped, the other trains
    tr.close()


def test_int8_sampler_shows_a_mismatch(tmp_path):
    rows = {}
    for prec in ("fp32", "int8"):
        tr = Trainer(_cfg(tmp_path, prec, steps=1, rollout=dict(group_size=2, max_action_tokens=8, sampler_precision=prec),
                          grpo=dict(rollout_correction="tis")), progress=False)
        tr.safe_point(); rows[prec] = tr.rl_step(); tr.close()
    assert rows["fp32"]["mismatch_abs_mean"] < 1e-5 and rows["int8"]["mismatch_abs_mean"] > 1e-3
    assert rows["int8"]["is_weight_mean"] != 1.0 and rows["int8"]["mismatch_abs_max"] > rows["int8"]["mismatch_abs_mean"]
