"Our scorer vs BFCL's own multi_turn_checker (fed only with call strings we build), and gold replay on all 800 tasks."
import time
import pytest
from toolrl_nb.bfcl import BfclEnv, agreement, split_tasks, CATEGORIES
from toolrl_nb.envs import replay

def test_agreement_all_gold_and_perturbed(capsys):
    t0 = time.perf_counter()
    a = agreement(split_tasks("all"), n_perturbed=400, seed=0)
    with capsys.disabled():
        print(f"\nagreement: {a['agree']}/{a['n']} verdicts, error types {a['type_agree']}/{a['n_both_fail']}, "
              f"{a['by_label']}, {time.perf_counter() - t0:.1f}s")
    assert a["gold_passed"] == 800 and a["agree"] == a["n"] == 1200 and a["type_agree"] == a["n_both_fail"] > 100
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils as mu
    assert not [k for k in vars(mu) if k.startswith("toolrl_")]          # no BFCL globals left behind

@pytest.mark.parametrize("fmt", ["json", "python"])
def test_gold_replay_all(fmt, capsys):
    env, t0 = BfclEnv(split="all"), time.perf_counter()
    bad = [t.id for t in split_tasks("all") if replay(env, t, env.gold_actions(t, fmt), fmt)[1].reward != 1.0]
    with capsys.disabled(): print(f"\ngold replay ({fmt}): {800 - len(bad)}/800 in {time.perf_counter() - t0:.1f}s")
    assert bad == []
