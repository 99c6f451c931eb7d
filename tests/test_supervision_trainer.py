"""The supervision schemes inside one Trainer run (TINY RANDOM model on the fast lane): signals flipped mid-run are
logged at their step and change the groups from that step; interleaved rounds run SFT between RL rounds in-process."""
import json
from toolrl_nb.config import from_dict
from toolrl_nb.trainer import Trainer, TrainConfig

BASE = dict(tasks_per_step=2, model=dict(name="tiny-random"), eval=dict(n_tasks=1, at_start=False, max_action_tokens=8),
            rollout=dict(group_size=3, max_action_tokens=8), env=dict(options=dict(n_turns=[1, 2], n_distractors=0)))


def test_toggle_signals_mid_run(tmp_path):
    cfg = from_dict(TrainConfig, dict(BASE, run_dir=str(tmp_path / "r"), steps=4,
                                      supervision=dict(scheme="sync", ops_k=1, hbg_h=1, joint=False)))
    tr = Trainer(cfg, progress=False)
    kinds = []
    for flip in [None, ("ops", True), ("hbg", True), ("ops", False)]:
        if flip: tr.controls.set_signal(*flip)
        assert tr.safe_point()
        tr.rl_step()
    q = lambda sql: tr.log.query(sql).rows()
    assert q("SELECT step, message FROM events WHERE kind = 'toggle' ORDER BY step") == [(1, "ops on"), (2, "hbg on"), (3, "ops off")]
    assert q("SELECT step, kind, count(*) FROM trajectories GROUP BY ALL ORDER BY ALL") == [
        (0, "policy", 6), (1, "gold", 2), (1, "policy", 4), (2, "gold", 2), (2, "hint", 2), (2, "policy", 2),
        (3, "hint", 2), (3, "policy", 4)]
    assert [r[0] for r in q("SELECT step FROM events WHERE kind = 'hbg_mismatch' ORDER BY step")] == [2, 3]
    tr.close()


def test_joint_loss_logged(tmp_path):
    cfg = from_dict(TrainConfig, dict(BASE, run_dir=str(tmp_path / "j"), steps=2, supervision=dict(scheme="sync", joint=True, hbg_h=1)))
    tr = Trainer(cfg, progress=False).run()
    rows = tr.log.query("SELECT loss, pg_loss, sft_loss FROM steps WHERE phase = 'rl' ORDER BY step").rows()
    assert len(rows) == 2 and all(s is not None and s > 0 for _, _, s in rows)
    tr.close()


def test_interleaved_rounds_in_one_run(tmp_path):
    sup = dict(scheme="interleaved", rounds=[2, 2], round_data="ets+prs", ets_rule="any", ets_window=10,
               round_sft=dict(lr=1e-5, epochs=1, batch_size=4))
    cfg = from_dict(TrainConfig, dict(BASE, run_dir=str(tmp_path / "i"), steps=4, supervision=sup))
    tr = Trainer(cfg, progress=False)
    assert tr.phase == "setup"
    seen = []   # Trainer.phase (what the panel's phase box shows) at every logged step and evaluation
    log_sft, log_step, evaluate = tr._log_sft_step, tr.log_step, tr.evaluate
    tr._log_sft_step = lambda s: (seen.append(tr.phase), log_sft(s))[1]
    tr.log_step = lambda *a: (seen.append(tr.phase), log_step(*a))[1]
    tr.evaluate = lambda *a: (evaluate(*a), seen.append(tr.phase))[0]
    tr.run()
    assert [k for i, k in enumerate(seen) if i == 0 or seen[i - 1] != k] == ["rl", "sft-round", "rl", "eval"], seen
    phases = tr.log.query("SELECT step, phase FROM steps ORDER BY step").rows()
    ph = [p for _, p in phases]
    assert ph[:2] == ["rl", "rl"] and ph[-2:] == ["rl", "rl"] and set(ph[2:-2]) == {"sft"}   # RL(2) → SFT → RL(2)
    assert [s for s, _ in phases] == list(range(len(phases)))
    ev = tr.log.query("SELECT step, kind, data FROM events WHERE kind IN ('phase', 'optimizer_reset') ORDER BY ts").rows()
    d = json.loads(ev[0][2])
    assert ev[0][0] == 2 and d["round"] == 1 and d["n_prs"] == 4 and d["n_ets"] > 0   # 2 steps x 2 groups: rollout 1
    assert [e[1] for e in ev] == ["phase", "optimizer_reset"]
    assert tr.rounds_done == 1 and tr.rl_done == 4
    tr.close()


def test_interleaved_resets_without_sft(tmp_path):
    "round_data 'none': the interleaved arm's optimiser resets at the round boundary and no SFT (the resets' control arm)."
    sup = dict(scheme="interleaved", rounds=[2, 2], round_data="none", round_sft=dict(lr=1e-5, epochs=1, batch_size=4))
    tr = Trainer(from_dict(TrainConfig, dict(BASE, run_dir=str(tmp_path / "n"), steps=4, supervision=sup)), progress=False)
    assert not tr.controls.signal("ets") and not tr.controls.signal("prs")
    tr.run()
    assert [p for (p,) in tr.log.query("SELECT phase FROM steps ORDER BY step").rows()] == ["rl"] * 4
    ev = tr.log.query("SELECT step, kind, data FROM events WHERE kind IN ('phase', 'optimizer_reset') ORDER BY ts").rows()
    assert [(s, k) for s, k, _ in ev] == [(2, "phase"), (2, "optimizer_reset")]
    assert json.loads(ev[0][2])["n_ets"] == 0 and tr.rounds_done == 1 and tr.rl_done == 4
    tr.close()
