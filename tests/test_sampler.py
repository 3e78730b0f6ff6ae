"""engine/sampler.py against numpy: the filter chain, draws, penalties, stop strings, validation."""

import random
import time
from array import array

import numpy as np
import pytest

from engine.errors import InvalidRequest
from engine.sampler import (
    Sampler,
    SamplingOptions,
    StopMatcher,
    apply_penalties_cpu,
    penalty_counts,
)

VOCAB = 49_152  # SmolLM2's


def opts(**kw) -> SamplingOptions:
    """Options with every filter off unless asked for."""
    return SamplingOptions(**{"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, **kw})


def target(logits, temperature, top_k=0, top_p=1.0, min_p=0.0) -> np.ndarray:
    """The distribution llama.cpp's chain draws from: top-k -> top-p -> min-p -> temperature."""
    lg = np.asarray(logits, dtype=np.float64)
    order = np.argsort(-lg, kind="stable")  # ties: lower id first
    if top_k:
        order = order[:top_k]
    if top_p < 1:
        p = np.exp(lg[order] - lg[order[0]])
        cum = np.cumsum(p / p.sum())
        order = order[: min(int(np.searchsorted(cum, top_p)) + 1, len(order))]
    if min_p > 0:
        order = order[lg[order] >= lg.max() + np.log(min_p)]
    probs = np.zeros(len(lg))
    probs[order] = np.exp((lg[order] - lg.max()) / temperature)
    return probs / probs.sum()


def as_dense(pairs, n) -> np.ndarray:
    out = np.zeros(n)
    for i, p in pairs:
        out[i] = p
    return out


# ---------------------------------------------------------------- greedy and seeds


@pytest.mark.parametrize("kind", ["list", "array", "memoryview", "bytes"])
def test_greedy_is_the_argmax_for_every_input_kind(kind):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 1000).astype(np.float32)
    raw = array("f", logits.tobytes())
    given = {"list": raw.tolist(), "array": raw, "memoryview": memoryview(raw), "bytes": raw.tobytes()}[kind]
    assert Sampler(opts(temperature=0)).sample(given) == int(np.argmax(logits))
    assert Sampler(opts(top_k=1)).sample(given) == int(np.argmax(logits))


def test_greedy_ties_go_to_the_lower_id():
    assert Sampler(opts(temperature=0)).sample([0.0, 2.0, 1.0, 2.0]) == 1


def test_temperature_towards_zero_is_the_argmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, 5000).astype(np.float32)
    logits[1234] = logits.max() + 0.1
    sampler = Sampler(opts(temperature=1e-3, seed=0))
    assert {sampler.sample(array("f", logits)) for _ in range(50)} == {1234}


