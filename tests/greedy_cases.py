"""The golden greedy cases (tests/data/greedy.json, written by scripts/record_greedy.py) and how to compare.

Two correct implementations may pick different tokens where the reference's top two logits are
within rounding of each other; from such a step on the continuations legitimately part, so the
comparison stops there instead of failing.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection
from pathlib import Path

GREEDY_JSON = Path(__file__).parent / "data" / "greedy.json"


class NearTieWarning(UserWarning):
    """The comparison stopped early at a step where the reference's top two logits nearly tie."""


def load_greedy_cases() -> list[dict]:
    """The recorded cases: id, messages, prompt, prompt_ids, reference_ids, reference_gaps, llama_cpp_ids."""
    return json.loads(GREEDY_JSON.read_text(encoding="utf-8"))["cases"]


def compare_greedy(
    expected: list[int],
    gaps: list[float],
    got: list[int],
    tie_gap: float = 0.005,
    stop_ids: Collection[int] = (),
) -> str | None:
    """None if `got` follows `expected`; otherwise a message naming the first differing step.

    Steps are compared up to the first one whose reference gap is below `tie_gap`: there rounding
    may decide, so the comparison stops (with a NearTieWarning saying so). `got` may end early only
    where the reference itself produced one of `stop_ids` (end of generation).
    """
    for step, want in enumerate(expected):
        gap = gaps[step]
        if gap < tie_gap:
            warnings.warn(
                f"compared {step} of {len(expected)} steps: the reference's top two logits nearly tie "
                f"at step {step} (gap {gap:.4g} < {tie_gap})",
                NearTieWarning,
                stacklevel=2,
            )
            return None
        if step == len(got):
            if want in stop_ids:
                return None
            return f"generation ended after {step} steps, where the reference goes on with id {want} (gap {gap:.4g})"
        if got[step] != want:
            return f"step {step}: expected id {want}, got id {got[step]} (reference gap {gap:.4g})"
    if len(got) > len(expected):
        return f"got {len(got)} ids, more than the {len(expected)} recorded"
    return None
