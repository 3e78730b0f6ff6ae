"""The engine: load a model once, then turn chat messages into a stream of tokens and text.

Generation is an async generator because the browser has no blocking GPU calls: each step records
the forward pass (and sampling dispatches), submits it, and awaits one small read-back. Greedy steps
run ahead (RUN_AHEAD): the GPU feeds each argmax to the next step itself, so the host records steps
k+1.. while the GPU computes step k, several to a submission whose tokens come back in one read
(STEPS_A_SUBMISSION).
"""

from __future__ import annotations

import array
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chat_template import render
from .config import DEFAULT_N_CTX, ModelConfig
from .default_model import default_model_path
from .errors import ContextTooLong
from .gguf import GGUFFile, open_gguf
from .gpu import Device, open_device
from .model import Model, ProgressFn
from .sampler import Sampler, SamplingOptions, StopMatcher, apply_penalties_cpu, penalty_counts
from .tokenizer import Tokenizer

# Greedy steps submitted ahead of the one whose token the host awaits. With one, the host's recording of step
# k + 2 had only step k + 1's GPU time to hide in, and any hitch (a collection, the read-back thread waking
# late, other work on the machine) left the GPU idle. H200, 1B shape: one -> two 729-790 -> 770-812 tok/s;
# two -> three, with a compiler busy on the same host, 516 / 590 -> 550 / 599 (SmolLM2-135M 398 / 467 -> 540 /
# 518). A consumer that stops wastes that many steps, rolled back.
RUN_AHEAD = 3
# ... and where submit blocks while an earlier submission runs (Device.submit_blocks: lavapipe), where three steps
# ahead held each token back from the reader three steps (~150 ms) and decoded no faster: SmolLM2-135M, one
# process, 0 / 1 / 3 steps ahead in turn, medians of 10 decodes of 64 tokens: 17.0 / 18.4 / 17.7 tok/s (NOTES.md).
RUN_AHEAD_WHERE_SUBMIT_BLOCKS = 1
# Greedy steps recorded into one submission, their tokens read back together (Model.forward_greedy): the host's
# fixed work a submission (the command buffer, the submit, the read's copy, map and wake-up) is paid once for
# them. H200, three rounds each: the best draws unchanged (GPU-bound), the worst 391 -> 761 tok/s at the 135M
# shape and 494 -> 739 at 1B, where host hitches had cost whole rounds; eight steps cost the 8B 2 % (NOTES.md,
# session 30). Where submit blocks (lavapipe) one: its host work overlaps nothing there, and a token would wait
# for its submission's last step.
STEPS_A_SUBMISSION = 4


@dataclass(frozen=True)
class Chunk:
    """One step of a generation: the token sampled and the text it made printable (may be "")."""

    token_id: int | None
    text: str
    finish_reason: str | None = None  # "stop" (EOS or stop string) or "length" on the last chunk


