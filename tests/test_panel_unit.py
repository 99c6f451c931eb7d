"""Level 1 (no kernel): the panel's buttons and fields drive a REAL short training loop.

Uses the tiny random model (`model=dict(name="tiny-random")`) on the fast lane with a tiny budget (`panel.tiny_config`),
so an RL step takes about a second on CPU. `Button.click()` / setting `.value` fire the same handlers a browser does."""
import json, time

from toolrl_nb.panel import Panel, show_panel, tiny_config
from toolrl_nb.trainer import checkpoints


def wait(cond, timeout=180, every=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if cond(): return True
        time.sleep(every)
    return False


def test_buttons_drive_a_real_run(tmp_path):
    p = show_panel(tiny_config(tmp_path / "run", steps=200, supervision=dict(scheme="sync")), refresh_s=0.1)   # sync: OPS may be switched on
    try:
        shown = lambda: int(p.step_w.value) if p.step_w.value else -1     # the step box: the last logged step
        buttons = lambda: {n: not getattr(p, f"{n}_btn").disabled for n in ("start", "pause", "resume", "stop")}
        assert "ready" in p.status_w.value and shown() == -1
        assert buttons() == dict(start=True, pause=False, resume=False, stop=False)
        assert "Pick a step and a trajectory" in p.insp_actions.value      # the inspector opens with a hint
        p.start_btn.click()
        assert p.running and buttons() == dict(start=False, pause=True, resume=False, stop=True)
        assert wait(lambda: shown() >= 2), "the step counter never reached 2"
        assert wait(lambda: p.insp_step.options and p.insp_step.options[0] >= 2)   # the inspector follows new steps

        # pause holds: status says pausing, then paused after step N, and the counter stays frozen
        p.pause_btn.click()
        assert "pausing at next safe point" in p.status_w.value
        assert wait(lambda: "paused after step" in p.status_w.value, 120), p.status_w.value
        n = p.trainer.step                                # the next step to run
        assert f"paused after step {n - 1}" in p.status_w.value and p.last_step == n - 1
        assert buttons() == dict(start=False, pause=False, resume=True, stop=True)
        sps = max(p.sps_w.value, 0.5)
        time.sleep(min(3 * sps, 8))                      # several step-times
        assert p.trainer.step == n and shown() == n - 1

        # a toggle and a value while paused: logged at the step where they take effect (the paused step)
        p.signal_ws["ops"].value = not p.signal_ws["ops"].value
        p.value_ws["temperature"].value = 0.7
        p.on_spike_w.value = "pause"
        on = "on" if p.signal_ws["ops"].value else "off"
        assert f"takes effect at step {n}: ops {on}, temperature 0.7" in p.status_w.value, p.status_w.value  # shown at once
        p.refresh(); assert "takes effect at step" in p.status_w.value   # until that step is logged
        assert p.trainer.controls.signal("on_spike_pause") and not p.trainer.controls.signal("on_spike_stop")

        p.resume_btn.click()
        assert wait(lambda: shown() >= n + 1), "resume did not continue"
        assert wait(lambda: "takes effect" not in p.status_w.value, 30), p.status_w.value

        p.stop_btn.click()
        p.thread.join(timeout=180)
        assert not p.running
        p.refresh()
        assert "stopped" in p.status_w.value, p.status_w.value
        assert not any(buttons().values())
        p.resume(); p.refresh()                           # Resume after Stop: says why, not silently ignored
        assert "Resume: this run has stopped; continue it from its last checkpoint with `toolrl resume" in p.status_w.value
        ev = p.log.query("SELECT step, kind, message, data FROM events ORDER BY ts")
        rows = ev.rows(named=True)
        toggles = [r for r in rows if r["kind"] == "toggle" and json.loads(r["data"])["name"] == "ops"]
        assert len(toggles) == 1 and toggles[0]["step"] == n, toggles
        sets = [r for r in rows if r["kind"] == "set" and json.loads(r["data"])["name"] == "temperature"]
        assert sets and sets[0]["step"] == n
        kinds = [r["kind"] for r in rows]
        assert "paused" in kinds and "resume" in kinds and "stopped" in kinds
        # stop leaves a checkpoint of the last completed step
        ck = checkpoints(p.trainer.run_dir)
        assert ck and ck[-1].name == f"step_{p.trainer.step - 1:06d}"
        assert p.trainer.step - 1 == p.log.last_step()
        assert "checkpoint" in kinds

        # the same log in the inspector and the SQL box
        p._fill_steps()
        assert p.insp_step.options[0] == p.log.last_step()
        p.insp_step.value = p.insp_step.options[-1]
        tid = p.insp_traj.options[1]
        p.insp_traj.value = tid
        assert tid in p.insp_actions.value and "action 0" in p.insp_actions.value
        if p.insp_probe.options: assert p.insp_topk.value.startswith("<svg")
        df = p.run_sql("SELECT step, kl FROM steps ORDER BY step")
        assert df.height == p.log.last_step() + 1 and "<svg" in p.sql_chart.value
    finally:
        p.trainer.controls.stop(); p.close()
        if p.thread: p.thread.join(timeout=60)
        p.trainer.close()


def test_on_spike_menu_drives_the_trainer(tmp_path):
    "The panel's on_spike menu sets the switches the trainer's own spike reaction reads (the trainer pauses/stops, not the panel)."
    p = show_panel(tiny_config(tmp_path / "run", steps=1), auto_refresh=False)
    try:
        p.on_spike_w.value = "pause"
        p.trainer.react_to_spike("after_tool_call/<|im_end|>")
        p.refresh()
        assert p.trainer.controls.paused
        p.resume_btn.click(); p.on_spike_w.value = "stop"
        p.trainer.react_to_spike("again")
        assert p.trainer.controls.stopped
    finally: p.close(); p.trainer.close()


def test_refused_switch_shows_the_error_and_flips_back(tmp_path):
    "A toggle the run's config cannot run (HBG on with ops_k + hbg_h = group_size) is refused: error on the status line, toggle back off."
    p = show_panel(tiny_config(tmp_path / "run", steps=1, supervision=dict(scheme="sync", ops=True, ops_k=1, hbg_h=1)), auto_refresh=False)
    try:
        assert set(p.signal_ws) == {"ops", "hbg", "joint", "ets", "prs"}      # the declared toggles; no sft_round, no sft
        p.signal_ws["hbg"].value = True
        assert not p.trainer.controls.signal("hbg") and p.signal_ws["hbg"].value is False
        assert "supervision.ops_k" in p.status_w.value
    finally: p.close(); p.trainer.close()


def test_read_only_panel_on_a_missing_run(tmp_path):
    import pytest
    with pytest.raises(FileNotFoundError, match="no run log at .*nothing"): Panel.from_run(tmp_path / "nothing")


def test_stabilisers_switch_from_the_panel(tmp_path):
    "The stabiliser menus set `grpo.<field>` values the next RL step uses; a value the config refuses flips back with its error."
    p = show_panel(tiny_config(tmp_path / "run", steps=1), auto_refresh=False)
    try:
        assert set(p.stab_ws) == {"clip_eps_high", "entropy_coef", "loss_agg", "importance_level", "zero_advantage",
                                  "mask_truncated", "rollout_correction"}
        assert p.stab_ws["loss_agg"].value == "token-mean" and p.stab_ws["clip_eps_high"].value == 0.2   # the config's
        p.stab_ws["importance_level"].value = "sequence"; p.stab_ws["clip_eps_high"].value = 0.28
        assert p.trainer.grpo_config(1.0).importance_level == "sequence" and p.trainer.grpo_config(1.0).clip_eps_high == 0.28
        assert "grpo.importance_level sequence" in p.status_w.value           # shown as pending at once
        p.stab_ws["entropy_coef"].value = -1.0                                 # refused: grpo.entropy_coef must be >= 0
        assert p.stab_ws["entropy_coef"].value == 0.0 and "grpo.entropy_coef" in p.status_w.value
        assert p.trainer.grpo_config(1.0).entropy_coef == 0.0
    finally: p.close(); p.trainer.close()
