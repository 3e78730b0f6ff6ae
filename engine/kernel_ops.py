"""Recorded operations: pipelines with their buffers bound once, dispatched with a grid from n_tokens.

`Kernels` (kernels.py) builds these; the model only calls `record` on them every step.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

MAX_GROUPS = 65535  # WebGPU's maxComputeWorkgroupsPerDimension default

Grid = Callable[[int], tuple[int, int, int]]


def cdiv(a: int, b: int) -> int:
    """Ceiling division."""
    return -(-a // b)


def split_groups(n: int) -> tuple[int, int]:
    """n workgroups as (x, y) with x <= 65535; shaders flatten them as wid.y * nwg.x + wid.x."""
    if n <= MAX_GROUPS:
        return max(n, 1), 1
    gy = cdiv(n, MAX_GROUPS)
    return cdiv(n, gy), gy


def fixed(groups: tuple[int, int, int]) -> Grid:
    """A grid that does not depend on the batch (guards in the shader use params instead)."""
    return lambda n_tokens: groups


class Capture:
    """A recorder that keeps the dispatches recorded into it, for `Device.plan`: ops' record() calls depend
    only on n_tokens, so a step's dispatches can be captured once and replayed every step alike."""

    def __init__(self):
        self.dispatches: list = []

    def dispatch(self, pipeline, bind_group, groups) -> None:
        self.dispatches.append((pipeline, bind_group, groups))

    def copy(self, *args) -> None:
        raise ValueError("a plan holds dispatches only: copies go between replays")


@dataclass(frozen=True)
class Step:
    """One dispatch: a pipeline, its bind group and its grid as a function of n_tokens."""

    pipeline: object
    bind_group: object
    grid: Grid

    def record(self, recorder, n_tokens: int) -> None:
        """Record this dispatch for a batch of n_tokens."""
        x, y, z = self.grid(n_tokens)
        assert max(x, y, z) <= MAX_GROUPS, f"grid {(x, y, z)} exceeds {MAX_GROUPS} workgroups a dimension"
        recorder.dispatch(self.pipeline, self.bind_group, (x, y, z))


class Op:
    """A dispatch (or a few) with buffers bound once at load time."""

    def __init__(self, *steps: Step, owned: tuple = ()):
        self.steps = steps
        self.owned = owned  # scratch buffers this op made; kept alive with it

    def record(self, recorder, n_tokens: int) -> None:
        """Record this op's dispatches for a batch of n_tokens (1 <= n_tokens <= the op's max_tokens)."""
        for step in self.steps:
            step.record(recorder, n_tokens)


class MatmulOp(Op):
    """A matrix product: the matrix-vector dispatches for one token, the token-tiled one for a batch, and
    optionally others for batches of up to `few` tokens (`few_steps`: streams decoding together)."""

    def __init__(self, decode: tuple[Step, ...], prefill: tuple[Step, ...] | None,
                 few_steps: tuple[Step, ...] = (), few: int = 0):
        super().__init__(*decode)
        self.decode, self.prefill = decode, prefill
        self.few_steps, self.few = few_steps, few if few_steps else 0

    def record(self, recorder, n_tokens: int) -> None:
        """Record y = W x for n_tokens rows of x."""
        if n_tokens == 1 or self.prefill is None:
            for step in self.decode:
                step.record(recorder, 1)
        else:
            for step in self.few_steps if n_tokens <= self.few else self.prefill:
                step.record(recorder, n_tokens)


class OneTokenOp(Op):
    """An op with dispatches of its own for a step of one token (`one_steps`; attention on GPUs quantises o's x
    there) and `steps` for every other step."""

    def __init__(self, *steps: Step, one_steps: tuple[Step, ...] | None = None, owned: tuple = ()):
        super().__init__(*steps, owned=owned)
        self.one_steps = one_steps or steps

    def record(self, recorder, n_tokens: int) -> None:
        for step in self.one_steps if n_tokens == 1 else self.steps:
            step.record(recorder, n_tokens)


class BatchOp(Op):
    """An op that only steps of more than `up_to` tokens need: for fewer, the products next to it do its work
    (Kernels.fuses_up_to)."""

    def __init__(self, *steps: Step, up_to: int = 1):
        super().__init__(*steps)
        self.up_to = up_to

    def record(self, recorder, n_tokens: int) -> None:
        if n_tokens > self.up_to:
            super().record(recorder, n_tokens)


class PenaltyOp(Op):
    """Repetition, presence and frequency penalties on one row of logits, in llama.cpp's order.

    `set` writes the (token, count) list and the three factors into the op's own buffers;
    `record` applies them. The list must hold distinct tokens (one invocation each, no atomics).
    """

    def __init__(self, device, step: Step, entries, settings, max_history: int, n_vocab: int):
        super().__init__(step, owned=(entries, settings))
        self.device, self.entries, self.settings = device, entries, settings
        self.max_history, self.n_vocab = max_history, n_vocab

    def set(self, token_counts: list[tuple[int, int]], repetition: float, presence: float, frequency: float) -> None:
        """Write the penalties the next `record` applies; an empty list makes `record` a no-op."""
        if len(token_counts) > self.max_history:
            raise ValueError(f"{len(token_counts)} penalised tokens exceed this op's max_history {self.max_history}")
        tokens = [token for token, _ in token_counts]
        if len(set(tokens)) != len(tokens) or any(not 0 <= t < self.n_vocab for t in tokens):
            raise ValueError("penalised tokens must be distinct ids inside the vocabulary")
        flat = [v for pair in token_counts for v in pair]
        if flat:
            self.device.write_buffer(self.entries, struct.pack(f"<{len(flat)}I", *flat))
        self.device.write_buffer(self.settings, struct.pack("<I3f", len(token_counts), repetition, presence, frequency))


def same_buffer(a, b) -> bool:
    """Whether two bindings (a buffer, or (buffer, offset, size)) are of one buffer."""
    return (a[0] if isinstance(a, tuple) else a) is (b[0] if isinstance(b, tuple) else b)


def check_distinct(a, b, what: str) -> None:
    """WebGPU forbids binding one buffer both writable and again in the same dispatch."""
    if same_buffer(a, b):
        raise ValueError(f"{what} must be a different buffer")
