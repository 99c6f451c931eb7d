"""toolrl_nb.diagnostics detectors and state frequencies on synthetic series with known answers (no model)."""
import random

import pytest

from toolrl_nb.diagnostics import (STATES, CollapseDetector, SpikeDetector, detect_spikes, lead_time, state_frequencies,
                                   state_frequencies_by_step)


def walk(seed, n=300, sd=0.003, start=0.1):
    rng = random.Random(seed); x, out = start, []
    for _ in range(n): x += rng.gauss(0, sd); out.append(x)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_no_false_positive_on_small_random_walks(seed):
    assert detect_spikes(walk(seed)) == []
    rng = random.Random(seed)
    assert detect_spikes([0.05 + rng.gauss(0, 0.008) for _ in range(300)]) == []


@pytest.mark.parametrize("seed,at,size", [(s, 20 + 13 * s, 0.1 + 0.05 * (s % 5)) for s in range(10)])
def test_step_jump_fires_once_at_the_jump(seed, at, size):
    x = [v + (size if i >= at else 0.0) for i, v in enumerate(walk(seed))]
    assert detect_spikes(x) == [at]


def test_stands_down_and_rearms():
    d = SpikeDetector()
    x = [0.1] * 20 + [0.5] * 15 + [0.1] * 15 + [0.5] * 3
    fired = [s for s, v in enumerate(x) if d.update(s, v)]
    assert fired[0] == 20 and 50 in fired and all(s in (20, 50) for s in fired)
    assert not d.active or d.history[-1] == 0.5


def test_constructor_checks_and_threshold():
    with pytest.raises(ValueError): SpikeDetector(direction="sideways")
    with pytest.raises(ValueError): SpikeDetector(window=3, warmup=5)
    d = SpikeDetector(min_abs=0.05)
    assert d.threshold() is None
    for s in range(5): d.update(s, 0.2)
    assert d.threshold() == 0.05


def test_collapse_onset_and_lead_time():
    det = CollapseDetector(patience=3)
    rewards = [min(0.5, 0.02 * s) for s in range(60)] + [0.0] * 10
    fired = [s for s, r in enumerate(rewards) if det.update(s, r, 0.0)]
    assert fired == [62] and det.collapse_step == 60 and det.reason == "reward_drop"
    assert lead_time([10, 45, 58], 60) == 50 and lead_time([10, 45, 58], 60, horizon=20) == 15
    assert lead_time([], 60) is None and lead_time([5], None) is None
    assert not det.update(100, 0.0, 1.0)                         # declared once


def test_collapse_by_share_without_reward():
    det = CollapseDetector(collapsed_share=0.5, patience=2)
    shares = [0.0] * 10 + [0.6, 0.4, 0.7, 0.8]
    assert [s for s, c in enumerate(shares) if det.update(s, 0.0, c)] == [13]
    assert (det.collapse_step, det.reason) == (12, "collapsed_share")


def test_state_frequencies():
    class A:  # any object with .state works (ActionRecord)
        def __init__(self, s): self.state = s
    f = state_frequencies([A("collapsed"), {"state": "healthy_tool_call"}, "collapsed", None], counts=True)
    assert f == {"healthy_tool_call": 0.25, "healthy_response": 0.0, "text_pollution": 0.0, "collapsed": 0.5, "n": 4}
    assert set(state_frequencies([])) == set(STATES)
    rows = [dict(step=s, state=st) for s, st in [(1, "collapsed"), (0, "healthy_response"), (1, "healthy_tool_call")]]
    by = state_frequencies_by_step(rows)
    assert list(by) == [0, 1] and by[1]["collapsed"] == 0.5 and by[0]["healthy_response"] == 1.0
    import pandas as pd
    assert state_frequencies_by_step(pd.DataFrame(rows)) == by
