"""Pause on a spike without a panel: the trainer carries out `diagnostics.on_spike: pause` itself, waits at its next
safe point, and a thread resumes it, then stops it. TINY RANDOM model on the fast lane; the spike thresholds are set
to zero so that the first rise of any probe-bank probability above its pre-RL baseline fires. A one-step SFT warm-up
first, to see `Trainer.phase` there."""
import json, threading, time

from toolrl_nb.config import from_dict
from toolrl_nb.trainer import TrainConfig, Trainer


def test_pause_on_spike_without_panel(tmp_path):
    cfg = from_dict(TrainConfig, dict(
        run_dir=str(tmp_path / "run"), steps=3, tasks_per_step=1, model=dict(name="tiny-random"),
        warmup_tasks=1, warmup=dict(epochs=1, batch_size=1, max_len=512),        # a one-step SFT warm-up: phase "warm-up"
        rollout=dict(group_size=2, max_action_tokens=8), eval=dict(n_tasks=1, at_start=False, max_action_tokens=8),
        grpo=dict(lr=1e-3, warmup_steps=0), diagnostics=dict(on_spike="pause", spike_z=0.0, spike_min_abs=0.0, bank_contexts=8)))
    tr = Trainer(cfg, progress=False)
    assert tr.controls.signal("on_spike_pause") and not tr.controls.signal("on_spike_stop")
    seen, sft_phases = [], []
    log_sft = tr._log_sft_step
    tr._log_sft_step = lambda st: (sft_phases.append(tr.phase), log_sft(st))[1]
    def operator():     # someone at the run, without a panel: resume after the first pause, stop at the second
        while len(seen) < 2 and not tr.controls.stopped:
            if tr.controls.paused:
                done = tr.rl_done; time.sleep(1.0)
                seen.append((done, tr.rl_done, tr.phase))    # the trainer waits: no step ran while paused
                tr.controls.resume() if len(seen) == 1 else tr.controls.stop()
            time.sleep(0.05)
    th = threading.Thread(target=operator, daemon=True); th.start()
    tr.run(); th.join(timeout=30)
    ev = tr.log.query("SELECT step, kind, message, data FROM events ORDER BY ts").rows(named=True)
    kinds = [e["kind"] for e in ev]
    assert "spike" in kinds, kinds
    pauses = [json.loads(e["data"])["reason"] for e in ev if e["kind"] == "pause"]
    assert pauses and all(r.startswith("spike on ") for r in pauses), pauses
    print("pauses seen (rl_done before, after 1 s, phase):", seen, "events:", kinds)
    assert seen and all(before == after and phase == "rl" for before, after, phase in seen), seen
    assert "paused" in kinds and "resume" in kinds
    assert sft_phases and set(sft_phases) == {"warm-up"}, sft_phases        # Trainer.phase during the warm-up
    first_spike = kinds.index("spike")
    assert kinds.index("paused") > first_spike                     # paused at the safe point after the spike
    if len(seen) == 2: assert tr.controls.stopped and "stopped" in kinds
    tr.close()
