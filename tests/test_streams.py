"""Streams decoding together (engine/streams.py): each stream's answer is the one it gets alone, whoever
else runs, joins or leaves; every way a stream ends frees its sequence."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from engine.engine import Engine
from engine.errors import ContextTooLong, InvalidRequest
from engine.model import Model
from engine.sampler import SamplingOptions
from engine.streams import Streams

QUESTIONS = ["Count from one to ten.", "What is the capital of France?", "Name three colours.",
             "Write a haiku about the sea.", "Say hello in Spanish."]  # fmt: skip


@pytest.fixture(scope="module")
def streams(engine, model_gguf) -> Streams:
    """The default model with 4 sequences besides the engine's own: 5 questions make one wait for a seat."""
    model = Model.load(engine.model.device, model_gguf, n_ctx=256, max_batch=16, n_seqs=5)
    return Streams(Engine(model, engine.tokenizer, model_gguf))


async def _answer(agen, leave_after: int | None = None) -> list:
    chunks = []
    async with aclosing(agen) as stream:
        async for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == leave_after:
                break
    return chunks


def _fields(chunk) -> tuple:
    return chunk.token_id, chunk.text, chunk.finish_reason


def _options(i: int) -> SamplingOptions:
    """Greedy for most; one seeded draw at temperature 0.8; one greedy with a repetition penalty."""
    if i == 3:
        return SamplingOptions(temperature=0.8, seed=7, max_tokens=9)
    if i == 4:
        return SamplingOptions(temperature=0, repetition_penalty=1.3, max_tokens=7)
    return SamplingOptions(temperature=0, max_tokens=6 + 2 * i)


def test_streams_together_answer_as_each_alone(engine, streams, event_loop_session):
    prompts = [engine.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]
    alone = [event_loop_session.run_until_complete(_answer(engine.generate(p, _options(i))))
             for i, p in enumerate(prompts)]  # fmt: skip

    async def together():
        return await asyncio.gather(*(_answer(streams.generate(p, _options(i))) for i, p in enumerate(prompts)))

    steps = streams.steps
    got = event_loop_session.run_until_complete(together())
    for i, (a, g) in enumerate(zip(alone, got, strict=True)):
        assert [_fields(c) for c in g] == [_fields(c) for c in a], f"stream {i}"
    # Decoded together: far fewer steps than the streams' tokens (4 seats for 5 streams; the two sampled on
    # the host sit out every other step).
    assert streams.steps - steps < 0.7 * sum(len(a) for a in alone)
    assert sorted(streams.free) == [1, 2, 3, 4] and not streams.active and not streams.waiting


def test_a_stream_that_leaves_frees_its_seat_and_the_rest_go_on(engine, streams, event_loop_session):
    prompts = [engine.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS[:3]]
    greedy = SamplingOptions(temperature=0, max_tokens=8)
    alone = event_loop_session.run_until_complete(_answer(engine.generate(prompts[2], greedy)))
    stop = "".join(c.text for c in alone[2:4])

    counting = engine.tokenizer.encode(", ".join(str(n) for n in range(1, 400)))
    near_full = counting[len(counting) - 250 :]  # 6 positions left, and counting goes on

    async def together():
        return await asyncio.gather(
            _answer(streams.generate(prompts[0], greedy), leave_after=2),  # its reader leaves
            _answer(streams.generate(near_full, SamplingOptions(temperature=0, max_tokens=100))),
            _answer(streams.generate(prompts[2], SamplingOptions(temperature=0, max_tokens=8, stop=(stop,)))),
        )

    left, long, stopped = event_loop_session.run_until_complete(together())
    assert len(left) == 2
    assert long[-1].finish_reason == "length" and len(near_full) + len(long) == 256  # the context ran out
    assert stopped[-1].finish_reason == "stop" and "".join(c.text for c in stopped) == "".join(
        c.text for c in alone[:2])  # fmt: skip
    assert sorted(streams.free) == [1, 2, 3, 4] and not streams.active


def test_bad_requests_are_refused_before_they_wait(engine, streams, event_loop_session):
    with pytest.raises(InvalidRequest):
        event_loop_session.run_until_complete(_answer(streams.generate([1, 2], SamplingOptions(top_p=0))))
    with pytest.raises(ContextTooLong):
        event_loop_session.run_until_complete(_answer(streams.generate([1] * 256)))
    with pytest.raises(ValueError, match="n_seqs"):
        Streams(engine)