class Engine:
    """A model on a device, with its tokenizer and chat template."""

    def __init__(self, model: Model, tokenizer: Tokenizer, gguf: GGUFFile):
        self.model = model
        self.tokenizer = tokenizer
        # The header only: the file's bytes are on the GPU now, and in the browser holding the file (chunks of JS
        # memory, extension/model_bytes.js) would keep a second copy of the model alive.
        self.metadata = gguf.metadata
        self.chat_template = gguf.metadata.get("tokenizer.chat_template")
        self._cached: list[int] = []  # token ids whose keys and values are in the KV cache, in order
        # greedy steps submitted ahead of the token read (see RUN_AHEAD)
        self.run_ahead = RUN_AHEAD_WHERE_SUBMIT_BLOCKS if model.device.submit_blocks else RUN_AHEAD
        self.steps_a_submission = 1 if model.device.submit_blocks else STEPS_A_SUBMISSION
        # The tokens' read-back copied at the end of the steps' own submission, except where submit blocks: on
        # lavapipe the copy apart lets the host record the next step while the last one runs (30.0 against 26.5
        # tok/s together; NOTES.md, session 26).
        self.read_with_steps = not model.device.submit_blocks

    @classmethod
    async def load(
        cls,
        path: str | Path | None = None,
        *,
        gguf: GGUFFile | None = None,
        device: Device | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        progress: ProgressFn | None = None,
        **model_options: Any,
    ) -> Engine:
        """Open the GPU and load a GGUF (the default model when neither `path` nor `gguf` is given)."""
        gguf = gguf or open_gguf(path or default_model_path())
        ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors))  # name an unsupported model before any work
        tokenizer = Tokenizer.from_metadata(gguf.metadata)
        device = device or await open_device()
        model = Model.load(device, gguf, n_ctx=n_ctx, progress=progress, **model_options)
        return cls(model, tokenizer, gguf)

    # ---------------------------------------------------------------- prompts

    def chat_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of `messages` rendered with the model's own chat template, ready for the answer."""
        tok = self.tokenizer
        text = render(
            self.chat_template,
            messages,
            add_generation_prompt=True,
            bos_token=tok.token_text(tok.bos_id) if tok.bos_id is not None else "",
            eos_token=tok.token_text(tok.eos_id) if tok.eos_id is not None else "",
        )
        ids = tok.encode(text, parse_special=True)
        # Add BOS only where the template did not already write it (avoids llama.cpp's double-BOS).
        if tok.add_bos and tok.bos_id is not None and (not ids or ids[0] != tok.bos_id):
            ids.insert(0, tok.bos_id)
        return ids

    # ---------------------------------------------------------------- generation

    async def prefill(self, ids: list[int]) -> None:
        """Bring the KV cache to hold exactly `ids`, reusing the longest prefix already cached."""
        model = self.model
        if len(ids) >= model.n_ctx:
            raise ContextTooLong(
                f"the prompt has {len(ids)} tokens; this model's context holds {model.n_ctx} "
                "(including the answer): shorten the conversation"
            )
        common = _common_prefix(self._cached, ids)
        if common == len(ids):  # the last token must run again to produce fresh logits
            common -= 1
        model.rewind(common)
        self._cached = ids[:common]
        for start in range(common, len(ids), model.max_batch):
            batch = ids[start : start + model.max_batch]
            model.forward(batch)
            self._cached.extend(batch)

    async def logits_all(self, ids: list[int]) -> list[array.array]:
        """Logits at every position of `ids` from an empty cache (tests compare them with a reference)."""
        model, vocab = self.model, self.model.config.vocab_size
        model.rewind(0)
        self._cached = []
        rows = []
        for start in range(0, len(ids), model.max_batch):
            batch = ids[start : start + model.max_batch]
            model.forward(batch, all_logits=True)
            raw = await model.device.read_buffer(model.logits_all, 0, len(batch) * vocab * 4)
            flat = array.array("f", raw.tobytes())
            rows.extend(flat[i * vocab : (i + 1) * vocab] for i in range(len(batch)))
            self._cached.extend(batch)
        return rows

    async def generate(self, prompt_ids: list[int], options: SamplingOptions | None = None) -> AsyncIterator[Chunk]:
        """Stream the completion of `prompt_ids`. Closing the generator (aclose) stops it cleanly."""
        options = options or SamplingOptions()
        options.validate()
        await self.prefill(prompt_ids)
        if options.greedy and not has_penalties(options):
            tokens = self._greedy_ahead(options.max_tokens)
        else:
            tokens = self._one_by_one(list(prompt_ids), options, has_penalties(options))
        room = lambda: len(self._cached) + 1 < self.model.n_ctx  # noqa: E731
        async with aclosing(chunks(self.tokenizer, tokens, options, room)) as stream:  # closed when we are
            async for chunk in stream:
                yield chunk

    async def _greedy_ahead(self, max_tokens: int) -> AsyncIterator[int]:
        """Greedy tokens, the GPU run_ahead submissions of steps_a_submission steps ahead of the host: step k+1
        (its input copied on the GPU from step k's argmax) is recorded and submitted before step k's token is
        read back, so recording overlaps the GPU's work. When the consumer stops, the steps run ahead are
        forgotten."""
        model, device = self.model, self.model.device
        rec = device.recorder()
        model.op_argmax.record(rec, 1)  # the first token, from the prefill's logits
        reads = deque([self._submit_reading(rec, model.token_out, 1)])  # each submission's tokens, oldest first
        submitted = 1  # tokens whose steps are on the GPU
        try:
            while True:
                while submitted < max_tokens and len(reads) <= self.run_ahead and model.n_past + 1 < model.n_ctx:
                    n = min(self.steps_a_submission, max_tokens - submitted, model.n_ctx - 1 - model.n_past)
                    rec = device.recorder()
                    model.forward_greedy(rec, n)
                    reads.append(self._submit_reading(rec, model.tokens_ahead, n))
                    submitted += n
                tokens = (await reads.popleft()).cast("I").tolist()
                for i, token in enumerate(tokens):
                    yield token
                    if i + 1 == len(tokens) and not reads:  # no step ran this token: the end
                        return
                    self._cached.append(token)  # asked for more: the step after it ran this token
        finally:
            model.rewind(len(self._cached))
            for read in reads:
                await read  # frees its staging buffer

    def _submit_reading(self, rec, tokens, n: int) -> Awaitable[memoryview]:
        """Submit rec and start the read of the n u32 tokens it leaves in `tokens`: in the same submission
        where read_with_steps, else in one of its own after it."""
        device = self.model.device
        if self.read_with_steps:
            return device.start_read(tokens, 0, 4 * n, rec)
        device.submit(rec)
        return device.start_read(tokens, 0, 4 * n)

    async def _one_by_one(self, history: list[int], options: SamplingOptions, penalties: bool) -> AsyncIterator[int]:
        """Tokens sampled on the host, or greedy with penalties on the history: each step needs the last."""
        sampler = Sampler(options)
        pending: list[int] = []  # the token sampled last, to run in the same submit as the next sampling
        for _ in range(options.max_tokens):
            token = await self._next_token(pending, sampler, options, history, penalties)
            yield token
            history.append(token)
            pending = [token]

    async def _next_token(
        self, pending: list[int], sampler: Sampler, options: SamplingOptions, history: list[int], penalties: bool
    ) -> int:
        """Run `pending` tokens, then sample from the logits: argmax on the GPU when greedy, else on the
        host. One submit and one read-back a step."""
        model = self.model
        counts = penalty_counts(history, options.penalty_last_n) if penalties else []
        rec = model.device.recorder()
        if pending:
            model.forward(pending, recorder=rec)
            self._cached.extend(pending)
        if options.greedy:
            if penalties:
                model.op_penalize.set(
                    counts, options.repetition_penalty, options.presence_penalty, options.frequency_penalty
                )
                model.op_penalize.record(rec, 1)
            model.op_argmax.record(rec, 1)
            model.device.submit(rec)
            raw = await model.device.read_buffer(model.token_out, 0, 4)
            return raw.cast("I")[0]
        model.device.submit(rec)
        raw = await model.device.read_buffer(model.logits)
        logits = array.array("f", raw.tobytes())
        if penalties:
            apply_penalties_cpu(
                logits, counts, options.repetition_penalty, options.presence_penalty, options.frequency_penalty
            )
        return sampler.sample(logits)

    async def chat(
        self, messages: list[dict[str, Any]], options: SamplingOptions | None = None
    ) -> AsyncIterator[Chunk]:
        """Stream the assistant's answer to an OpenAI-style message list."""
        async for chunk in self.generate(self.chat_prompt(messages), options):
            yield chunk


