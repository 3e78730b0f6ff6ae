"""Several generations at once (continuous batching): streams decode together, a token of each a step.

Each stream owns one of the model's sequences (Model.forward_rows) while it runs; sequence 0 stays the
engine's own (Engine.generate, with its prompt cache). A step holds the next token of every decoding
stream first, then as much of the waiting prompts as the step has room for, in the order the streams
came; a stream whose prompt ends in a step samples from that step's last row of it. Streams join and
leave between steps: one that ends, or whose reader stops reading, frees its sequence for the next
waiting one. Tokens never depend on the other streams: a row reads only its own sequence's cache, and
the products treat every row of a batch alike.

Sampling is each stream's own: greedy streams without penalties take the GPU's argmax of their row
(one small read a step for all of them, and the next step runs before it is read: `_drive`); the
others read their row of logits and sample on the host.
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
    produced: int = 0  # tokens sampled and handed to its reader's queue
    in_flight: int = 0  # rows of submitted steps it samples from, not yet read
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
        # Whether the token just read has a position to run at (as the driver counts: _deliver's `full`).
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
        """Run steps while any stream is active or waiting, one step ahead of the read-backs: step k + 1 is
        recorded and submitted before step k's tokens are read (the reads are queued before it runs), its
        greedy streams' tokens copied on the GPU from step k's argmax, so the host's work overlaps the
        GPU's (as Engine.generate's greedy path). A stream sampled on the host sits out the step after each
        of its tokens, while its logits are read."""
        pending: _Step | None = None  # submitted, not yet read
        try:
            while True:
                self._admit()
                step = self._next_step(pending)
                if pending is not None:
                    await self._deliver(pending)
                    # A read that finished while the next step was recorded resolves without suspending:
                    # yield, so that readers (and the rest of the host) run between steps.
                    await asyncio.sleep(0)
                elif step is None:
                    if self.active:  # every active stream has a token or prompt to run, or one in flight
                        raise RuntimeError(f"{len(self.active)} streams have nothing to run")
                    return
                pending = step
        except Exception as error:  # every stream hears of it; none hangs
            for stream in [*self.active, *self.waiting]:
                stream.tokens.put_nowait(error)
            self.active.clear()
            self.waiting.clear()
            raise

    def _admit(self) -> None:
        """Let go of streams whose readers left, and give free sequences to waiting streams. (Rows of a
        stream that left may still be running: later steps overwrite what they wrote.)"""
        for stream in [s for s in self.active if s.gone]:
            self._leave(stream)
        while self.waiting and self.waiting[0].gone:
            self.waiting.popleft()
        while self.waiting and self.free:
            stream = self.waiting.popleft()
            stream.seq = self.free.pop(0)
            self.model.rewind(0, stream.seq)
            self.active.append(stream)

    def _leave(self, stream: _Stream) -> None:
        self.active.remove(stream)
        self.free.append(stream.seq)
        stream.tokens.put_nowait(_END)

    def _next_step(self, pending: _Step | None) -> _Step | None:
        """Record and submit the next step and start reading what it samples; None when no row can run now.
        Rows: decoding streams' next tokens (known on the host, or in the pending step's argmax on the
        GPU), then prompts while the step has room."""
        model = self.model
        rows: list[tuple[int, int]] = []
        samplers: list[tuple[_Stream, int]] = []
        copies: list[tuple[int, int]] = []  # (row of the pending step's argmax, row of this step)
        ahead: set[_Stream] = set()
        for stream in self.active:
            if stream.next_token is not None:
                token, stream.next_token = stream.next_token, None
            elif pending is not None and stream in pending.greedy_rows and self._may_run_ahead(stream):
                token = 0  # a placeholder: the copy below writes the real one
                copies.append((pending.greedy_rows[stream], len(rows)))
                ahead.add(stream)
            else:
                continue
            samplers.append((stream, len(rows)))
            rows.append((stream.seq, token))
        for stream in self.active:
            room = model.rows - len(rows)
            if stream.fed == len(stream.prompt) or room == 0:
                continue
            part = stream.prompt[stream.fed : stream.fed + room]
            rows += [(stream.seq, token) for token in part]
            stream.fed += len(part)
            if stream.fed == len(stream.prompt):  # its prompt ends here: its first token comes from this row
                samplers.append((stream, len(rows) - 1))
        if not rows:
            return None
        if pending is not None:
            pending.ran_ahead = ahead
        rec = model.device.recorder()
        for src, dst in copies:  # run after forward_rows' write of the ids: queued before the buffer runs
            rec.copy(model.row_tokens, src * 4, model.ids, dst * 4, 4)
        model.forward_rows(rows, [row for _, row in samplers], recorder=rec)
        model.device.submit(rec)
        self.steps += 1
        for stream, _ in samplers:
            stream.in_flight += 1
        return self._start_reads([stream for stream, _ in samplers])

    def _may_run_ahead(self, stream: _Stream) -> bool:
        """Whether a greedy stream's token in the pending step may run before it is read: it is not the
        last of max_tokens, and has a position (Engine.generate's rule). The reader may still end it at a
        stop: that row is then wasted."""
        k = stream.produced + stream.in_flight  # that token's number
        return not stream.gone and k < stream.options.max_tokens and len(stream.prompt) + k < self.model.n_ctx

    def _start_reads(self, samplers: list[_Stream]) -> _Step:
        """Queue the copies of what the step's samplers need (sampler j's logits and argmax are row j of
        forward_rows' outputs), before any later step overwrites them."""
        model, vocab = self.model, self.model.config.vocab_size
        greedy_rows = {stream: j for j, stream in enumerate(samplers) if stream.sampler is None}
        tokens = None
        if greedy_rows:
            tokens = model.device.start_read(model.row_tokens, 0, (max(greedy_rows.values()) + 1) * 4)
        logits = {stream: model.device.start_read(model.row_logits, j * vocab * 4, vocab * 4)
                  for j, stream in enumerate(samplers) if stream.sampler is not None}  # fmt: skip
        return _Step(samplers, greedy_rows, tokens, logits)

    async def _deliver(self, step: _Step) -> None:
        """Hand each sampling stream its token from the step; end the streams that are done."""
        argmax = (await step.tokens).cast("I") if step.tokens is not None else None
        for stream in step.samplers:
            stream.in_flight -= 1
            if stream.sampler is None:
                token = argmax[step.greedy_rows[stream]]
            else:
                logits = array.array("f", (await step.logits[stream]).tobytes())
                if has_penalties(stream.options):
                    o = stream.options
                    counts = penalty_counts(stream.history, o.penalty_last_n)
                    apply_penalties_cpu(logits, counts, o.repetition_penalty, o.presence_penalty, o.frequency_penalty)
                token = stream.sampler.sample(logits)
            if stream not in self.active:  # it left while this step ran
                continue
            stream.produced += 1
            stream.history.append(token)
            stream.tokens.put_nowait(token)
            full = len(stream.prompt) + stream.produced >= self.model.n_ctx  # no position to run it
            if stream.produced >= stream.options.max_tokens or full:
                self._leave(stream)  # (the reader ends at an end-of-generation token or a stop string itself)
            elif stream not in step.ran_ahead:
                stream.next_token = token


@dataclass(eq=False)
class _Step:
    """A submitted step: who samples from which row, and the reads under way."""

    samplers: list[_Stream]  # in the order of their rows of forward_rows' outputs
    greedy_rows: dict[_Stream, int]  # GPU-greedy streams' rows of the argmax (row_tokens)
    tokens: object | None  # the read of row_tokens, when greedy_rows
    logits: dict[_Stream, object]  # the reads of host-sampled streams' logits rows
    ran_ahead: set[_Stream] = field(default_factory=set)  # streams whose token the next step runs already
