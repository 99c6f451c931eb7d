"""toolrl_nb.diagnostics probes: token-space positions and probe math against naive softmax / autograd.

Uses SmolLM2's tokenizer (offline, cached) and synthetic logits; no model weights.
"""
import math
import random

import pytest
import torch

from toolrl_nb.diagnostics import (ProbeCollector, ProbeVocab, hand_sequence, headline, logits_with, probe_positions,
                                   probe_step, sampled_spans)
from toolrl_nb.models import load_tokenizer

TAG = [44, 19324, 79, 4350, 46]


@pytest.fixture(scope="module")
def tok(): return load_tokenizer("tiny-random")


@pytest.fixture(scope="module")
def voc(tok): return ProbeVocab(tok)


PIECES = [('<tool_call>\n{"name": "f", "arguments": {"x": "a\\"}b"}}\n</tool_call>', 1), ("Hello there.", 1),
          ("<|im_end|>", 1), ("<tool_call><|im_end|>", 1), ("<tool_call>\n", 1), ("\n<|im_start|>user\nhi<|im_end|>\n", 0),
          ("<|im_start|>assistant\n", 0), ('{"x": 1} <tool_call>\n{"', 1), ("<tool_response>\nok\n</tool_response>", 0)]


def random_row(tok, rng, n=6):
    return hand_sequence(tok, [("<|im_start|>system\nsys<|im_end|>\n", 0)] + [rng.choice(PIECES) for _ in range(n)])


def test_positions_follow_the_token_pattern(tok, voc):
    rng = random.Random(0)
    for _ in range(200):
        ids, lm = random_row(tok, rng)
        rp = probe_positions(ids, lm, voc)
        assert [a for a, _ in rp.action_start] == list(range(len(sampled_spans(lm))))
        for a, t in rp.after_tool_call:
            assert ids[t - 6:t] == TAG + [198] and all(lm[t - 6:t + 1])
            s, e = rp.spans[a]; assert s <= t - 6 and t < e
        for a, t0 in rp.tag_sequence:
            assert ids[t0:t0 + 5] == TAG and all(lm[t0:t0 + 5])
        # every sampled, fully in-span canonical tag is found
        found = {t for _, t in rp.tag_sequence}
        for s, e in rp.spans:
            for t in range(s, e - 4):
                if ids[t:t + 5] == TAG: assert t in found
        for _, t in rp.prose + rp.json:
            assert lm[t] and ids[t] not in (0, 1, 2) and rp.labels[t] in ("prose", "json")
        assert all((lab == "") == (not m) for lab, m in zip(rp.labels, lm))


def test_json_labels_respect_strings(tok, voc):
    ids, lm = hand_sequence(tok, [("x", 0), ('<tool_call>\n{"name": "f", "arguments": {"s": "}}{"}}\n</tool_call>', 1),
                                  ("more text", 1)])
    rp = probe_positions(ids, lm, voc)
    text = "".join(voc.piece(ids[t]) for _, t in rp.json)
    assert text == 'name": "f", "arguments": {"s": "}}{"}}'
    assert [voc.piece(ids[t]) for _, t in rp.prose] == ["more", " text"]   # same action (contiguous), after the block


def random_logits(B, T, Vn, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, Vn, generator=g) * 2
    z[..., [39428, 2, 44, 9617, 1, 0]] += torch.randn(B, T, 6, generator=g) * 3 + 4   # make the probes non-trivial
    return z


def batch_of(tok, n_rows, seed):
    rng = random.Random(seed)
    rows = [random_row(tok, rng) for _ in range(n_rows)]
    T = max(len(i) for i, _ in rows)
    ids = torch.full((n_rows, T), 2); lm = torch.zeros(n_rows, T, dtype=torch.long)
    for b, (i, m) in enumerate(rows): ids[b, :len(i)] = torch.tensor(i); lm[b, :len(i)] = torch.tensor(m)
    return dict(input_ids=ids, loss_mask=lm, attention_mask=(torch.arange(T)[None] < torch.tensor([len(i) for i, _ in rows])[:, None]).long(),
                advantages=torch.randn(n_rows, generator=torch.Generator().manual_seed(seed)))


def test_probe_values_equal_naive_softmax(tok, voc):
    batch = batch_of(tok, 5, 1)
    B, T = batch["input_ids"].shape
    z = random_logits(B, T, len(tok), 1)
    col = ProbeCollector(voc, rows_for="all")
    col(slice(0, B), z, batch)
    out = col.rows(0)
    p = z.softmax(-1)
    n_atc = 0
    for r in out["probes"]:
        b, t = int(r["traj_id"]), r["position"]
        if r["probe"] == "after_tool_call":
            k = {'{"': 39428, "<|im_end|>": 2, "<tool_call>[0]": 44}[r["token"]]
            assert r["prob"] == pytest.approx(float(p[b, t, k]), rel=1e-4, abs=1e-7); n_atc += 1
        elif r["probe"] == "tag_sequence":
            ids = batch["input_ids"][b]
            want = math.prod(float(p[b, t + i, ids[t + i]]) for i in range(5))
            assert r["prob"] == pytest.approx(want, rel=1e-3, abs=1e-30)
        elif r["probe"] == "action_start" and r["token"] == "other":
            assert r["prob"] == pytest.approx(1 - float(p[b, t, 44] + p[b, t, 2]), abs=1e-5)
        elif r["probe"].startswith("misplaced"):
            assert r["prob"] == pytest.approx(float(p[b, t, [2, 44, 9617, 1, 0]].max()), rel=1e-4)
    assert n_atc > 0
    # the summary max of misplaced_json is the max over all JSON positions, computed naively
    want = max(float(p[b, t, [2, 44, 9617, 1, 0]].max()) for b in range(B)
               for _, t in probe_positions(batch["input_ids"][b].tolist(), batch["loss_mask"][b].tolist(), voc).json)
    got = [r for r in out["probe_summary"] if r["probe"] == "misplaced_json"][0]["max"]
    assert got == pytest.approx(want, rel=1e-4)


