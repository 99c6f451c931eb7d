"""The stability controller inside a real run: its actions reach the trainer, are logged with their reasons and survive
a resume.

Uses the tiny random model (for speed) on the fast lane. Its random text never forms tool tags, so the diagnostics of
a tiny run never look unstable: the test feeds one synthetic unstable `StepView` to the trainer's `_control` hook
between real RL steps and checks what the trainer then does. The decisions themselves are tested on synthetic series
in nbs/16_controller.ipynb."""
import json

import torch

from toolrl_nb.config import from_dict
from toolrl_nb.controller import StepView
from toolrl_nb.trainer import TrainConfig, Trainer, checkpoints

SPIKE = "after_tool_call/<|im_end|>"


def tiny(run_dir, **controller):
    return from_dict(TrainConfig, dict(
        run_dir=str(run_dir), steps=4, tasks_per_step=2, checkpoint_every=1, model=dict(name="tiny-random"),
        rollout=dict(group_size=2, max_action_tokens=8), eval=dict(n_tasks=1, at_start=False, max_action_tokens=8),
        grpo=dict(lr=1e-5, warmup_steps=0), warmup=dict(max_len=512),
        supervision=dict(round_sft=dict(epochs=1, batch_size=4, micro_batch_size=4, max_len=512)),
        controller=controller))


def test_actions_reach_the_run(tmp_path):
    cfg = tiny(tmp_path / "run", lr_backoff=True, sft_on_demand=True, unhealthy_patience=1, adaptive_lambda=True)
    with Trainer(cfg, progress=False) as tr:
        assert tr.controls.signal("ets") and not tr.controls.signal("sft_round")
        tr.safe_point(); tr.rl_step()                                      # step 0, plain GRPO
        tr._control(StepView(0, spiked=[SPIKE], active=[SPIKE], shares=dict(collapsed=0.6)))
        tr.run()                                                           # round on demand, then 3 more RL steps
        ev = tr.log.query("SELECT step, kind, message, data FROM events ORDER BY ts").rows(named=True)
        acts = [(json.loads(e["data"])["action"], json.loads(e["data"])["value"]) for e in ev if e["kind"] == "controller"]
        assert sorted(acts[:3]) == [("lambda", 0.25), ("lr", 0.5e-5), ("sft_round", 1.0)], acts
        # the real steps that follow are calm (random text has no tags): λ decays by half each step, the LR waits
        assert acts[3:] == [("lambda", 0.125), ("lambda", 0.0625), ("lambda", 0.03125)], acts
        phase = [e for e in ev if e["kind"] == "phase" and "on demand" in e["message"]]
        assert len(phase) == 1 and json.loads(phase[0]["data"])["on_demand"], ev
        steps = tr.log.query("SELECT step, phase, lr, sft_loss FROM steps ORDER BY step").rows(named=True)
        phases = [s["phase"] for s in steps]
        assert phases[0] == "rl" and phases[1] == "sft" and phases.count("rl") == 4, phases
        later = [s for s in steps if s["phase"] == "rl" and s["step"] > 0]
        assert all(s["lr"] <= 0.5e-5 + 1e-12 for s in later), later          # LR backed off (x0.5)
        assert all(s["sft_loss"] is not None for s in later), later          # joint loss on while λ > 0
        assert tr.controls.value("sft_weight") == 0.03125 and not tr.controls.signal("sft_round")
        assert tr.demand_rounds == 1 and tr.rounds_done == 0
        st = torch.load(checkpoints(cfg.run_dir)[-1] / "state.pt", weights_only=False)
        assert st["extra"]["controller"]["lr_scale"] == 0.5 and st["extra"]["demand_rounds"] == 1


def test_controller_state_survives_resume(tmp_path):
    cfg = tiny(tmp_path / "run", lr_backoff=True)
    with Trainer(cfg, progress=False) as tr:
        tr.safe_point(); tr.rl_step()
        tr._control(StepView(0, spiked=[SPIKE], active=[SPIKE]))
        tr.safe_point(); tr.rl_step(); tr.checkpoint()
    with Trainer.resume(cfg.run_dir, progress=False) as tr2:
        assert tr2.controller.lr_scale == 0.5 and tr2.controls.value("lr") == 0.5e-5
        tr2.run()
        lrs = tr2.log.query("SELECT lr FROM steps WHERE step >= 2")["lr"].to_list()
        assert lrs and all(abs(v - 0.5e-5) < 1e-12 for v in lrs), lrs


def test_off_by_default(tmp_path):
    with Trainer(tiny(tmp_path / "run"), progress=False) as tr:
        assert tr.controller is None and not tr.controls.signal("ets")
