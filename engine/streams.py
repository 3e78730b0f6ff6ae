"""Several generations at once (continuous batching): streams decode together, a token of each a step.

Each stream owns one of the model's sequences (Model.forward_rows) while it runs; sequence 0 stays the
engine's own (Engine.generate, with its prompt cache). A step holds the next token of every decoding
stream first, then as much of the waiting prompts as the step has room for, in the order the streams
came; a stream whose prompt ends in a step samples from that step's last row of it. Streams join and
leave between steps: one that ends, or whose reader stops reading, frees its sequence for the next
waiting one. Tokens never depend on the other streams: a row reads only its own sequence's cache, and
the products treat every row of a batch alike.

Sampling is each stream's own: greedy streams without penalties take the GPU's argmax of their row
(one small read a step for all of them); the others read their row of logits and sample on the host.
"""

from __future__ import annotations

import array
import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from .engine import Chunk, Engine, chunks, has_penalties
from .errors import ContextTooLong
from .sampler import Sampler, SamplingOptions, apply_penalties_cpu, penalty_counts

_END = None  # put on a stream's queue after its last token


@dataclass(eq=False)
class _Stream:
    prompt: list[int]
    options: SamplingOptions
    sampler: Sampler | None  # None: the GPU's argmax
    tokens: asyncio.Queue = field(default_factory=asyncio.Queue)  # sampled tokens, then _END (or an error)
    history: list[int] = field(default_factory=list)  # prompt and tokens so far, for penalties
    seq: int | None = None  # the model sequence it owns while active
    fed: int = 0  # prompt tokens in its sequence
    next_token: int | None = None  # sampled, to run in the next step
    produced: int = 0  # tokens sampled
    read: int = 0  # tokens its reader has taken
    gone: bool = False  # its reader stopped: leave at the next step


class Streams:
    """Streams of one engine whose model holds several sequences (Model.load(n_seqs=...))."""

    def __init__(self, engine: Engine):
        if engine.model.n_seqs < 2:
            raise ValueError("streams need a model loaded with n_seqs >= 2 (sequence 0 is the engine's own)")
        self.engine, self.model = engine, engine.model
        self.free = list(range(1, self.model.n_seqs))  # sequences no stream holds
        self.waiting: deque[_Stream] = deque()  # came, no sequence yet
        self.active: list[_Stream] = []  # in the order they came
        self.steps = 0  # forward steps run (a benchmark reads it)
        self._driver: asyncio.Task | None = None

    async def generate(self, prompt_ids: list[int], options: SamplingOptions | None = None) -> AsyncIterator[Chunk]:
        """Stream the completion of `prompt_ids`, decoded together with every other stream running.
        Closing the generator (aclose) ends this stream at the next step."""
        options = options or SamplingOptions()
        options.validate()
        if len(prompt_ids) >= self.model.n_ctx:
            raise ContextTooLong(
                f"the prompt has {len(prompt_ids)} tokens; this model's context holds {self.model.n_ctx} "
                "(including the answer): shorten the conversation"
            )
        greedy_gpu = options.greedy and not has_penalties(options)
        stream = _Stream(list(prompt_ids), options, None if greedy_gpu else Sampler(options), history=list(prompt_ids))
        self.waiting.append(stream)
        if self._driver is None or self._driver.done():
            self._driver = asyncio.ensure_future(self._drive())
        # Whether the token just read has a position to run at (as the driver counts: see _sample's `full`).
        room = lambda: len(stream.prompt) + stream.read < self.model.n_ctx  # noqa: E731
        try:
            async with aclosing(chunks(self.engine.tokenizer, self._tokens(stream), options, room)) as out:
                async for chunk in out:
                    yield chunk
        finally:
            await self._settle()

    async def _settle(self) -> None:
        """When no reader is left, wait for the driver to run out, so that nothing is left pending."""
        driver = self._driver
        if driver is not None and all(s.gone for s in [*self.active, *self.waiting]):
            try:
                await driver
            except Exception:  # noqa: S110  (every stream has been told of it)
                pass

    async def _tokens(self, stream: _Stream) -> AsyncIterator[int]:
        try:
            while (token := await stream.tokens.get()) is not _END:
                if isinstance(token, BaseException):
                    raise token
                stream.read += 1
                yield token
        finally:
            stream.gone = True

    # ---------------------------------------------------------------- the steps

    async def _drive(self) -> None:
        """Run steps while any stream is active or waiting."""
        try:
            while self._admit():
                rows, samplers = self._rows()
                self.model.forward_rows(rows)
                self.steps += 1
                await self._sample(samplers)
        except Exception as error:  # every stream hears of it; none hangs
            for stream in [*self.active, *self.waiting]:
                stream.tokens.put_nowait(error)
            self.active.clear()
            self.waiting.clear()
            raise

    def _admit(self) -> bool:
        """Let go of streams whose readers left, give free sequences to waiting streams; any left to run?"""
        for stream in [s for s in self.active if s.gone]:
            self._leave(stream)
        while self.waiting and self.waiting[0].gone:
            self.waiting.popleft()
        while self.waiting and self.free:
            stream = self.waiting.popleft()
            stream.seq = self.free.pop(0)
            self.model.rewind(0, stream.seq)
            self.active.append(stream)
        return bool(self.active)

    def _leave(self, stream: _Stream) -> None:
        self.active.remove(stream)
        self.free.append(stream.seq)
        stream.tokens.put_nowait(_END)

    def _rows(self) -> tuple[list[tuple[int, int]], list[tuple[_Stream, int]]]:
        """This step's (sequence, token) rows: decoding streams' next tokens, then prompts while room lasts;
        and which streams sample from which row."""
        rows, samplers = [], []
        decoding = [s for s in self.active if s.next_token is not None]
        for stream in decoding:
            samplers.append((stream, len(rows)))
            rows.append((stream.seq, stream.next_token))
            stream.next_token = None
        for stream in self.active:
            room = self.model.rows - len(rows)
            if stream.fed == len(stream.prompt) or room == 0:
                continue
            part = stream.prompt[stream.fed : stream.fed + room]
            rows += [(stream.seq, token) for token in part]
            stream.fed += len(part)
            if stream.fed == len(stream.prompt):  # its prompt ends here: its first token comes from this row
                samplers.append((stream, len(rows) - 1))
        return rows, samplers

    async def _sample(self, samplers: list[tuple[_Stream, int]]) -> None:
        """Each sampling stream's next token from its row; hand it over, and end streams that are done."""
        model, vocab = self.model, self.model.config.vocab_size
        argmax = None
        if any(stream.sampler is None for stream, _ in samplers):
            n = max(row for stream, row in samplers if stream.sampler is None) + 1
            argmax = (await model.device.read_buffer(model.row_tokens, 0, n * 4)).cast("I")
        for stream, row in samplers:
            if stream.sampler is None:
                token = argmax[row]
            else:
                raw = await model.device.read_buffer(model.logits_all, row * vocab * 4, vocab * 4)
                logits = array.array("f", raw.tobytes())
                if has_penalties(stream.options):
                    o = stream.options
                    counts = penalty_counts(stream.history, o.penalty_last_n)
                    apply_penalties_cpu(logits, counts, o.repetition_penalty, o.presence_penalty, o.frequency_penalty)
                token = stream.sampler.sample(logits)
            stream.produced += 1
            stream.history.append(token)
            stream.tokens.put_nowait(token)
            full = model.past[stream.seq] + 1 >= model.n_ctx
            if stream.produced >= stream.options.max_tokens or full or stream.gone:
                self._leave(stream)  # (the reader ends at an end-of-generation token or stop string itself)
            else:
                stream.next_token = token