def test_same_seed_same_draws_different_seeds_differ():
    logits = array("f", np.random.default_rng(2).normal(0, 1, 500).astype(np.float32))

    def draws(seed):
        s = Sampler(SamplingOptions(temperature=1.0, seed=seed))
        return [s.sample(logits) for _ in range(300)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


# ---------------------------------------------------------------- the filter chain

# Twelve logits with gaps wide enough that no filter boundary sits within float noise.
SMALL = [4.0, 3.3, 3.1, 2.5, 2.0, 1.6, 1.0, 0.4, -0.5, -1.0, -2.5, -4.0]
CHAINS = [
    dict(temperature=1.0),
    dict(temperature=0.5),
    dict(temperature=1.5, top_k=5),
    dict(temperature=1.0, top_p=0.9),
    dict(temperature=2.0, top_p=0.8),  # top-p judges T=1: T=2 first would keep more tokens
    dict(temperature=0.8, min_p=0.1),
    dict(temperature=1.2, top_k=8, top_p=0.85, min_p=0.05),
    dict(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05),  # the defaults
    dict(temperature=1.0, top_k=6, top_p=0.99, min_p=0.3),  # min-p cuts before top-p does
]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_draws_follow_the_target_distribution(chain):
    want = target(SMALL, **chain)
    sampler = Sampler(opts(seed=1, **chain))
    n = 20_000
    counts = np.bincount([sampler.sample(SMALL) for _ in range(n)], minlength=len(SMALL))
    assert set(np.flatnonzero(counts)) <= set(np.flatnonzero(want)), "a filtered-out token was drawn"
    kept = want > 0
    chi2 = float(np.sum((counts[kept] - n * want[kept]) ** 2 / (n * want[kept])))
    df = int(kept.sum()) - 1
    # A wrong filter moves whole tokens' worth of mass: chi2 in the hundreds. A right one: about df.
    assert chi2 < df + 6 * np.sqrt(2 * max(df, 1)) + 5, f"chi2 {chi2:.1f} with {df} degrees of freedom"
    assert np.allclose(as_dense(sampler.distribution(SMALL), len(SMALL)), want, atol=1e-12)


def test_top_p_sees_temperature_one_probabilities():
    # p(T=1) = .64 .24 .09 .03 -> top_p .8 keeps 2; at T=2 it would keep 3.
    sampler = Sampler(opts(temperature=2.0, top_p=0.8))
    assert [i for i, _ in sampler.distribution([3.0, 2.0, 1.0, 0.0])] == [0, 1]


def test_top_k_ties_keep_the_lower_ids():
    logits = [1.0, 5.0, 1.0, 5.0, 5.0]
    sampler = Sampler(opts(top_k=2, seed=0))
    assert [i for i, _ in sampler.distribution(logits)] == [1, 3]
    assert {sampler.sample(logits) for _ in range(200)} == {1, 3}


@pytest.mark.parametrize("std", [1.0, 4.0])
@pytest.mark.parametrize(
    "chain",
    [
        dict(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05),
        dict(temperature=0.9, top_p=0.95),
        dict(temperature=1.0, top_p=0.5, min_p=0.01),
        dict(temperature=1.3, top_p=0.999),  # a deep cut: most of the vocabulary sorted
        dict(temperature=1.0, top_p=0.9999, min_p=1e-5),
        dict(temperature=1.1, min_p=0.02),
        dict(temperature=0.6),
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_full_vocabulary_distribution_matches_numpy(chain, std):
    logits = np.random.default_rng(3).normal(0, std, VOCAB).astype(np.float32)
    logits[:3] += 12  # a few confident tokens, as real logits have
    got = as_dense(Sampler(opts(**chain)).distribution(array("f", logits)), VOCAB)
    want = target(logits, **chain)
    assert np.array_equal(got > 0, want > 0), f"kept {np.count_nonzero(got)}, want {np.count_nonzero(want)}"
    assert np.allclose(got, want, rtol=1e-9, atol=1e-15)


# ---------------------------------------------------------------- penalties


@pytest.mark.parametrize("store", [list, lambda xs: array("f", xs)])
def test_apply_penalties_cpu_matches_the_formula(store):
    rng = np.random.default_rng(4)
    base = rng.normal(0, 4, 300).astype(np.float32)
    history = rng.integers(0, 300, 80).tolist()
    counts = penalty_counts(history, 64)
    rep, presence, frequency = 1.3, 0.4, -0.25
    want = base.astype(np.float64)
    for token, count in counts:
        lg = want[token]
        want[token] = (lg / rep if lg > 0 else lg * rep) - (presence + frequency * count)
    logits = store(base.tolist())
    apply_penalties_cpu(logits, counts, rep, presence, frequency)
    assert np.allclose(np.asarray(logits, dtype=np.float64), want, rtol=1e-6, atol=1e-6)
    untouched = sorted(set(range(300)) - {t for t, _ in counts})
    assert np.array_equal(np.asarray(logits)[untouched], base[untouched])


@pytest.mark.parametrize(
    "history, last_n, want",
    [
        ([5, 3, 5, 7, 3, 5], 4, [(5, 2), (7, 1), (3, 1)]),
        ([5, 3, 5, 7, 3, 5], 64, [(5, 3), (3, 2), (7, 1)]),
        ([5, 3, 5, 7, 3, 5], -1, [(5, 3), (3, 2), (7, 1)]),
        ([5, 3, 5, 7, 3, 5], 1, [(5, 1)]),
        ([5, 3, 5, 7, 3, 5], 0, []),
        ([], 64, []),
        ([9, 9, 9], 2, [(9, 2)]),
    ],
)
def test_penalty_counts(history, last_n, want):
    assert penalty_counts(history, last_n) == want


# ---------------------------------------------------------------- stop strings


def stop_reference(text: str, stops) -> tuple[str, bool]:
    """Non-streaming answer: cut before the stop that ends first (earliest start on a tie)."""
    hits = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
    return (text[: min(hits)[1]], True) if hits else (text, False)


def stream(chunks, stops) -> tuple[str, bool]:
    """Feed chunks one by one; check nothing emitted is ever taken back."""
    matcher, out, stopped = StopMatcher(stops), "", False
    for chunk in chunks:
        text, stopped = matcher.feed(chunk)
        out += text
        if stopped:
            assert matcher.feed("more") == ("", True) and matcher.flush() == ""
            return out, True
    return out + matcher.flush(), False


def splits(text: str, cuts) -> list[str]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize(
    "text, stops",
    [
        ("Hello world. END of story", ("END",)),
        ("xaab tail", ("ab", "aab")),  # overlapping prefixes
        ("aaab", ("aab",)),  # the held "aa" must slide, not reset
        ("one two three", ("three", "two", "wo t")),  # several stops: the first to end wins
        ("abcd", ("abcd", "bc")),  # "bc" ends first, though "abcd" starts first
        ("no stop here at all", ("STOP", "\n\n")),
        ("prefix only: ST", ("STOP",)),  # a dangling prefix is flushed at the end
        ("naïve café → 東京<|end|>x", ("<|end|>",)),
        ("emoji 🙂🙃 stop 🛑 here", ("🛑",)),
        ("東京都東京", ("京都",)),
    ],
)
def test_stop_split_at_every_point(text, stops):
    want = stop_reference(text, stops)
    for cut in range(len(text) + 1):
        assert stream(splits(text, [cut]), stops) == want, f"split at {cut}"
    for a in range(len(text) + 1):
        for b in range(a, len(text) + 1):
            assert stream(splits(text, [a, b]), stops) == want, f"split at {a}, {b}"
    assert stream(list(text), stops) == want


def test_stop_matcher_random_texts_and_chunkings():
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 14)))
        stops = tuple("".join(rng.choice("abc") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3)))
        cuts = [rng.randint(0, len(text)) for _ in range(rng.randint(0, 5))]
        assert stream(splits(text, cuts), stops) == stop_reference(text, stops), (text, stops, cuts)