def has_penalties(options: SamplingOptions) -> bool:
    """Whether sampling must see the history (repetition, presence or frequency penalties)."""
    return options.repetition_penalty != 1.0 or bool(options.presence_penalty or options.frequency_penalty)


async def chunks(
    tokenizer: Tokenizer, tokens: AsyncIterator[int], options: SamplingOptions, room: Callable[[], bool]
) -> AsyncIterator[Chunk]:
    """A generation's tokens as Chunks: text made printable, ended by an end-of-generation token, a stop
    string, `room()` turning false (no position left to run the token) or the tokens running out
    (max_tokens: "length"). Closes `tokens` when it ends or is closed itself."""
    stops = StopMatcher(options.stop)
    decoder = tokenizer.stream_decoder()
    try:
        async for token in tokens:
            if token in tokenizer.eog_ids:
                yield Chunk(token, stops.flush() + decoder.flush(), "stop")
                return
            text, stopped = stops.feed(decoder.feed(token))
            if stopped:
                yield Chunk(token, text, "stop")
                return
            if not room():
                yield Chunk(token, text + stops.feed(decoder.flush())[0] + stops.flush(), "length")
                return
            yield Chunk(token, text)
    finally:
        await tokens.aclose()  # a step run ahead is rolled back
    yield Chunk(None, stops.feed(decoder.flush())[0] + stops.flush(), "length")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
