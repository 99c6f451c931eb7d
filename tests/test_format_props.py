"Property-based tests for toolrl_nb.format: parsers and the classifier are total; render -> parse round-trips."
import keyword, random

from hypothesis import HealthCheck, given, settings, strategies as st

from toolrl_nb.format import (CONTROL_TOKENS, FORMATS, JSON_FORMAT, PYTHON_FORMAT, ParseResult, State, ToolCall,
                              classify_action, parse_calls, render_call)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- strategies
CTRL = list(CONTROL_TOKENS.values()) + ["<tool_c", "</tool", "_call>", "<|im_e", "|>", "<tools>"]
scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
jsonable = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                        max_leaves=12)
ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
py_args = st.dictionaries(ident, jsonable, max_size=4)
json_args = st.dictionaries(st.text(max_size=10), jsonable, max_size=4)
json_calls = st.lists(st.builds(ToolCall, st.text(min_size=1, max_size=15).filter(str.strip), json_args), min_size=1, max_size=3)
py_calls = st.lists(st.builds(ToolCall, ident, py_args), min_size=1, max_size=3)
prose = st.from_regex(r"[A-Za-z][A-Za-z ,.]{0,40}", fullmatch=True).map(str.strip)
noisy_text = st.lists(st.text(max_size=15) | st.sampled_from(CTRL), max_size=12).map("".join)

def valid_output(draw_calls):
    return draw_calls.map(lambda cs: JSON_FORMAT.render_calls(cs) + "<|im_end|>")

@st.composite
def mutated(draw):
    "A rendered valid action, then a few random edits (delete, duplicate, swap, truncate, insert control tokens)."
    fmt = draw(st.sampled_from(["json", "python"]))
    calls = draw(py_calls)
    s = FORMATS[fmt].render_calls(calls, prose=draw(st.sampled_from(["", "Let me check."])))
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 6))):
        if not s: break
        i = rnd.randrange(len(s)); op = rnd.randrange(5)
        if op == 0: s = s[:i] + s[i + 1:]
        elif op == 1: s = s[:i] + s[i] + s[i:]
        elif op == 2 and i + 1 < len(s): s = s[:i] + s[i + 1] + s[i] + s[i + 2:]
        elif op == 3: s = s[:i]
        else: s = s[:i] + rnd.choice(CTRL) + s[i:]
    return s

def _check_total(text):
    for lenient in (False, True):
        for fmt in FORMATS.values():
            r = fmt.parse(text, known={"ls", "cd"}, lenient=lenient)
            assert isinstance(r, ParseResult) and isinstance(r.errors, list) and isinstance(r.prose, str)
            assert all(isinstance(c, ToolCall) and isinstance(c.arguments, dict) for c in r.calls)
            assert r.n_blocks >= 0
        r = parse_calls(text, lenient=lenient)
        assert r.ok == (not r.errors)
    assert isinstance(classify_action(text), State)

# ---- totality
@SETTINGS
@given(st.text())
def test_total_on_random_unicode(text): _check_total(text)

@SETTINGS
@given(noisy_text)
def test_total_on_tag_soup(text): _check_total(text)

@SETTINGS
@given(mutated())
def test_total_on_mutated_valid_output(text): _check_total(text)

@SETTINGS
@given(st.binary(max_size=200))
def test_total_on_decoded_bytes(b): _check_total(b.decode("utf-8", errors="replace"))

# ---- round trips
@SETTINGS
@given(json_calls, st.sampled_from(["", "Let me look."]))
def test_json_round_trip(calls, p):
    out = JSON_FORMAT.render_calls(calls, prose=p)
    for lenient in (False, True):
        r = JSON_FORMAT.parse(out, lenient=lenient)
        assert r.calls == calls and r.ok and r.n_blocks == len(calls) and r.prose == p

@SETTINGS
@given(py_calls, st.sampled_from(["", "Let me look."]))
def test_python_round_trip(calls, p):
    out = PYTHON_FORMAT.render_calls(calls, prose=p)
    r = PYTHON_FORMAT.parse(out)
    assert r.calls == calls and r.ok and r.n_blocks == len(calls) and r.prose == p

# ---- classifier
@SETTINGS
@given(json_calls, st.sampled_from(["", "<|im_end|>", "\n<|im_end|>"]))
def test_rendered_calls_are_healthy(calls, stop):
    assert classify_action(JSON_FORMAT.render_calls(calls) + stop) == State.HEALTHY_CALL
    assert all(classify_action(render_call(c)) == State.HEALTHY_CALL for c in calls)

@SETTINGS
@given(prose.filter(lambda s: len(s.replace(" ", "").replace(",", "")) >= 3))
def test_plain_prose_is_a_response(p):
    assert classify_action(p + "<|im_end|>") == State.HEALTHY_RESPONSE