def test_no_stops_passes_text_straight_through():
    matcher = StopMatcher(())
    assert matcher.feed("hello") == ("hello", False)
    assert matcher.flush() == ""


def test_text_that_might_start_a_stop_is_held_back():
    matcher = StopMatcher(("</s>",))
    assert matcher.feed("answer </") == ("answer ", False)
    assert matcher.feed("b>") == ("</b>", False)
    assert matcher.feed(" ok</s") == (" ok", False)
    assert matcher.flush() == "</s"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "field, value",
    [
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("temperature", float("nan")),
        ("temperature", "hot"),
        ("top_k", -1),
        ("top_k", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.01),
        ("min_p", -0.1),
        ("min_p", 1.0),
        ("repetition_penalty", 0.0),
        ("repetition_penalty", -1.0),
        ("repetition_penalty", float("inf")),
        ("presence_penalty", 2.1),
        ("presence_penalty", -2.1),
        ("frequency_penalty", 3.0),
        ("frequency_penalty", -2.5),
        ("penalty_last_n", -2),
        ("max_tokens", 0),
        ("max_tokens", True),
        ("seed", "42"),
        ("stop", ("a", "b", "c", "d", "e")),
        ("stop", ("ok", "")),
        ("stop", ("ok", 3)),
    ],
)
def test_validate_names_the_field(field, value):
    with pytest.raises(InvalidRequest, match=field):
        SamplingOptions(**{field: value}).validate()
    with pytest.raises(InvalidRequest, match=field):
        Sampler(SamplingOptions(**{field: value}))


@pytest.mark.parametrize(
    "options",
    [
        SamplingOptions(),
        SamplingOptions(temperature=0, top_k=0, top_p=1.0, min_p=0.0),
        SamplingOptions(temperature=2, presence_penalty=-2, frequency_penalty=2, repetition_penalty=1.5),
        SamplingOptions(seed=0, penalty_last_n=-1, max_tokens=1, stop=("a", "b", "c", "d")),
    ],
)
def test_valid_options_pass(options):
    options.validate()


def test_greedy_property():
    assert SamplingOptions(temperature=0).greedy
    assert SamplingOptions(top_k=1).greedy
    assert not SamplingOptions().greedy


# ---------------------------------------------------------------- speed (printed, not asserted)


@pytest.mark.parametrize("std", [4.0, 1.0], ids=["std4-like-real-logits", "std1-near-flat"])
def test_speed_on_a_full_vocabulary(std, capsys):
    logits = array("f", np.random.default_rng(6).normal(0, std, VOCAB).astype(np.float32))
    cases = {
        "greedy": SamplingOptions(temperature=0),
        "top_k=40 (defaults)": SamplingOptions(seed=0),
        "top_k=0 top_p=0.95 min_p=0": SamplingOptions(top_k=0, top_p=0.95, min_p=0.0, seed=0),
        "top_k=0 top_p=1 min_p=0": SamplingOptions(top_k=0, top_p=1.0, min_p=0.0, seed=0),
    }
    with capsys.disabled():
        for name, options in cases.items():
            sampler, runs = Sampler(options), 30
            sampler.sample(logits)
            start = time.perf_counter()
            for _ in range(runs):
                sampler.sample(logits)
            ms = (time.perf_counter() - start) / runs * 1e3
            print(f"\n  sample, {VOCAB} logits (std {std}), {name}: {ms:.2f} ms", end="")
