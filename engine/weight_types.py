"""The ggml weight types the kernels decode: their ids, block sizes and the row lengths each allows."""

from __future__ import annotations

from .gguf import GGML_TYPES

# ggml type ids (gguf.GGML_TYPES; shaders/quant.wgsl declares the same constants)
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16 = 0, 1, 2, 3, 6, 7, 8, 30
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = 10, 11, 12, 13, 14
IQ4_NL, IQ4_XS = 20, 23  # 4-bit indices into a non-linear table; IQ4_XS in superblocks of 256 like the K-quants
FLOAT_TYPES = {F32: 4, F16: 2, BF16: 2}  # bytes per weight
# Blocks: (weights, bytes) of one block as GGUF stores it; the K-quants' and IQ4_XS's are superblocks of 256.
BLOCK_TYPES = {
    t: GGML_TYPES[t][1:] for t in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)
}
SUPPORTED_WEIGHT_TYPES = frozenset(FLOAT_TYPES) | frozenset(BLOCK_TYPES)
# Blocks that start at any even byte as GGUF stores them, laid out with a gap where CPU adapters read weights
# from texels (texel_repack.wgsl): (where in the block, bytes). Q6_K's, Q3_K's and Q2_K's superblocks padded at
# their end to whole texels, so every field starts a texel and a read of 32 bytes is two texel fetches instead of
# three and a realigning shift; Q5_0's 22 bytes as Q5_1's 24 ({d, 2 spare, qh, qs}: 8-byte aligned, two
# fetches a block). On lavapipe, one token: Q6_K and Q3_K +37-45 %, Q5_0 +40-50 % (NOTES.md).
TEXEL_GAPS = {Q6_K: (210, 14), Q3_K: (110, 2), Q2_K: (84, 12), Q5_0: (2, 2)}
# Rows of a tile in texels: block b of a tile's rows lie together (weights_texture.wgsl's block_at says why);
# the scalar products' rows a workgroup on CPU adapters (products.MV_ROWS and MM_ROWS x 8 invocations).
ROW_TILE = 128


def texel_layout_bytes(wtype: int, nbytes: int) -> int:
    """Bytes a tensor of `nbytes` in `wtype` takes laid out in texels (TEXEL_GAPS: a gap in every block)."""
    if wtype not in TEXEL_GAPS:
        return nbytes
    return nbytes // BLOCK_TYPES[wtype][1] * (BLOCK_TYPES[wtype][1] + TEXEL_GAPS[wtype][1])


def weight_nbytes(wtype: int, n_elements: int) -> int:
    """Bytes of n_elements weights of ggml type `wtype` as stored in GGUF."""
    if wtype in FLOAT_TYPES:
        return FLOAT_TYPES[wtype] * n_elements
    if wtype not in BLOCK_TYPES:
        raise ValueError(f"ggml type {wtype} is not supported (supported: {sorted(SUPPORTED_WEIGHT_TYPES)})")
    block, nbytes = BLOCK_TYPES[wtype]
    if n_elements % block:
        raise ValueError(f"{n_elements} elements are not whole blocks of {block}")
    return n_elements // block * nbytes


def check_row(wtype: int, n: int) -> None:
    """Rows are read as vec4 and block types as whole blocks (superblocks of 256 for the K-quants, IQ4_XS)."""
    if wtype not in SUPPORTED_WEIGHT_TYPES:
        raise ValueError(f"ggml type {wtype} is not supported (supported: {sorted(SUPPORTED_WEIGHT_TYPES)})")
    step = BLOCK_TYPES[wtype][0] if wtype in BLOCK_TYPES else 4
    if n <= 0 or n % step:
        raise ValueError(f"rows of {n} elements: ggml type {wtype} needs a multiple of {step}")