def test_micro_batches_and_dtypes_agree(tok, voc):
    batch = batch_of(tok, 6, 2)
    B, T = batch["input_ids"].shape
    z = random_logits(B, T, len(tok), 2)
    outs = []
    for parts in ([(slice(0, 6), z)], [(slice(0, 4), z[:4]), (slice(4, 8), z[4:])], [(slice(i, i + 1), z[i:i + 1]) for i in range(6)]):
        c = ProbeCollector(voc)
        for sl, lg in parts: c(sl, lg, batch)
        outs.append(c.rows(1))
    for o in outs[1:]:
        assert [(r["traj_id"], r["probe"], r["token"], r["position"]) for r in o["probes"]] == \
               [(r["traj_id"], r["probe"], r["token"], r["position"]) for r in outs[0]["probes"]]
        for a, b in zip(o["probe_summary"], outs[0]["probe_summary"]):
            assert (a["probe"], a["token"], a["n"]) == (b["probe"], b["token"], b["n"])
            assert a["mean"] == pytest.approx(b["mean"], rel=1e-5) and a["max"] == pytest.approx(b["max"], rel=1e-5)
        for a, b in zip(o["grad_split"], outs[0]["grad_split"]):
            assert a["self_mean"] == pytest.approx(b["self_mean"], abs=1e-7)
    c = ProbeCollector(voc); c(slice(0, 6), z.bfloat16(), batch)
    h16, h32 = headline(c.rows(0)["probe_summary"]), headline(outs[0]["probe_summary"])
    for k in h32:
        if not k.startswith("tag_sequence"): assert h16[k] == pytest.approx(h32[k], abs=0.02), k


def test_grad_split_equals_autograd(tok, voc):
    batch = batch_of(tok, 4, 3)
    B, T = batch["input_ids"].shape
    z = random_logits(B, T, len(tok), 3).requires_grad_()
    adv_bt = torch.randn(B, T)                                    # per-token advantages are accepted too
    for adv in (batch["advantages"], adv_bt):
        z.grad = None
        lm, ids = batch["loss_mask"].bool(), batch["input_ids"]
        A = adv if adv.dim() == 2 else adv[:, None].expand(B, T)
        (A * z.log_softmax(-1).gather(-1, ids[..., None])[..., 0] * lm).sum().backward()
        c = ProbeCollector(voc); c(slice(0, B), z.detach(), {**batch, "advantages": adv})
        rows = {r["token"]: r for r in c.rows(0)["grad_split"]}
        N = int(lm.sum())
        for name, k in (('{"', 39428), ("<|im_end|>", 2), ("<tool_call>[0]", 44)):
            assert rows[name]["n"] == N
            total = rows[name]["self_mean"] + rows[name]["other_mean"]
            assert total == pytest.approx(float(z.grad[..., k].sum()) / N, abs=1e-6)


def test_sampling_and_edge_cases(tok, voc):
    batch = batch_of(tok, 8, 4)
    B, T = batch["input_ids"].shape
    z = random_logits(B, T, len(tok), 4)
    pr, sm = probe_step(z, batch, tok, step=9, sample_trajs=2, traj_ids=[f"t{i}" for i in range(B)])
    assert {r["traj_id"] for r in pr if r["probe"] in ("after_tool_call", "action_start")} <= {"t0", "t4"}
    assert all(r["topk"] is not None and len(r["topk"]) == 10 for r in pr if r["probe"] in ("after_tool_call", "action_start"))
    assert all(r["step"] == 9 for r in pr + sm)
    pr_all, sm_all = probe_step(z, batch, tok, rows_for="all")
    assert sm_all == [dict(r, step=0) for r in sm]
    assert {r["traj_id"] for r in pr_all if r["probe"] == "action_start"} == {str(i) for i in range(B)}
    empty = dict(input_ids=torch.full((2, 5), 2), loss_mask=torch.zeros(2, 5, dtype=torch.long))
    assert probe_step(torch.zeros(2, 5, len(tok)), empty, voc) == ([], [])
    with pytest.raises(ValueError): ProbeCollector(voc, rows_for="some")


def test_exact_hand_probabilities(tok, voc):
    ids, lm = hand_sequence(tok, [("<|im_start|>assistant\n", 0), ("<tool_call>\n{\"a\": 1}", 1)])
    t = ids.index(39428)
    z = torch.zeros(1, len(ids), len(tok)); z[0, t] = logits_with(len(tok), {39428: 0.7, 2: 0.25})[0]
    _, sm = probe_step(z, dict(input_ids=torch.tensor([ids]), loss_mask=torch.tensor([lm])), voc)
    h = headline(sm)
    assert h['after_tool_call/{"'] == pytest.approx(0.7, abs=1e-6)
    assert h["after_tool_call/<|im_end|>"] == pytest.approx(0.25, abs=1e-6)
    assert h["after_tool_call/<tool_call>[0]"] == pytest.approx(0.05 / (len(tok) - 2), rel=1e-4)
