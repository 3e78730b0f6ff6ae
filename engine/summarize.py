"""Summaries of texts longer than the context: summarise parts that fit, then combine (map-reduce).

Pure logic over an engine's tokenizer and chat template; the host supplies the generation of each
part's summary, so this runs (and is tested) without a GPU.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

from .sampler import SamplingOptions
from .tokenizer import CONTROL

SYSTEM = "You are a helpful assistant. You write short, faithful summaries of the text you are given."
PART_MAX_TOKENS = 96  # each part's summary: a few sentences, so that many of them fit the combining prompt
MAX_ROUNDS = 3  # combining rounds before the notes are cut to fit (only for enormous pages)

PartSummary = Callable[[list[int], int, int], Awaitable[str | None]]  # (prompt ids, part, parts) -> text or None


def single_messages(text: str, title: str) -> list[dict[str, str]]:
    """The prompt for a text that fits the context in one piece."""
    about = f' titled "{title}"' if title else ""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Summarize the following text{about} in a few sentences.\n\n{text}"}]


def part_messages(text: str, title: str, part: int, parts: int) -> list[dict[str, str]]:
    """The prompt for one part of a long text."""
    about = f' of "{title}"' if title else ""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"This is part {part} of {parts}{about}. Summarize it in two or three "
                                        f"sentences.\n\n{text}"}]


def combine_messages(notes: list[str], title: str) -> list[dict[str, str]]:
    """The prompt that merges the parts' summaries into one."""
    about = f' "{title}"' if title else ""
    joined = "\n\n".join(f"Part {i}: {note.strip()}" for i, note in enumerate(notes, 1))
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"These are summaries of consecutive parts of one text{about}. Combine "
                                        f"them into a single summary of a few sentences.\n\n{joined}"}]


class Summarizer:
    """Plans the prompts of a summary: one prompt when the text fits, else parts and a combining prompt."""

    def __init__(self, engine: Any, options: SamplingOptions, chunk_tokens: int | None = None):
        self.engine = engine
        self.n_ctx = engine.model.n_ctx
        self.answer_tokens = min(options.max_tokens, self.n_ctx // 4)  # room kept for the final summary
        # Each part's summary is short: the request's sampling, with at most PART_MAX_TOKENS.
        self.part_options = dataclasses.replace(options, max_tokens=min(options.max_tokens, PART_MAX_TOKENS))
        self.chunk_tokens = chunk_tokens  # a smaller part size than the context allows (tests, slow devices)
        tok = engine.tokenizer
        controls = sorted({t for t, kind in zip(tok.tokens, tok.token_types, strict=True) if kind == CONTROL and t},
                          key=len, reverse=True)
        self._controls = re.compile("|".join(map(re.escape, controls))) if controls else None

    def clean(self, text: str) -> str:
        """Page text without the model's control-token strings: a page must not write "<|im_start|>system"."""
        return self._controls.sub("", text) if self._controls else text

    def count(self, text: str) -> int:
        """Tokens of `text` as plain text (page text never becomes special tokens when counted)."""
        return len(self.engine.tokenizer.encode(text, parse_special=False))

    def fits(self, messages: list[dict[str, str]], answer_tokens: int) -> list[int] | None:
        """The prompt's token ids when it leaves room for `answer_tokens`, else None."""
        ids = self.engine.chat_prompt(messages)
        return ids if len(ids) + answer_tokens < self.n_ctx else None

    async def prompt(self, text: str, title: str, part_summary: PartSummary):
        """The final prompt's ids and the number of parts (1: the text fitted); (None, n) if a part was stopped."""
        text, title = self.clean(text), self.clean(title)
        answer_tokens = self.answer_tokens
        if self.chunk_tokens is None or self.count(text) <= self.chunk_tokens:
            ids = self.fits(single_messages(text, title), answer_tokens)
            if ids is not None:
                return ids, 1
        notes, total = [text], 0
        for _ in range(MAX_ROUNDS):
            pieces = self.split("\n\n".join(notes), self.part_budget(title))
            total += len(pieces)
            notes = []
            for i, piece in enumerate(pieces, 1):
                note = await part_summary(self.engine.chat_prompt(part_messages(piece, title, i, len(pieces))),
                                          i, len(pieces))
                if note is None:
                    return None, total
                notes.append(note)
            ids = self.fits(combine_messages(notes, title), answer_tokens)
            if ids is not None:
                return ids, total
        # Still too long after several rounds: keep the notes that fit.
        while len(notes) > 1 and self.fits(combine_messages(notes, title), answer_tokens) is None:
            notes.pop()
        return self.engine.chat_prompt(combine_messages(notes, title)), total

    def part_budget(self, title: str = "") -> int:
        """Tokens of page text one part's prompt can carry."""
        overhead = len(self.engine.chat_prompt(part_messages("", title, 99, 99))) + 8  # joins between units
        budget = self.n_ctx - overhead - self.part_options.max_tokens - 1
        return max(16, min(budget, self.chunk_tokens or budget))

    def split(self, text: str, budget: int) -> list[str]:
        """Consecutive pieces of `text` of at most `budget` tokens, cut at paragraphs, then sentences, then words."""
        pieces: list[str] = []
        current: list[str] = []
        used = 0
        for unit, n in self._units(text, budget):
            if current and used + n > budget:
                pieces.append(" ".join(current))
                current, used = [], 0
            current.append(unit)
            used += n
        if current:
            pieces.append(" ".join(current))
        return pieces

    def _units(self, text: str, budget: int):
        """(text, tokens) of paragraphs, with those over `budget` broken into sentences, then words."""
        for paragraph in re.split(r"\n\s*\n|\n", text):
            paragraph = " ".join(paragraph.split())
            if not paragraph:
                continue
            n = self.count(paragraph)
            if n <= budget:
                yield paragraph, n
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
                n = self.count(sentence)
                if n <= budget:
                    yield sentence, n
                    continue
                # Words cost at least one token each plus their pieces: count them one at a time.
                for word in sentence.split(" "):
                    yield word, self.count(" " + word)
