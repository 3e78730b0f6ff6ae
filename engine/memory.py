"""What a model needs on the GPU, reckoned from the GGUF's tensor table before anything is uploaded.

`plan_memory` lists the buffers Model.load and its Kernels will create, buffer by buffer and with
their labels: the weights as the model stacks them (q | k | v and gate | up in one buffer each, unless
their types differ), padded copies of weights that are not whole 16-byte words, the KV cache, the
activations of max_batch tokens, the attention scores (one buffer all layers share), and the
sampling scratch. Every buffer is bound whole, so the largest buffer is also the largest binding.
`MemoryPlan.check` refuses what an adapter cannot hold or a budget does not allow, so Model.load never
leaves a half-loaded device. WebGPU does not say how much memory an adapter has: past the adapter's
per-buffer limits, only a budget the user sets bounds the total.

Not counted: the staging buffers reads borrow (64 KiB and up, made on first read) and `logits_all`,
which only tests make.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .config import ModelConfig
from .errors import InvalidRequest, UnsupportedModel
from .gguf import TensorInfo
from .gpu import TEXEL_BYTES, TEXELS_A_ROW, AdapterInfo, texel_rows
from .kernels import (
    ARGMAX_PARTS,
    DOT4_TYPES,
    MAX_RING_STEPS,
    MAX_TABLE_TOKENS,
    STEP_PARAMS_NBYTES,
    TILE_PLANES,
    attention_partial_rows,
    attention_scores_nbytes,
    dot4_x_nbytes,
    dot4_x_tokens,
    texel_layout_bytes,
    weights_in_texels,
)

WEIGHTS, KV_CACHE, ACTIVATIONS = "weights", "KV cache", "activations"
Buffer = tuple[str, str, int]  # (kind: WEIGHTS, KV_CACHE or ACTIVATIONS, label, bytes as the device allocates them)


@dataclass(frozen=True)
class MemoryPlan:
    """The GPU memory a model needs, in bytes, and its largest buffer."""

    weights: int  # weight buffers, and padded copies of those that are not whole 16-byte words
    kv_cache: int  # keys and values of n_ctx positions of every sequence, every layer
    activations: int  # max_batch tokens' activations, attention scores, sampling scratch, small constants
    n_ctx: int
    largest: int  # bytes of the largest buffer, which is bound whole: also the largest binding
    largest_name: str  # its label, as Model.load names it
    n_seqs: int = 1  # sequences the KV cache holds (requests decoded together)

    @property
    def total(self) -> int:
        """Bytes of every buffer the model creates at load."""
        return self.weights + self.kv_cache + self.activations

    def check(self, limits: AdapterInfo, budget: int | None = None) -> None:
        """Raise UnsupportedModel (one line naming both sizes) when a buffer exceeds the adapter's limits
        or the total exceeds `budget` bytes (None: no budget)."""
        for limit, what in ((limits.max_buffer_size, "buffer"), (limits.max_storage_binding, "binding")):
            if self.largest > limit:
                raise UnsupportedModel(
                    f"this model's largest buffer, {self.largest_name}, needs {format_bytes(self.largest)}, "
                    f"more than this GPU's largest {what} ({format_bytes(limit)})"
                )
        if budget is not None and self.total > budget:
            need, have = format_bytes(self.total), format_bytes(budget)
            if need == have:  # close enough to round alike: say it in bytes
                need, have = f"{self.total} bytes", f"{budget} bytes"
            raise UnsupportedModel(
                f"this model needs {need} ({format_bytes(self.weights)} of weights, "
                f"{format_bytes(self.kv_cache)} of KV cache for {self._positions()}, "
                f"{format_bytes(self.activations)} of activations), more than the {have} budget"
            )

    def _positions(self) -> str:
        return f"{self.n_ctx} tokens" if self.n_seqs == 1 else f"{self.n_seqs} sequences of {self.n_ctx} tokens"


def plan_memory(
    config: ModelConfig, tensors: Mapping[str, TensorInfo], n_ctx: int, max_batch: int, kv_f16: bool = False,
    max_binding: int | None = None, variant: str = "scalar", *, dot4: bool = False, n_seqs: int = 1,
    tiles: bool = False, q8_prompts: bool = False,
) -> MemoryPlan:
    """The memory Model.load(n_ctx=n_ctx, max_batch=max_batch, kv_f16=kv_f16) will allocate (n_ctx as
    the model uses it: at most the trained context) on a device binding at most `max_binding` bytes (the
    embedding and head are split into row ranges past it: see `row_ranges`); dot4 and n_seqs as Model.load's,
    tiles as the adapter's (products.tiles_fit), q8_prompts as Model.load's."""
    buffers = model_buffers(config, tensors, n_ctx, max_batch, kv_f16, max_binding, variant, dot4=dot4,
                            n_seqs=n_seqs, tiles=tiles, q8_prompts=q8_prompts)
    by_kind = {kind: sum(n for k, _, n in buffers if k == kind) for kind in (WEIGHTS, KV_CACHE, ACTIVATIONS)}
    _, largest_name, largest = max(buffers, key=lambda b: b[2])
    return MemoryPlan(by_kind[WEIGHTS], by_kind[KV_CACHE], by_kind[ACTIVATIONS], n_ctx, largest, largest_name,
                      n_seqs)


def model_buffers(
    config: ModelConfig, tensors: Mapping[str, TensorInfo], n_ctx: int, max_batch: int, kv_f16: bool = False,
    max_binding: int | None = None, variant: str = "scalar", *, dot4: bool = False, n_seqs: int = 1,
    tiles: bool = False, q8_prompts: bool = False,
) -> list[Buffer]:
    """Every buffer Model.load creates, in bytes as the device rounds them (whole words, at least one)."""
    c, T, f32 = config, max_batch, 4
    texels = weights_in_texels(variant)
    weights, matrices, separate_ffn = _weight_buffers(c, tensors, n_ctx, max_binding, texels)
    if texels:  # Uploader: matrices in texels of whole rows (their buffers freed at once), some types padded
        buffers = [
            (WEIGHTS, label, texel_rows(n) * TEXELS_A_ROW * TEXEL_BYTES if matrix else n)
            for (label, n), matrix in weights
        ]
    else:
        buffers = [(WEIGHTS, label, n) for (label, n), _ in weights]
        # Kernels._whole_vec4s: a kernel reads a matrix as vec4<u32>s; one not whole 16-byte words gets a padded
        # copy
        buffers += [(WEIGHTS, "padded weights", _ceil(n, 16)) for n in map(_device_size, matrices) if n % 16]
    cache = n_seqs * n_ctx * c.kv_dim * (2 if kv_f16 else 4)  # Kernels.kv_cache_nbytes, every sequence
    for i in range(c.n_layers):
        buffers += [(KV_CACHE, f"key_cache.{i}", cache), (KV_CACHE, f"value_cache.{i}", cache)]
    activations = [  # Model._make_activations
        ("ids", T * 4), ("x", T * c.dim * f32), ("xb", T * c.dim * f32), ("qkv", T * c.qkv_dim * f32),
        ("att", T * c.q_dim * f32), ("hb", T * c.ffn_dim * f32), ("x_last", c.dim * f32),
        ("logits", c.vocab_size * f32), ("token_out", 4), ("tokens_ahead", MAX_RING_STEPS * 4),
        *([("hb2", T * c.ffn_dim * f32)] if separate_ffn else []),  # Model._gate_up_ops, for Separate gate, up
        ("step_params", STEP_PARAMS_NBYTES), ("step_ring", MAX_RING_STEPS * 16),  # Kernels: StepParams, their ring
        ("argmax partials", ARGMAX_PARTS * 8), ("penalty entries", max(n_ctx, 1) * 8), ("penalty settings", 16),
    ]  # fmt: skip
    if variant == "scalar":  # Kernels.attention on CPU adapters: one scores buffer every layer shares
        activations.append(("attention scores", attention_scores_nbytes(n_ctx, T, c.n_heads)))
    if n_seqs > 1:  # Model.forward_rows: the rows that sample, their logits and argmax
        rows = min(T, MAX_TABLE_TOKENS)
        activations += [("x_rows", rows * c.dim * f32), ("row_logits", rows * c.vocab_size * f32),
                        ("row_tokens", rows * 4), ("argmax partials", ARGMAX_PARTS * 8 * rows)]  # fmt: skip
    if variant == "subgroup":  # Kernels.attention on GPUs: a few queries' parts of the context, summed after
        rows = attention_partial_rows(n_ctx, T)
        activations += [("attention partials", rows * c.q_dim * f32), ("attention maxima", rows * c.n_heads * 8)]
        for width, tokens in sorted(_dot4_scratch(tensors, dot4_x_tokens(T, tiles)) if dot4 else ()):  # their x
            planes, sums = dot4_x_nbytes(width)
            activations += [("dot4 x q", planes * tokens), ("dot4 x s", sums * tokens)]
        if tiles and q8_prompts and T > 1:  # ProductKernels._tiles: batches' x as bytes for the integer tiles
            for width in sorted({width for width, tokens in _dot4_scratch(tensors, T) if tokens == T}):
                planes, sums = dot4_x_nbytes(width, TILE_PLANES)
                activations += [("tile x q", planes * T), ("tile x s", sums * T)]
    # Kernels.rope's constants: a table of inverse frequencies per RoPE base, and ones if the model has no factors
    half = c.rope_dim // 2
    activations += [("rope_inv_freq", half * f32)] * len({c.rope_base(i) for i in range(c.n_layers)})
    if c.rope_factors_tensor(n_ctx) not in tensors:
        activations.append(("ones", half * f32))
    buffers += [(ACTIVATIONS, label, n) for label, n in activations]
    return [(kind, label, _device_size(n)) for kind, label, n in buffers]


def _dot4_scratch(tensors: Mapping[str, TensorInfo], max_batch: int) -> set[tuple[int, int]]:
    """(row length, tokens) of the integer x scratch of the products run as matvec_dot4 on GPUs: every 2-D
    tensor of a block (all are products, of up to max_batch tokens) and the head of one (output.weight, or
    the tied embedding), in a type with int_parts."""
    head = "output.weight" if "output.weight" in tensors else "token_embd.weight"
    scratch = {(info.shape[0], max_batch) for name, info in tensors.items()
               if info.type in DOT4_TYPES and name.startswith("blk.") and len(info.shape) == 2}
    if head in tensors and tensors[head].type in DOT4_TYPES:
        scratch.add((tensors[head].shape[0], 1))
    return scratch


def row_ranges(n_rows: int, row_bytes: int, max_binding: int | None) -> list[tuple[int, int]]:
    """(first row, rows) of each part a vocabulary-sized matrix (the embedding, the head) is uploaded in:
    one part when it fits a binding, else as few as fit, each a multiple of 16 rows (whole 16-byte words
    for the kernels' vec4 reads, whatever the row's size)."""
    if max_binding is None or n_rows * row_bytes <= max_binding:
        return [(0, n_rows)]
    per_part = max_binding // row_bytes // 16 * 16
    if per_part == 0:
        raise UnsupportedModel(f"a row of {format_bytes(row_bytes)} does not fit this GPU's largest binding "
                               f"({format_bytes(max_binding)}) 16 times")  # fmt: skip
    return [(first, min(per_part, n_rows - first)) for first in range(0, n_rows, per_part)]


# The matrices with a row per vocabulary entry: the ones that outgrow a binding (128k x 4096 and up).
VOCAB_MATRICES = ("token_embd.weight", "output.weight")


def stacking_runs(infos: list) -> list[list]:
    """Matrices a product would read stacked (q, k, v; gate, up), as the runs of them that share a buffer: the
    neighbours of one type (a buffer holds one), a run ending where a part would start off a 4-byte boundary.
    Q4_K_M files keep v in Q6_K in some layers, so their q and k stay one product and v takes its own."""
    runs: list[list] = []
    for info in infos:
        if runs and runs[-1][-1].type == info.type and runs[-1][-1].nbytes % 4 == 0:
            runs[-1].append(info)
        else:
            runs.append([info])
    return runs


def _weight_buffers(c: ModelConfig, tensors: Mapping[str, TensorInfo], n_ctx: int, max_binding: int | None,
                    texels: bool = False):
    """The weight buffers as Model.load uploads them, ((label, bytes), whether a matrix) each (with texels, a
    matrix's bytes as laid out there: texel_layout_bytes); the sizes of the matrices among them (kernels read
    those as vec4s); whether a gate and up are Separate. Absent tensors are left out: the uploader names them."""
    buffers: list[tuple[tuple[str, int], bool]] = []
    matrices: list[int] = []
    laid_out = lambda wtype, n: texel_layout_bytes(wtype, n) if texels else n  # noqa: E731

    def one(name: str, matrix: bool = True) -> None:
        if name not in tensors:
            return
        info = tensors[name]
        if name in VOCAB_MATRICES:  # in row ranges, past a binding
            rows, row_bytes = info.shape[1], info.nbytes // info.shape[1]
            for first, n in row_ranges(rows, laid_out(info.type, row_bytes), max_binding):
                label = name if n == rows else f"{name} rows {first}.."
                buffers.append(((label, laid_out(info.type, row_bytes * n)), True))
                matrices.append(row_bytes * n)
            return
        buffers.append(((name, laid_out(info.type, info.nbytes) if matrix else info.nbytes), matrix))
        if matrix:
            matrices.append(info.nbytes)

    def stacked(names: list[str]) -> bool:
        """Uploader.stacked: a buffer for each of stacking_runs' runs (one run: a Weight). Returns whether they
        are Separate."""
        runs = stacking_runs([tensors[name] for name in names if name in tensors])
        for run in runs:
            if len(run) == 1:
                one(run[0].name)
                continue
            total = sum(info.nbytes for info in run)
            buffers.append(((run[0].name + " stacked", laid_out(run[0].type, total)), True))
            matrices.append(total)
        return len(runs) > 1

    one("token_embd.weight")
    one("output_norm.weight", matrix=False)
    if not c.tied_output:  # else the embedding table is the head: the same buffer, padded once
        one("output.weight")
    if factors := c.rope_factors_tensor(n_ctx):
        one(factors, matrix=False)
    separate_ffn = False
    for i in range(c.n_layers):
        p = f"blk.{i}."
        if p + "attn_qkv.weight" in tensors:  # Phi 3 stores q, k, v stacked
            one(p + "attn_qkv.weight")
        else:
            stacked([p + f"attn_{n}.weight" for n in "qkv"])
        if p + "ffn_gate.weight" in tensors:
            separate_ffn |= stacked([p + "ffn_gate.weight", p + "ffn_up.weight"])
        else:  # Phi 3's ffn_up is gate and up
            one(p + "ffn_up.weight")
        one(p + "attn_output.weight")
        one(p + "ffn_down.weight")
        norms = ["attn_norm", "ffn_norm"]
        norms += ["attn_q_norm", "attn_k_norm"] if c.qk_norm else []
        norms += ["post_attention_norm", "post_ffw_norm"] if c.post_norms else []
        for name in norms:
            one(p + name + ".weight", matrix=False)
        if c.qkv_bias:  # _Uploader.stacked_norms: always one buffer
            biases = [tensors[p + f"attn_{n}.bias"] for n in "qkv" if p + f"attn_{n}.bias" in tensors]
            buffers.append(((p + "attn_q.bias stacked", sum(info.nbytes for info in biases)), False))
    return buffers, matrices, separate_ffn


def _device_size(n: int) -> int:
    """Bytes a device allocates for `n`: whole 4-byte words, at least one (Device.create_buffer)."""
    return _ceil(max(n, 4), 4)


def _ceil(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# ---------------------------------------------------------------- sizes as people write them

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
          "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12}  # fmt: skip


def parse_size(text: str) -> int:
    """Bytes in a size such as "6GiB", "512 MiB" or "1.5G" (K, M, G, T: binary; KB, MB, GB, TB: decimal)."""
    match = re.fullmatch(r"\s*(\d+\.?\d*|\.\d+)\s*([A-Za-z]*)\s*", text)
    unit = _UNITS.get(match[2].lower()) if match else None
    if unit is None or int(float(match[1]) * unit) <= 0:
        raise InvalidRequest(f"memory budget {text!r} is not a positive size such as 6GiB or 512MiB")
    return int(float(match[1]) * unit)


def format_bytes(n: int) -> str:
    """`n` bytes in the largest binary unit that keeps a leading digit: 5.2 GiB, 97.3 MiB, 16 B."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
