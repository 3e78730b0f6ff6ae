"""Sampling: options, repetition penalties, the token sampler and stop strings.

The chain is llama.cpp's default one, in this order:

    penalties -> top-k -> top-p -> min-p -> temperature -> draw

Penalties run before `Sampler.sample` sees the logits: on the GPU for greedy decoding (the kernel that
then takes the argmax there), on the host with `apply_penalties_cpu` when the logits are read back to
sample (engine.py `_next_token`). Top-p and min-p therefore judge the temperature-1 distribution (top-p renormalised
over the top-k survivors), and temperature only reshapes what survives; temperature 0 is greedy.
Ties in rank go to the lower token id, as a stable sort would.

Pure Python on purpose (engine/ also runs on Pyodide): every pass over the vocabulary is a C-level
`map`/`compress`/`max`; top-k uses heapq.nlargest, and top-p sorts only the tokens that could reach its
cut (see `_top_p`). Logits must be finite or -inf.
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, islice, repeat
from operator import ge, mul, neg, sub

from engine.errors import InvalidRequest

MAX_STOPS = 4  # OpenAI's limit on `stop`

# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class SamplingOptions:
    """One request's sampling parameters, with OpenAI's and llama.cpp's meanings."""

    temperature: float = 0.7  # 0 => greedy
    top_k: int = 40  # 0 => off
    top_p: float = 0.95  # 1 => off
    min_p: float = 0.05  # 0 => off; keep tokens with p >= min_p * p_max
    seed: int | None = None  # None => seeded from the OS
    repetition_penalty: float = 1.0  # 1 => off; logit / rep if logit > 0 else logit * rep
    presence_penalty: float = 0.0  # subtracted once from every token seen in the window
    frequency_penalty: float = 0.0  # subtracted once per occurrence in the window
    penalty_last_n: int = 64  # window of past tokens the penalties look at; -1 => all, 0 => none
    max_tokens: int = 512
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        """True when the draw is always the argmax (temperature 0, or top-k of 1)."""
        return self.temperature == 0 or self.top_k == 1

    def validate(self) -> None:
        """Raise InvalidRequest naming the first field that is out of range."""
        floats = ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
        for name in floats:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(f"{name} must be a number, got {value!r}")
        for name in ("top_k", "penalty_last_n", "max_tokens"):
            if type(getattr(self, name)) is not int:
                raise InvalidRequest(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.seed is not None and type(self.seed) is not int:
            raise InvalidRequest(f"seed must be an integer or null, got {self.seed!r}")
        # Written as "not (in range)" so that NaN fails too.
        ranges = (
            ("temperature", 0 <= self.temperature <= 2, "between 0 and 2"),
            ("top_k", self.top_k >= 0, "0 (off) or more"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("min_p", 0 <= self.min_p < 1, "in [0, 1)"),
            ("repetition_penalty", 0 < self.repetition_penalty < math.inf, "a finite number above 0"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "between -2 and 2"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "between -2 and 2"),
            ("penalty_last_n", self.penalty_last_n >= -1, "-1 (all), 0 (none) or more"),
            ("max_tokens", self.max_tokens >= 1, "at least 1"),
        )
        for name, ok, expected in ranges:
            if not ok:
                raise InvalidRequest(f"{name} must be {expected}, got {getattr(self, name)!r}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) for s in self.stop):
            raise InvalidRequest(f"stop must be a tuple of strings, got {self.stop!r}")
        if len(self.stop) > MAX_STOPS:
            raise InvalidRequest(f"stop may hold at most {MAX_STOPS} strings, got {len(self.stop)}")
        if "" in self.stop:
            raise InvalidRequest("stop strings must not be empty")


# ---------------------------------------------------------------- penalties


def penalty_counts(history: Sequence[int], last_n: int) -> list[tuple[int, int]]:
    """(token, count) over the last `last_n` ids of `history` (-1: all of it), in order of first appearance."""
    if last_n == 0:
        return []
    window = history if last_n < 0 else history[max(0, len(history) - last_n) :]
    return list(Counter(window).items())  # Counter keeps first-insertion order


def apply_penalties_cpu(
    logits: list[float] | array,
    counts: list[tuple[int, int]],
    repetition: float,
    presence: float,
    frequency: float,
) -> None:
    """Penalise `logits` in place, with the GPU kernel's formula (this is its reference and fallback).

    For each (token, count): l = l / repetition if l > 0 else l * repetition; then
    l -= presence + frequency * count. Arithmetic is float64 here, float32 on the GPU, so the two
    agree to float32 rounding (an array('f') rounds on store).
    """
    for token, count in counts:
        logit = logits[token]
        logit = logit / repetition if logit > 0 else logit * repetition
        logits[token] = logit - (presence + frequency * count)


# ---------------------------------------------------------------- sampler


class Sampler:
    """Draws tokens for one request; owns its random.Random, so the same seed gives the same draws."""

    def __init__(self, options: SamplingOptions):
        options.validate()
        self.options = options
        self._rng = random.Random(options.seed)

    def sample(self, logits) -> int:
        """One token id from float32 logits over the vocabulary (memoryview, array('f'), bytes or list)."""
        values = _as_floats(logits)
        if self.options.greedy:
            return values.index(max(values))  # first index of the max: ties go to the lower id
        top, ranked, floor = self._filter(values)
        if ranked is not None:  # draw a rank, then find its id: cheaper than gathering every kept id
            return _id_at_rank(values, ranked, self._draw(self._weights(ranked, top)))
        ids = _select(values, floor, len(values))  # min-p alone, or no filter at all
        logits = values if isinstance(ids, range) else map(values.__getitem__, ids)
        return ids[self._draw(self._weights(logits, top))]

    def distribution(self, logits) -> list[tuple[int, float]]:
        """The (token id, probability) pairs that `sample` draws from, in id order; for tests and logprobs."""
        values = _as_floats(logits)
        if self.options.greedy:
            return [(values.index(max(values)), 1.0)]
        top, ranked, floor = self._filter(values)
        ids = _select(values, floor, len(values)) if ranked is None else _select(values, ranked[-1], len(ranked))
        weights = self._weights(map(values.__getitem__, ids), top)
        total = math.fsum(weights)
        return [(i, w / total) for i, w in zip(ids, weights, strict=True)]

    def _filter(self, values: list[float]) -> tuple[float, list[float] | None, float]:
        """Apply top-k, top-p and min-p: (max logit, survivors' logits in descending order, min-p floor).

        Only top-k and top-p need a ranking; with neither, `ranked` is None and the survivors are
        simply the tokens at or above the floor, found without sorting anything.
        """
        o, n = self.options, len(values)
        if 0 < o.top_k < n:
            ranked = heapq.nlargest(o.top_k, values)  # descending; equal logits are told apart by id later
            top = ranked[0]
        else:
            ranked, top = None, max(values)
        floor = top + math.log(o.min_p) if o.min_p > 0 else -math.inf  # min-p: p >= min_p * p_max
        if o.top_p < 1:
            ranked = _top_p(values, ranked, top, o.top_p, floor)
        if ranked is not None and floor > -math.inf:
            ranked = ranked[: bisect_right(ranked, -floor, key=neg)]  # the prefix at or above the floor
        return top, ranked, floor

    def _weights(self, logits: Iterable[float], top: float) -> list[float]:
        """exp((logit - max) / temperature): at most 1, and exactly 1 for the top token."""
        return list(map(math.exp, map(mul, map(sub, logits, repeat(top)), repeat(1 / self.options.temperature))))

    def _draw(self, weights: list[float]) -> int:
        """An index drawn in proportion to `weights`, with exactly one random() so a seed replays."""
        cumulative = list(accumulate(weights))
        # The top token weighs 1, so the total is >= 1; zero weights (underflow) are never hit.
        r = self._rng.random() * cumulative[-1]
        return min(bisect_right(cumulative, r), len(cumulative) - 1)


def _as_floats(logits) -> list[float]:
    """The logits as a list of Python floats: one C-speed copy that every later pass reuses."""
    if isinstance(logits, list):
        return logits
    if isinstance(logits, bytes | bytearray) or (isinstance(logits, memoryview) and logits.format != "f"):
        logits = memoryview(logits).cast("B").cast("f")  # raw float32 bytes from a GPU read-back
    return logits.tolist() if hasattr(logits, "tolist") else list(logits)


def _top_p(values: list[float], ranked: list[float] | None, top: float, p: float, floor: float) -> list[float]:
    """The descending logits top-p keeps: the shortest prefix whose mass reaches p (crossing token included).

    Mass is at temperature 1 and, when top-k ran (`ranked` given), over its survivors only, as in
    llama.cpp. Tokens below min-p's floor may be left out of the result: min-p drops them next anyway.
    Exact: nothing that could reach the cut is left unsorted.
    """
    if ranked is not None:
        rank = _crossing(ranked, top, p * sum(map(math.exp, map(sub, ranked, repeat(top)))))
    else:
        mass = sum(map(math.exp, map(sub, values, repeat(top))))  # the whole vocabulary's, top token = 1
        # Sort only what can matter. Each token below `bound` weighs < e^(bound - top), so all of them
        # together weigh < n e^(bound - top) = (1 - p) mass: the mass at or above `bound` exceeds p mass,
        # and the cut lies above it. On SmolLM2's logits that leaves 1,000 to 13,000 of 49,152 to sort.
        bound = top + math.log((1 - p) * mass / len(values))
        ranked = _descending(values, max(floor, bound))
        rank = _crossing(ranked, top, p * mass)
    # None: the cut is below min-p's floor, so the floor decides (or float rounding put it past the end).
    return ranked if rank is None else ranked[: rank + 1]


def _descending(values: list[float], threshold: float) -> list[float]:
    """The logits >= threshold, largest first."""
    return sorted(compress(values, map(ge, values, repeat(threshold))), reverse=True)


def _crossing(ranked: list[float], top: float, target: float) -> int | None:
    """Index in `ranked` at which the running mass first reaches `target`, or None."""
    masses = accumulate(map(math.exp, map(sub, ranked, repeat(top))))  # nondecreasing: bisect works
    start = 0
    # The cut is usually within the first tens of tokens: look there before paying exp() for the rest.
    for size in (64, len(ranked)):
        chunk = list(islice(masses, size))
        i = bisect_left(chunk, target)
        if i < len(chunk):
            return start + i
        start += len(chunk)
    return None


def _id_at_rank(values: list[float], ranked: list[float], rank: int) -> int:
    """The token id at `rank` in descending order, equal logits ranked by id (as a stable sort would)."""
    logit = ranked[rank]
    i = values.index(logit)
    for _ in range(rank - bisect_left(ranked, -logit, key=neg)):  # how many equal logits rank before it
        i = values.index(logit, i + 1)
    return i


def _select(values: list[float], cutoff: float, n_keep: int) -> Sequence[int]:
    """Ids whose logit is >= cutoff, in id order, at most n_keep of them (only ties at the cutoff can overflow)."""
    if cutoff == -math.inf and n_keep >= len(values):
        return range(len(values))
    ids = list(compress(range(len(values)), map(ge, values, repeat(cutoff))))
    if len(ids) > n_keep:  # keep the lowest ids among the tied, as a stable sort would
        above = [i for i in ids if values[i] > cutoff]
        tied = [i for i in ids if values[i] == cutoff]
        ids = sorted(above + tied[: n_keep - len(above)])
    return ids


# ---------------------------------------------------------------- stop strings


class StopMatcher:
    """Finds stop strings in streamed text without emitting text that might be the start of a stop string.

    Generation stops at the first stop string to *end* in the text (it is the one generated first);
    among those ending at the same place, the one starting earliest, so no stop text leaks. The result
    does not depend on how the text is split into chunks.
    """

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(stops)
        self.stopped = False
        self._held = ""  # the longest tail of the text so far that begins some stop string

    def feed(self, text: str) -> tuple[str, bool]:
        """Take the next chunk; return (text safe to emit now, stopped)."""
        if self.stopped:
            return "", True
        text = self._held + text
        start = _first_stop(text, self.stops)
        if start is not None:
            self._held, self.stopped = "", True
            return text[:start], True
        keep = _partial_stop_len(text, self.stops)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """At the end of generation, the held-back text (empty once stopped)."""
        held, self._held = self._held, ""
        return held


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Start of the stop string that ends first in `text` (earliest start on a tie), or None."""
    best = None  # (end, start)
    for stop in stops:
        start = text.find(stop)  # a stop's first occurrence is also where it ends first
        if start >= 0 and (best is None or (start + len(stop), start) < best):
            best = (start + len(stop), start)
    return None if best is None else best[1]


def _partial_stop_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest
