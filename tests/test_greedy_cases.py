"""compare_greedy's verdicts, and the recorded file's shape."""

from __future__ import annotations

import pytest

from tests.greedy_cases import NearTieWarning, compare_greedy, load_greedy_cases

EXPECTED = [10, 11, 12, 13]
CLEAR = [1.0, 1.0, 1.0, 1.0]


def test_equal_is_none():
    assert compare_greedy(EXPECTED, CLEAR, list(EXPECTED)) is None


def test_first_difference_is_named_with_both_ids_and_the_gap():
    message = compare_greedy(EXPECTED, [1.0, 0.5, 0.25, 1.0], [10, 11, 99, 98])
    assert message == "step 2: expected id 12, got id 99 (reference gap 0.25)"


def test_comparison_stops_at_a_near_tie():
    gaps = [1.0, 0.001, 1.0, 1.0]
    with pytest.warns(NearTieWarning, match="compared 1 of 4 steps.*step 1"):
        assert compare_greedy(EXPECTED, gaps, [10, 77, 78, 79]) is None
    # Before the tie a difference still counts.
    with pytest.warns(NearTieWarning):
        assert compare_greedy(EXPECTED, gaps, [10, 11, 12, 13]) is None
    assert "step 0" in compare_greedy(EXPECTED, gaps, [5, 11, 12, 13])


def test_tie_gap_is_adjustable():
    gaps = [1.0, 0.01, 1.0, 1.0]
    assert "step 1" in compare_greedy(EXPECTED, gaps, [10, 77, 12, 13])
    with pytest.warns(NearTieWarning):
        assert compare_greedy(EXPECTED, gaps, [10, 77, 12, 13], tie_gap=0.02) is None


def test_ending_early_fails_unless_the_reference_stopped_there():
    assert "ended after 2 steps" in compare_greedy(EXPECTED, CLEAR, [10, 11])
    assert compare_greedy(EXPECTED, CLEAR, [10, 11], stop_ids={12}) is None


def test_too_many_ids_fail():
    assert "more than" in compare_greedy(EXPECTED, CLEAR, [*EXPECTED, 14])


def test_recorded_cases_are_complete():
    cases = load_greedy_cases()
    ids = {c["id"] for c in cases}
    assert {"short_question", "long_instruction", "code", "multilingual", "long_prompt_200_tokens"} <= ids
    assert "multi_turn" in ids and len(cases) >= 6
    for case in cases:
        assert len(case["reference_ids"]) == len(case["reference_gaps"]) == len(case["llama_cpp_ids"]) == 32
        assert min(case["reference_gaps"]) >= 0
    long = next(c for c in cases if c["id"] == "long_prompt_200_tokens")
    assert len(long["prompt_ids"]) >= 200
    roles = [m["role"] for m in next(c for c in cases if c["id"] == "multi_turn")["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
