"""Which WGSL files make each kernel's module, and where they are read from.

WGSL has no include, so a kernel's module is its own file followed by the libraries it uses; kernels.py
compiles the joined text once per (file, weight type).
"""

from __future__ import annotations

from pathlib import Path

from .weight_types import BF16, F16, F32, IQ4_NL, IQ4_XS, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0

# These files are appended to a module's own text (declarations may come in
# any order; only directives such as `enable` must come first, so they stay in the module's file).
# WEIGHTS stands for the library that binds the weights (a buffer or texels) and those that decode the
# pipeline's WTYPE (_WEIGHT_LIBRARIES).
WEIGHTS = "<weights>"
# What a module that includes matmul.wgsl needs for its products that rotate and store q | k | v themselves.
_ROPE_STORE = ("rope_store.wgsl", "rotations.wgsl", "kv_rows.wgsl", "positions.wgsl")
# What follows matmul.wgsl in a module: x_direct.wgsl (each invocation loads its own x; matmul_lanes.wgsl loads
# it for the lanes of a subgroup instead) and the libraries its products use.
_PRODUCTS = (*_ROPE_STORE, "activations.wgsl", "quant.wgsl", WEIGHTS)
_MATMUL = ("matmul.wgsl", "x_direct.wgsl", *_PRODUCTS)
_LIBRARIES = {
    "matmul.wgsl": ("x_direct.wgsl", *_PRODUCTS),
    "matmul_lanes.wgsl": ("matmul.wgsl", *_PRODUCTS),
    "matmul_subgroup.wgsl": _MATMUL,
    "matmul_tiled.wgsl": ("tiles_f32.wgsl", "tiles.wgsl", *_MATMUL),
    "matmul_tiled_wide.wgsl": ("tiles_f32.wgsl", "tiles.wgsl", *_MATMUL),
    "matmul_tiled_f16.wgsl": ("tiles.wgsl", *_MATMUL),
    "matmul_tiled_matrix.wgsl": ("tiles.wgsl", *_MATMUL),
    "matmul_tiled_dot4.wgsl": ("tiles.wgsl", *_MATMUL, "x_blocks.wgsl"),
    "matvec_dot4.wgsl": (*_MATMUL, "x_blocks.wgsl", "x_quantize.wgsl"),
    "quantize_x.wgsl": ("x_quantize.wgsl", "x_blocks.wgsl"),
    "embed.wgsl": ("quant.wgsl", WEIGHTS),
    "elementwise.wgsl": ("activations.wgsl",),
    "attention.wgsl": ("positions.wgsl", "activations.wgsl"),
    "attention_flash.wgsl": (
        "attention.wgsl", "positions.wgsl", "activations.wgsl", "x_quantize.wgsl", "x_blocks.wgsl",
    ),
    "rope.wgsl": ("rotations.wgsl", "positions.wgsl"),
    "kv_cache.wgsl": ("kv_rows.wgsl", "positions.wgsl"),
}
# The libraries that decode each type (after quant.wgsl): only the decoder of a pipeline's type is
# compiled into it, since CPU adapters inline every decoder that a switch on WTYPE names before they
# drop the unused cases (floats never decode blocks: any will do).
_K = "quant_k.wgsl"  # what the K-quant libraries share
# Only the IQ4s keep a table in workgroup memory (share_tables); the others take no_tables.wgsl's.
_N = "no_tables.wgsl"
_WEIGHT_LIBRARIES = {
    F32: ("quant_q4.wgsl", _N), F16: ("quant_q4.wgsl", _N), BF16: ("quant_q4.wgsl", _N),
    Q4_0: ("quant_q4.wgsl", _N), Q4_1: ("quant_q4.wgsl", _N), Q5_0: ("quant_q5.wgsl", _N),
    Q5_1: ("quant_q5.wgsl", _N), Q8_0: ("quant_q8.wgsl", _N), Q4_K: (_K, "quant_q4k.wgsl", _N),
    Q5_K: (_K, "quant_q4k.wgsl", _N), Q6_K: (_K, "quant_q6k.wgsl", _N), Q3_K: (_K, "quant_q3k.wgsl", _N),
    Q2_K: (_K, "quant_q2k.wgsl", _N), IQ4_NL: (_K, "quant_iq4.wgsl"), IQ4_XS: (_K, "quant_iq4.wgsl"),
}  # fmt: skip


# How kernels bind texels (Kernels.weights_in_texels), by Device.storage_texels: the library that declares them.
TEXEL_BINDINGS = {False: "texels_sampled.wgsl", True: "texels_storage.wgsl"}


def module_parts(file: str, wtype: int | None, texels: str | None = None) -> tuple[str, ...]:
    """The files whose text, joined in order, is the module of a kernel in `file` (for weight type `wtype`
    where it reads weights, from a storage buffer, or from texels bound by the library `texels`, one of
    TEXEL_BINDINGS' (Kernels.weights_in_texels))."""
    parts: tuple[str, ...] = ()
    for part in (file, *_LIBRARIES.get(file, ())):
        if part == WEIGHTS:
            weights = (texels, "weights_texture.wgsl") if texels else ("weights_buffer.wgsl",)
            parts += (*weights, *_WEIGHT_LIBRARIES[wtype])
        else:
            parts += (part,)
    return parts


def load_shader(name: str) -> str:
    """The WGSL text of shaders/<name>; the browser build replaces this with its own loader."""
    return (Path(__file__).parent.parent / "shaders" / name).read_text()
