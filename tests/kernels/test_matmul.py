"""Matrix products over every weight type x variant x batch, against gguf's dequantisation."""

from __future__ import annotations

import re
from dataclasses import replace

import gguf
import numpy as np
import pytest

from engine import gpu as gpu_seam
from engine import kernel_ops, products
from engine import kernels as K
from engine.weight_types import TEXEL_GAPS

from .conftest import POISON, assert_close, glu
from .test_browser_compile import FakeBuffer, RecordingDevice

VARIANTS = ["scalar", "subgroup"]
TYPES = {t: gguf.GGMLQuantizationType(t) for t in sorted(K.SUPPORTED_WEIGHT_TYPES)}
KQUANTS = [K.Q4_K, K.Q6_K, K.Q5_K, K.Q3_K, K.Q2_K]
IQUANTS = [K.IQ4_NL, K.IQ4_XS]
# The types gguf cannot quantise (made of random bytes instead): where each (super)block keeps its f16 scales
# (d, and dmin where it has one), and their size for weights of about 1 (1 / the largest scale x quant that
# multiplies them).
F16_FIELDS = {K.Q4_K: (0, 2), K.Q5_K: (0, 2), K.Q6_K: (208,), K.Q3_K: (108,), K.Q2_K: (80, 82), K.IQ4_NL: (0,),
              K.IQ4_XS: (0,)}  # fmt: skip
F16_SIZE = {K.Q4_K: 1 / 945, K.Q5_K: 1 / 1953, K.Q6_K: 1 / 4096, K.Q3_K: 1 / 128, K.Q2_K: 1 / 45, K.IQ4_NL: 1 / 127,
            K.IQ4_XS: 1 / 4064}  # fmt: skip


def type_name(wtype: int) -> str:
    """Test ids: the ggml name of a type id."""
    return TYPES[wtype].name


def row_length(wtype: int, blocks: int) -> int:
    """A row of `blocks` blocks of wtype (superblocks of 256 for the K-quants and IQ4_XS, 32 otherwise)."""
    return blocks * K.BLOCK_TYPES.get(wtype, (32,))[0]


def random_blocks(rng, wtype: int, n: int) -> np.ndarray:
    """n (super)blocks of random bytes whose f16 scales are finite and small (gguf cannot quantise these)."""
    raw = rng.integers(0, 256, (n, K.BLOCK_TYPES[wtype][1]), dtype=np.uint8)
    for at in F16_FIELDS[wtype]:
        halves = (rng.uniform(0.2, 2.0, n) * rng.choice([-1.0, 1.0], n) * F16_SIZE[wtype]).astype(np.float16)
        raw[:, at : at + 2] = halves.view(np.uint8).reshape(n, 2)
    return raw


def quantised(rng, wtype: int, n_out: int, n_in: int) -> tuple[bytes, np.ndarray]:
    """Random weights in ggml type `wtype`: (the GGUF bytes, their float64 dequantisation)."""
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    if wtype == K.F32:
        return w.tobytes(), w.astype(np.float64)
    if wtype == K.F16:
        return w.astype(np.float16).tobytes(), w.astype(np.float16).astype(np.float64)
    if wtype in F16_FIELDS:
        q = random_blocks(rng, wtype, n_out * n_in // K.BLOCK_TYPES[wtype][0]).reshape(n_out, -1)
    else:
        q = gguf.quants.quantize(w, TYPES[wtype])
    assert q.nbytes == K.weight_nbytes(wtype, n_out * n_in)
    return q.tobytes(), gguf.quants.dequantize(q, TYPES[wtype]).astype(np.float64).reshape(n_out, n_in)


def dot4_bounds(kernels, wtype: int, w: np.ndarray, x: np.ndarray, act: str | None = None) -> np.ndarray | None:
    """assert_close's widen for each token of x where the product is not f32's: integer x (quantize_x.wgsl's,
    matvec_dot4 on GPUs: dot4_bound), or a batch in f16 tiles (tiles_f16_bound); None for f32 products, the
    f32 tiles' among them; for q8 tiles, the elements of x whose rounding the GPU may take the other way
    (q8_ties)."""
    x = np.atleast_2d(x)
    if q8_tiles(kernels, wtype, x):
        return np.stack([through_glu(w, row, np.abs(w) @ q8_ties(row), act) for row in x])
    if not kernels.uses_dot4(wtype):
        return None
    if len(x) > products.DOT4_FEW and kernels.tiles:  # a batch: matmul_tiled.wgsl, f32 x
        if kernels.tiles_module(w.shape[1]) != "matmul_tiled_f16.wgsl":  # (q8 tiles: as_products_see)
            return None
        return np.stack([tiles_f16_bound(w, row, act) for row in x])
    return np.stack([dot4_bound(w, row, act) for row in x])


def q8_tiles(kernels, wtype: int, x: np.ndarray) -> bool:
    """Whether a batch x's product is q8 prompts' integer tiles (as ProductKernels.matmul chooses)."""
    batch = len(x) > products.DOT4_FEW and kernels.tiles and wtype in products.DOT4_TYPES
    return batch and kernels.tiles_module(x.shape[1]) == "matmul_tiled_dot4.wgsl"


def q8_steps(x: np.ndarray) -> np.ndarray:
    """Each element's step in q8 tiles' x: its half block's largest |x| / 127 (0 for a half of zeros)."""
    halves = np.abs(x).reshape(len(x), -1, 16)
    return np.repeat(halves.max(axis=2) / 127, 16, axis=1).reshape(x.shape)


def as_products_see(kernels, wtype: int, x: np.ndarray) -> np.ndarray:
    """x as a batch's products take it: q8 tiles (matmul_tiled_dot4.wgsl) round each element to a signed byte
    of its half block's largest |x| / 127 (llama.cpp's q8_1 has one scale a block), and their sums must then
    equal that x's products to f32's rounding (the weights' offsets included); other products take x as it is
    (dot4_bounds)."""
    x = np.asarray(x, dtype=np.float64)
    if not q8_tiles(kernels, wtype, x):
        return x
    step = q8_steps(x)
    return np.round(x / np.where(step > 0, step, 1)) * step


def q8_ties(x: np.ndarray) -> np.ndarray:
    """A step for each element of one token's x that lies within 1e-4 steps of halfway between two (the GPU
    scales x in f32 and may round it the other way), 0 for the rest: a wrong scale or sum misses by far more."""
    x = np.asarray(x, dtype=np.float64)[None]
    step = q8_steps(x)
    scaled = np.abs(x) / np.where(step > 0, step, 1)
    return np.where(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-4, step, 0.0)[0]


def dot4_bound(w: np.ndarray, x: np.ndarray, act: str | None = None) -> np.ndarray:
    """How far one token's product through quantised x may be from f32's, per output: each element of x is
    off by at most half a step (its block's largest |x| / 8355711 / 2 with three planes), so row r by
    sum_k |W[r, k]| half_step[k]. A wrong quant or scale misses by far more."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    largest = 127 * (256**K.DOT4_PLANES - 1) // 255  # the top plane a signed byte: 32639 for two planes
    half_step = np.repeat(np.abs(x).reshape(-1, 32).max(axis=1) / largest / 2, 32)
    return through_glu(w, x, np.abs(w) @ half_step, act)


def tiles_f16_bound(w: np.ndarray, x: np.ndarray, act: str | None = None) -> np.ndarray:
    """How far one token's product in f16 tiles may be from f32's, per output: W and x rounded to f16 (2^-11 of
    each, so 2^-10 of a term at most), and each block's 32 terms summed in f16 (typically ~2^-12 of the block's
    |terms|; allowed 2^-10). A wrong block, row or token misses by a fair part of the output itself."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return through_glu(w, x, 2.0**-9 * (np.abs(w) @ np.abs(x)), act)


def through_glu(w: np.ndarray, x: np.ndarray, rows: np.ndarray, act: str | None) -> np.ndarray:
    """Rows' error bounds `rows` after GLU act(g) u (gate rows first, then up rows): by |act'| <= 1.2 times
    g's error times |u|, plus |act(g)| times u's error."""
    if act is None:
        return rows
    n = len(rows) // 2
    product = w @ x
    gate, up = product[:n], product[n:]
    return 1.2 * rows[:n] * (np.abs(up) + rows[n:]) + np.abs(glu(act, gate, np.ones(n))) * rows[n:]


def cancellation_floor(w: np.ndarray, x: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """rtol of each output's size absent cancellation (the root of its terms' squares), per token and row:
    with one output or a few, their largest can be a sum that cancelled to far below its terms, and f32's
    rounding of those terms then passes rtol of that scale (a Q5_K row of 256 once missed by 1.01e-4)."""
    x = np.asarray(x, dtype=np.float64)
    return rtol * np.sqrt(np.square(x) @ np.square(w).T)


def check_matmul(gpu, kernels, rng, wtype, n_in, n_out, n_tokens, max_tokens=None):
    raw, w = quantised(rng, wtype, n_out, n_in)
    max_tokens = max_tokens or n_tokens
    x = rng.standard_normal((max_tokens, n_in)).astype(np.float32)
    y = gpu.poisoned(max_tokens * n_out * 4)
    op = kernels.matmul(gpu.upload(raw), wtype, n_in, n_out, gpu.upload(x), y, max_tokens)
    gpu.run(kernels, op, n_tokens)
    got = gpu.read(y, n_tokens * n_out).reshape(n_tokens, n_out)
    want = as_products_see(kernels, wtype, x[:n_tokens]) @ w.T
    what = f"type {wtype} {n_in}->{n_out} T={n_tokens}"
    bound = dot4_bounds(kernels, wtype, w, x[:n_tokens])
    floor = cancellation_floor(w, x[:n_tokens])
    assert_close(got, want, 1e-4, what, widen=floor if bound is None else bound + floor)
    if n_tokens < max_tokens:  # rows past the batch stay untouched
        assert np.isnan(gpu.read(y, n_out, offset=n_tokens * n_out * 4)).all()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", list(TYPES), ids=type_name)
@pytest.mark.parametrize("n_tokens", [1, 3, 9])
def test_matmul_types_variants_batches(gpu, kernels_for, rng, variant, wtype, n_tokens):
    # 7 blocks a row, or 3 superblocks (odd: rows start at alternating alignments); 33 rows (not a
    # multiple of any workgroup or row group).
    n_in = row_length(wtype, 3) if wtype in F16_FIELDS else 224
    check_matmul(gpu, kernels_for(variant), rng, wtype, n_in, 33, n_tokens)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q8_0, K.Q4_1, K.Q5_0, K.Q5_1, *KQUANTS, *IQUANTS], ids=type_name)
def test_matmul_awkward_shapes(gpu, kernels_for, rng, variant, wtype):
    # Rows of one block (the minimum), a few, and many; 1 row, 7, 4099 (a partial last row group).
    for blocks, n_out, n_tokens in [(1, 1, 1), (3, 7, 2), (33 if wtype in F16_FIELDS else 5, 4099, 1), (18, 129, 5)]:
        check_matmul(gpu, kernels_for(variant), rng, wtype, row_length(wtype, blocks), n_out, n_tokens)


@pytest.mark.parametrize("x_lanes", [0, 4, 8])
def test_scalar_products_whether_or_not_lanes_share_x(gpu, kernels_for, rng, x_lanes):
    """The scalar variant's products (matmul_lanes.wgsl where lanes share x's loads, matmul.wgsl where each
    loads its own): one token and batches, a partial last row group and workgroup (rows past N_OUT still take
    part in the loads), rows that end in a partial block, GLU and accumulate."""
    if x_lanes and "subgroups" not in gpu.device.info.features:
        pytest.skip("lanes share x only on adapters with subgroups")
    kernels = kernels_for("scalar", x_lanes=x_lanes)
    for wtype, n_in, n_out, n_tokens in [(K.Q4_1, 224, 33, 1), (K.Q8_0, 96, 4099, 1), (K.Q4_K, 512, 7, 5),
                                         (K.F16, 100, 17, 1), (K.F16, 36, 9, 6), (K.Q6_K, 256, 130, 9)]:
        check_matmul(gpu, kernels, rng, wtype, n_in, n_out, n_tokens)
    for n_tokens in (1, 6):
        check_matmul_mode(gpu, kernels, rng, K.Q4_0, 64, 19, n_tokens, act="silu")
        check_matmul_mode(gpu, kernels, rng, K.Q5_1, 160, 9, n_tokens, accumulate=True)


@pytest.mark.parametrize("storage", [False, True])
def test_scalar_products_read_texels_sampled_or_as_storage(gpu, kernels_for, rng, monkeypatch, storage):
    """Texels bound either way (Device.storage_texels: the browser's sampled, the native device's storage) hold
    the same bytes: one token and a batch, a block type, a padded one (TEXEL_GAPS) and a float."""
    monkeypatch.setattr(gpu.device, "storage_texels", storage)
    kernels = kernels_for("scalar")
    for wtype, n_in, n_out, n_tokens in [(K.Q4_1, 96, 130, 1), (K.Q6_K, 256, 9, 5), (K.F32, 40, 7, 3)]:
        check_matmul(gpu, kernels, rng, wtype, n_in, n_out, n_tokens)
    texels = K.TEXEL_BINDINGS[storage]
    assert any(texels in parts for parts in kernels._sources)


def test_lanes_share_x_where_the_adapter_has_subgroups_of_four_or_more(device):
    """lanes_sharing_x: the scalar variant only, on adapters with subgroups, as many lanes as the smallest
    subgroup has (8 at most); none where that size is unknown or below 4."""
    info = replace(device.info, features=frozenset({"subgroups"}))
    for smallest, lanes in [(0, 0), (1, 0), (2, 0), (4, 4), (8, 8), (16, 8), (32, 8)]:
        assert K.lanes_sharing_x(replace(info, subgroup_min_size=smallest), "scalar") == lanes, smallest
    assert K.lanes_sharing_x(replace(info, subgroup_min_size=8), "subgroup") == 0
    assert K.lanes_sharing_x(replace(info, subgroup_min_size=8, features=frozenset()), "scalar") == 0
    with pytest.raises(ValueError, match="x_lanes"):
        K.Kernels(device, variant="scalar", x_lanes=2)


@pytest.mark.parametrize("wtype", sorted(K.DOT4_TYPES), ids=type_name)
def test_one_tokens_product_of_f32_x_on_gpus(gpu, kernels_for, rng, wtype):
    """Where integer x does not pay (K.dot4_pays: small models), one token's product on GPUs is
    matmul_subgroup.wgsl's, on f32 x: plain, GLU, and with the RMSNorm folded in."""
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup", dot4=False)
    assert not kernels.uses_dot4(wtype)
    for blocks, n_out in [(1, 1), (5, 129)]:
        check_matmul(gpu, kernels, rng, wtype, row_length(wtype, blocks), n_out, 1)
    check_matmul_mode(gpu, kernels, rng, wtype, row_length(wtype, 3), 33, 1, act="silu")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", [K.F32, K.F16, K.BF16], ids=type_name)
def test_matmul_float_rows_not_whole_blocks(gpu, kernels_for, rng, variant, wtype):
    for n_in, n_out, n_tokens in [(4, 5, 1), (36, 9, 3), (100, 17, 6)]:
        check_matmul(gpu, kernels_for(variant), rng, wtype, n_in, n_out, n_tokens)


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q6_K, K.IQ4_XS], ids=type_name)
def test_few_tokens_over_several_workgroups(gpu, kernels_for, rng, wtype, split, monkeypatch):
    """matvec_dot4_few with fewer tokens a workgroup than the batch has (grid z of 3, the last one token
    short), its parts of the sums in halves of the workgroup or one after the other (SPLIT), plain and GLU;
    and batches from one token past DOT4_FEW on taking matvec_dot4_batch."""
    monkeypatch.setattr(products, "DOT4_FEW_TT", 3)
    monkeypatch.setattr(products, "DOT4_FEW_SPLIT", split)
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup")
    assert kernels.uses_dot4(wtype)
    op = kernels.matmul(gpu.poisoned(4096), wtype, row_length(wtype, 1), 4, gpu.poisoned(4096), gpu.poisoned(4096), 16)
    assert [s.grid(8)[2] for s in op.few_steps] == [8, 3] and op.few == products.DOT4_FEW
    check_matmul(gpu, kernels, rng, wtype, row_length(wtype, 2), 37, 8)
    check_matmul_mode(gpu, kernels, rng, wtype, row_length(wtype, 3), 9, 5, act="silu")
    check_matmul(gpu, kernels, rng, wtype, row_length(wtype, 2), 37, products.DOT4_FEW + 1)


@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q6_K], ids=type_name)
def test_long_rows_take_wider_workgroups(gpu, kernels_for, rng, wtype, monkeypatch):
    """One token's products of rows longer than DOT4_LONG_ROW take DOT4_LONG_WG invocations a workgroup (some
    with a block more than others): plain, GLU; a few tokens keep their own workgroup size."""
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup")
    sizes, step = [], kernels._step
    monkeypatch.setattr(kernels, "_step", lambda *a: sizes.append((a[1], a[2].get("WG"))) or step(*a))
    n_in = row_length(wtype, 33 if wtype == K.Q6_K else 263)
    assert n_in > products.DOT4_LONG_ROW
    check_matmul(gpu, kernels, rng, wtype, n_in, 9, 1)
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 5, 1, act="silu")
    check_matmul(gpu, kernels, rng, wtype, n_in, 9, 3)
    assert ("matvec_dot4", products.DOT4_LONG_WG) in sizes
    assert all(wg <= products.DOT4_FEW_WG for entry, wg in sizes if entry == "matvec_dot4_few")


@pytest.mark.parametrize("batch8_row", [1 << 30, 32], ids=["four", "eight"])
def test_batch_subgroups_that_take_several_row_groups(gpu, kernels_for, rng, monkeypatch, batch8_row):
    """matvec_dot4_batch (and _batch8) where each subgroup takes several groups of four (eight) rows (as
    subgroups of 64 would with 16 rows a workgroup): each group's sums start from zero."""
    monkeypatch.setattr(products, "DOT4_BATCH_ROWS", 512)  # two passes or more for subgroups of <= 64 lanes
    monkeypatch.setattr(products, "DOT4_BATCH8_ROW", batch8_row)
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup")
    check_matmul(gpu, kernels, rng, K.Q4_0, 64, 1100, products.DOT4_FEW + 2)
    check_matmul_mode(gpu, kernels, rng, K.Q8_0, 96, 600, products.DOT4_FEW + 1, act="silu")


@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q6_K, K.IQ4_XS, K.Q5_1], ids=type_name)
def test_long_rows_batches_take_eight_rows_a_subgroup(gpu, kernels_for, rng, wtype, monkeypatch):
    """Batches' products of rows of at least DOT4_BATCH8_ROW take matvec_dot4_batch8: rows not a multiple of eight
    or of a workgroup's, plain, GLU (gate and up rows eight apiece) and accumulating; shorter rows keep four.
    (Where workgroups hold no tiles: matmul_tiled.wgsl takes batches elsewhere.)"""
    monkeypatch.setattr(products, "TILED", False)
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup")
    entries, step = [], kernels._step
    monkeypatch.setattr(kernels, "_step", lambda *a: entries.append(a[1]) or step(*a))
    n_in = row_length(wtype, products.DOT4_BATCH8_ROW // row_length(wtype, 1))
    assert n_in == products.DOT4_BATCH8_ROW
    check_matmul(gpu, kernels, rng, wtype, n_in, 37, products.DOT4_FEW + 3)
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 13, products.DOT4_FEW + 1, act="silu")
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 9, products.DOT4_FEW + 5, accumulate=True)
    assert entries.count("matvec_dot4_batch8") == 3 and "matvec_dot4_batch" not in entries
    check_matmul(gpu, kernels, rng, wtype, n_in - row_length(wtype, 1), 37, products.DOT4_FEW + 3)
    assert "matvec_dot4_batch" in entries


TILE_MODULES = {"f32": "matmul_tiled.wgsl", "f16": "matmul_tiled_f16.wgsl", "q8": "matmul_tiled_dot4.wgsl"}


@pytest.mark.parametrize("tiles", list(TILE_MODULES))
@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q5_1, K.Q8_0, K.Q4_K, K.Q6_K, K.Q2_K, K.IQ4_XS], ids=type_name)
def test_prompts_products_in_tiles(gpu, kernels_for, rng, wtype, tiles, monkeypatch):
    """Batches in matmul_tiled.wgsl (f32), matmul_tiled_f16.wgsl or matmul_tiled_dot4.wgsl (q8 prompts: x as a
    plane of bytes, by a quantize_x of its own): two token tiles and part of a third, rows a partial tile (130;
    GLU's 65 outputs of 64 a tile), accumulating, and into columns of wider rows."""
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup", f16_prompts=tiles == "f16",
                        q8_prompts=tiles == "q8")
    n_in = row_length(wtype, 3 if wtype in F16_FIELDS else 7)
    assert kernels.tiles and kernels.tiles_module(n_in) == TILE_MODULES[tiles]
    entries, step = [], kernels._step
    monkeypatch.setattr(kernels, "_step", lambda *a: entries.append(a[0]) or step(*a))
    check_matmul(gpu, kernels, rng, wtype, n_in, 130, 2 * products.TILE_TOKENS + 5)
    check_matmul(gpu, kernels, rng, wtype, n_in, 3, products.DOT4_FEW + 1, max_tokens=products.TILE_TOKENS + 3)
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 65, products.TILE_TOKENS + 1, act="silu")
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 33, 17, accumulate=True)
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 20, 12, y_col=3)
    assert entries.count(kernels.tiles_module(n_in)) == 5


@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q4_K, K.Q6_K, K.IQ4_XS], ids=type_name)
def test_wide_f32_tiles_where_workgroups_hold_them(gpu, kernels_for, rng, wtype, monkeypatch):
    """matmul_tiled_wide.wgsl's tiles (128 tokens, two invocations a tile row) wherever the adapter's workgroups
    hold them, here for every grid: two wide token tiles and part of a third, a partial row tile, GLU, accumulating
    and into columns of wider rows. Where there is no room (the IQ4s' table past lavapipe's 32 KB) the plain tiles
    take them, and the products are right either way."""
    monkeypatch.setattr(products, "WIDE_MIN_WORKGROUPS", 1)
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup")
    wide = products.wide_tiles_pay(kernels.device.info, wtype, 1, 2 * products.TILE_TOKENS)
    assert wide or wtype in products.TABLE_TYPES
    n_in = row_length(wtype, 3 if wtype in F16_FIELDS else 5)
    modules, step = [], kernels._step
    monkeypatch.setattr(kernels, "_step", lambda *a: modules.append(a[0]) or step(*a))
    check_matmul(gpu, kernels, rng, wtype, n_in, 130, 4 * products.TILE_TOKENS + 5)
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 65, 2 * products.TILE_TOKENS + 1, act="silu")
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 33, 17, accumulate=True)
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 20, 12, y_col=3)
    tiles = [m for m in modules if m.startswith("matmul_tiled")]  # (a batch's op holds few tokens' products too)
    assert tiles == ["matmul_tiled_wide.wgsl" if wide else "matmul_tiled.wgsl"] * 4


def test_wide_tiles_only_where_their_grid_fills_a_large_gpu(device):
    """Wide tiles where a product's grid of them still has WIDE_MIN_WORKGROUPS at its most tokens (an H200 lost
    with fewer), and only on adapters whose workgroups hold them (and the IQ4s' table)."""
    info = replace(device.info, max_workgroup_storage=32768)  # browsers' and lavapipe's
    assert products.wide_tiles_pay(info, K.Q4_K, 32, 512)  # the 8B shape's q, o and down: 32 row tiles x 4 tokens'
    assert products.wide_tiles_pay(info, K.Q4_K, 224, 512)  # its gate_up (GLU: 64 outputs a tile)
    assert not products.wide_tiles_pay(info, K.Q4_K, 8, 512)  # its k and v
    assert not products.wide_tiles_pay(info, K.Q4_K, 16, 512)  # the 1B shape's o and down
    assert not products.wide_tiles_pay(info, K.Q4_K, 32, 2 * products.TILE_TOKENS)  # a step of one wide tile's
    assert not products.wide_tiles_pay(info, K.IQ4_XS, 224, 512)  # 32 KB and the table do not fit in 32 KB
    assert products.wide_tiles_pay(replace(info, max_workgroup_storage=49152), K.IQ4_XS, 224, 512)
    assert not products.wide_tiles_pay(replace(info, max_workgroup_storage=16384), K.Q4_K, 224, 512)


def test_f16_prompts_take_subgroup_matrices_where_the_adapter_multiplies_them():
    """matmul_tiled_matrix.wgsl (tensor cores; Chromium's subgroup matrices) for f16 prompts whose rows are whole
    stages, where the adapter offers f16 matrices and their 32 KB of workgroup memory; the f16 tiles elsewhere,
    f32 tiles without f16 prompts, integer tiles with q8 prompts whatever the adapter offers. (The kernel itself
    runs only where that feature is: check_tiles.py in bench_page.py's page on a GPU, NOTES.md.)"""
    device = RecordingDevice(products.MATRIX_STORAGE)
    device.info = replace(device.info, features=device.info.features | {gpu_seam.SUBGROUP_MATRIX})
    f16 = K.Kernels(device, variant="subgroup", f16_prompts=True)
    stage = products.MATRIX_STAGE
    assert [f16.tiles_module(n) for n in (stage, 64 * stage, stage + 32)] == [
        "matmul_tiled_matrix.wgsl", "matmul_tiled_matrix.wgsl", "matmul_tiled_f16.wgsl"]
    assert f16.prompts_on_matrices and not K.Kernels(device, variant="subgroup").prompts_on_matrices
    b = FakeBuffer(1 << 16)
    f16.matmul(b, K.Q4_0, 4 * stage, 7, b, b, 2 * products.TILE_TOKENS)
    f16.matmul(b, K.Q4_0, 4 * stage, 7, b, b, 2 * products.TILE_TOKENS, glu="silu")
    modules = [p["code"] for p in device.pipelines.values() if p["entry"] == "matmul_tiled"]
    assert len(modules) == 2 and all(code == modules[0] for code in modules)
    assert modules[0].startswith(K.load_shader("matmul_tiled_matrix.wgsl"))
    assert K.Kernels(device, variant="subgroup").tiles_module(stage) == "matmul_tiled.wgsl"
    both = K.Kernels(device, variant="subgroup", f16_prompts=True, q8_prompts=True)  # (q8's integer tiles run faster)
    assert both.tiles_module(stage) == "matmul_tiled_dot4.wgsl" and not both.prompts_on_matrices
    info = device.info
    device.info = replace(info, max_workgroup_storage=products.MATRIX_STORAGE - 1024)
    assert K.Kernels(device, variant="subgroup", f16_prompts=True).tiles_module(stage) == "matmul_tiled_f16.wgsl"
    device.info = replace(info, features=info.features - {gpu_seam.SUBGROUP_MATRIX})
    assert K.Kernels(device, variant="subgroup", f16_prompts=True).tiles_module(stage) == "matmul_tiled_f16.wgsl"


def test_f16_tiles_hold_x_beyond_f16_at_its_largest(gpu, kernels_for, rng):
    """x past f16's 65504 (GLU's output, down's x, in models with outlier channels) enters the f16 tiles as +-65504,
    not as infinities that would make every sum of its token infinite or NaN (tiles.wgsl's f16_range; the matrix
    tiles take x through it too)."""
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup", f16_prompts=True)
    n_in, n_out, n_tokens = 256, 70, products.TILE_TOKENS + 3
    q = gguf.quants.quantize(0.01 * rng.standard_normal((n_out, n_in)).astype(np.float32), TYPES[K.Q4_0])
    w = gguf.quants.dequantize(q, TYPES[K.Q4_0]).astype(np.float64).reshape(n_out, n_in)
    x = rng.standard_normal((n_tokens, n_in)).astype(np.float32)
    x[:, 5], x[::3, 77] = 1e6, -3e5
    y = gpu.poisoned(n_tokens * n_out * 4)
    op = kernels.matmul(gpu.upload(q.tobytes()), K.Q4_0, n_in, n_out, gpu.upload(x), y, n_tokens)
    gpu.run(kernels, op, n_tokens)
    got = gpu.read(y, n_tokens * n_out).reshape(n_tokens, n_out)
    held = np.clip(x.astype(np.float64), -65504.0, 65504.0)
    assert np.isfinite(got).all()
    bound = np.stack([tiles_f16_bound(w, row) for row in held]) + cancellation_floor(w, held)
    assert_close(got, held @ w.T, 1e-4, "x held at f16's largest", widen=bound)


@pytest.mark.parametrize("wtype", [K.Q4_1, K.Q8_0, K.Q6_K], ids=type_name)
def test_small_models_prompts_in_tiles(gpu, kernels_for, rng, wtype, monkeypatch):
    """Without integer products (dot4 off: small models' one token), GPUs' prompts still take the tiles, which read
    f32 x; steps of up to DOT4_FEW tokens keep matmul_subgroup.wgsl's token-a-row batches."""
    kernels = K.Kernels(kernels_for("subgroup").device, variant="subgroup", dot4=False)
    assert kernels.tiles and not kernels.uses_dot4(wtype)
    entries, step = [], kernels._step
    monkeypatch.setattr(kernels, "_step", lambda *a: entries.append(a[0]) or step(*a))
    n_in = row_length(wtype, 3 if wtype in F16_FIELDS else 7)
    check_matmul(gpu, kernels, rng, wtype, n_in, 130, 2 * products.TILE_TOKENS + 5)
    check_matmul(gpu, kernels, rng, wtype, n_in, 33, products.DOT4_FEW, max_tokens=products.TILE_TOKENS + 3)
    check_matmul_mode(gpu, kernels, rng, wtype, n_in, 65, products.TILE_TOKENS + 1, act="silu")
    assert entries.count(kernels.tiles_module(n_in)) == 3
    b = gpu.upload(b"\0" * 1024)
    op = kernels.matmul(b, wtype, n_in, 7, gpu.upload(b"\0" * (4 * n_in * 16)), gpu.poisoned(4 * 7 * 16), 16)
    assert op.few == products.DOT4_FEW and op.few_steps != op.prefill


@pytest.mark.parametrize("variant", VARIANTS)
def test_matmul_batch_smaller_than_max_tokens(gpu, kernels_for, rng, variant):
    check_matmul(gpu, kernels_for(variant), rng, K.Q8_0, 64, 19, 5, max_tokens=11)
    check_matmul(gpu, kernels_for(variant), rng, K.Q4_1, 64, 19, 1, max_tokens=11)


def test_weight_nbytes_and_row_checks():
    assert K.weight_nbytes(K.Q8_0, 64) == 68 and K.weight_nbytes(K.Q4_0, 32) == 18
    assert K.weight_nbytes(K.Q4_1, 32) == 20 and K.weight_nbytes(K.F16, 3) == 6
    assert K.weight_nbytes(K.Q5_0, 64) == 44 and K.weight_nbytes(K.BF16, 4) == 8
    assert K.weight_nbytes(K.Q4_K, 512) == 288 and K.weight_nbytes(K.Q6_K, 256) == 210
    with pytest.raises(ValueError):
        K.weight_nbytes(K.Q4_0, 33)
    with pytest.raises(ValueError):
        K.weight_nbytes(K.Q4_K, 288)  # K-quants come in superblocks of 256
    with pytest.raises(ValueError):
        K.weight_nbytes(9, 32)  # Q8_1: not a weight type


def test_row_constants_match_the_shaders():
    # kernels.py sizes the grids with these; the shaders unroll their loops by them.
    text = K.load_shader("matmul.wgsl")
    for name in ("MV_ROWS", "MM_ROWS", "TILE"):
        assert f"const {name} = {getattr(K, name)}u;" in text, name
    # matvec_dot4_batch keeps a batch's sums for up to MAX_TT tokens a subgroup: products.py takes DOT4_TT
    max_tt = re.search(r"const MAX_TT = (\d+)u;", K.load_shader("matvec_dot4.wgsl"))
    assert max_tt and 1 <= products.DOT4_TT <= int(max_tt.group(1))
    max_few = re.search(r"const MAX_FEW = (\d+)u;", K.load_shader("matvec_dot4.wgsl"))  # matvec_dot4_few's
    assert max_few and 1 <= products.DOT4_FEW_TT <= int(max_few.group(1))
    # weights_texture.wgsl finds a tensor's 16-byte word i in texel row i / TEXELS_A_ROW, as the seam lays them out
    assert f"const TEXELS_A_ROW = {gpu_seam.TEXELS_A_ROW}u;" in K.load_shader("weights_texture.wgsl")
    assert gpu_seam.TEXEL_BYTES == 16  # rgba32uint


def test_type_constants_match_the_shaders():
    """Type ids and block sizes: the same in kernels.py, gguf.py (ggml's table) and the WGSL libraries."""
    from engine.gguf import GGML_TYPES

    text = K.load_shader("quant.wgsl") + K.load_shader("quant_k.wgsl")
    for wtype in K.SUPPORTED_WEIGHT_TYPES:
        name, block, nbytes = GGML_TYPES[wtype]
        assert getattr(K, name) == wtype and TYPES[wtype].name == name
        assert f"const {name} = {wtype}u;" in text, name
        if wtype in K.BLOCK_TYPES:
            assert K.BLOCK_TYPES[wtype] == (block, nbytes) == gguf.GGML_QUANT_SIZES[TYPES[wtype]]
            assert f"case {name}: {{ return {nbytes}u; }}" in text, f"block_bytes() of {name}"
        else:
            assert K.FLOAT_TYPES[wtype] == nbytes and block == 1
    # In texels some blocks lie with a gap (weight_types.TEXEL_GAPS, which texel_repack.wgsl is given): the decoders'
    # stored_block_bytes names the same sizes, and no others.
    stored = dict(re.findall(r"case (\w+): \{ return (\d+)u; \}", K.load_shader("weights_texture.wgsl")))
    assert {getattr(K, name): int(n) for name, n in stored.items()} == {
        wtype: K.texel_layout_bytes(wtype, K.BLOCK_TYPES[wtype][1]) for wtype in TEXEL_GAPS
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_matmul_grid_split_over_two_dimensions(gpu, kernels_for, rng, variant, monkeypatch):
    # Past 65535 workgroups a grid folds into x and y; a tiny limit exercises the folding.
    # (The scalar variant's weights go into texels through texel_repack.wgsl: 80 workgroups, folded too.)
    monkeypatch.setattr(kernel_ops, "MAX_GROUPS", 9 if variant == "scalar" else 4)
    assert kernel_ops.split_groups(10) == ((5, 2) if variant == "scalar" else (4, 3))
    kernels = K.Kernels(kernels_for(variant).device, variant=variant)  # fresh ops under the small limit
    if variant == "scalar":  # 10 decode workgroups, 10 of a 7-token batch
        check_matmul(gpu, kernels, rng, K.Q8_0, 64, 1200, 1)
        check_matmul(gpu, kernels, rng, K.Q8_0, 64, 1200, 7)
    else:  # 13 of matvec_dot4 (four rows each, the last one row), 13 of matvec_dot4_few (four rows each), 13
        # of matvec_dot4_batch (16 rows each), 13 of matvec_subgroup (16), 7 of its batch (32; z: the token)
        check_matmul(gpu, kernels, rng, K.Q8_0, 64, 49, 1)
        check_matmul(gpu, kernels, rng, K.Q8_0, 64, 49, 4)
        monkeypatch.setattr(products, "DOT4_FEW", 3)  # 4 tokens a batch (quantize_x's grid z: a token each)
        check_matmul(gpu, kernels, rng, K.Q8_0, 64, 200, 4)
        check_matmul(gpu, kernels, rng, K.Q8_0, 64, 52, 4)
        check_matmul(gpu, kernels, rng, K.F32, 64, 200, 1)
        check_matmul(gpu, kernels, rng, K.F32, 64, 200, 4)


def test_variant_choice(device):
    info = device.info
    assert K.Kernels(device).variant == (
        "subgroup" if not info.is_software and "subgroups" in info.features else "scalar"
    )
    with pytest.raises(ValueError):
        K.Kernels(device, variant="tiled")

    class NoSubgroups:
        info = replace(device.info, features=frozenset(), is_software=False)
        create_buffer = device.create_buffer

    assert K.Kernels(NoSubgroups()).variant == "scalar"
    with pytest.raises(ValueError):
        K.Kernels(NoSubgroups(), variant="subgroup")


def check_matmul_mode(gpu, kernels, rng, wtype, n_in, n_out, n_tokens, *, act=None, accumulate=False, y_col=None):
    """A fused product against numpy: GLU with activation `act` (gate and up rows stacked), accumulate
    (y +=), or columns y_col.. of wider rows (the other columns stay poisoned)."""
    raw, w = quantised(rng, wtype, 2 * n_out if act else n_out, n_in)
    max_tokens = n_tokens + 2
    stride = n_out + 5 if y_col is not None else n_out
    x = rng.standard_normal((max_tokens, n_in)).astype(np.float32)
    if accumulate:
        y0 = rng.standard_normal((max_tokens, stride)).astype(np.float32)
        y = gpu.upload(y0)
    else:
        y0 = np.full((max_tokens, stride), np.nan, dtype=np.float32)
        y = gpu.poisoned(y0.nbytes)
    op = kernels.matmul(gpu.upload(raw), wtype, n_in, n_out, gpu.upload(x), y, max_tokens, glu=act,
                        accumulate=accumulate, y_stride=stride if y_col is not None else 0, y_col=y_col or 0)
    gpu.run(kernels, op, n_tokens)
    got = gpu.read(y, max_tokens * stride).reshape(max_tokens, stride)
    product = as_products_see(kernels, wtype, x[:n_tokens]) @ w.T
    if act:
        product = glu(act, product[:, :n_out], product[:, n_out:])
    cols = slice(y_col or 0, (y_col or 0) + n_out)
    want = product + (y0[:n_tokens, cols] if accumulate else 0.0)
    what = f"type {wtype} {n_in}->{n_out} T={n_tokens} glu={act} accumulate={accumulate} y_col={y_col}"
    assert_close(got[:n_tokens, cols], want, 1e-4, what, widen=dot4_bounds(kernels, wtype, w, x[:n_tokens], act))
    untouched = np.ones(got.shape, dtype=bool)
    untouched[:n_tokens, cols] = False
    np.testing.assert_array_equal(got[untouched], y0[untouched], what)  # NaN == NaN here


@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q4_K, K.Q6_K, K.IQ4_XS, K.Q8_0], ids=type_name)
@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_one_tokens_glu_quantises_the_next_products_x(gpu, kernels_for, rng, wtype, act):
    """quantise_out (GPUs, one token): the GLU product's outputs, right against numpy, also go into the integer
    x that products of its width read, the very bytes quantize_x makes of them, and a product that takes them
    (matmul's x_quantised, down in the model) equals one that quantises them itself. 96 outputs: three
    workgroups of 32, several x blocks a lane; the next product Q4_0, 40 rows."""
    kernels = kernels_for("subgroup")
    n_in, n_out, n_next, max_tokens = row_length(wtype, 5), 96, 40, 4
    raw, w = quantised(rng, wtype, 2 * n_out, n_in)
    raw_next, _ = quantised(rng, K.Q4_0, n_next, n_out)
    x = rng.standard_normal((max_tokens, n_in)).astype(np.float32)
    hb, y = gpu.poisoned(max_tokens * n_out * 4), gpu.poisoned(max_tokens * n_next * 4)
    planes, sums = kernels.dot4_x(n_out, max_tokens)
    gate_up = kernels.matmul(gpu.upload(raw), wtype, n_in, n_out, gpu.upload(x), hb, max_tokens, glu=act,
                             quantise_out=True)
    w_next = gpu.upload(raw_next)
    taking, quantising = (kernels.matmul(w_next, K.Q4_0, n_out, n_next, hb, y, max_tokens, x_quantised=taken)
                          for taken in (True, False))  # fmt: skip
    assert [len(gate_up.decode), len(taking.decode), len(quantising.decode)] == [2, 1, 2]
    results = []
    for ops in ([gate_up, taking], [quantising]):  # the second quantises the first's outputs itself
        for buffer in (planes, sums, y):
            gpu.device.write_buffer(buffer, POISON * buffer.size)
        gpu.run(kernels, ops, 1)
        results.append({"planes": gpu.read(planes, n_out * 3 // 4, np.uint32),
                        "scales and sums": gpu.read(sums, n_out // 32 * 4), "product": gpu.read(y, n_next)})
    fused, alone = results
    for what in fused:
        assert fused[what].tobytes() == alone[what].tobytes(), f"{what} differ"
    assert not np.isnan(fused["product"]).any()
    product = x[:1].astype(np.float64) @ w.T
    want = glu(act, product[:, :n_out], product[:, n_out:])
    assert_close(gpu.read(hb, n_out).reshape(1, n_out), want, 1e-4, f"type {wtype} glu {act}",
                 widen=dot4_bounds(kernels, wtype, w, x[:1], act))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", [K.Q4_0, K.Q4_1, K.Q8_0, K.F16, K.Q4_K, K.Q6_K, K.Q5_0, K.Q2_K], ids=type_name)
@pytest.mark.parametrize("n_tokens", [1, 6, 11])
def test_matmul_glu(gpu, kernels_for, rng, variant, wtype, n_tokens):
    for blocks, n_out in [(7, 33), (2, 3), (3, 130)]:
        check_matmul_mode(gpu, kernels_for(variant), rng, wtype, row_length(wtype, blocks), n_out, n_tokens,
                          act="silu")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_tokens", [1, 6, 11])
def test_matmul_gelu_glu(gpu, kernels_for, rng, variant, n_tokens):
    """Gemma's GeGLU: the same stacked product, GELU's tanh form on the gate."""
    for wtype, blocks, n_out in [(K.Q4_K, 2, 33), (K.F16, 3, 7), (K.Q8_0, 5, 130)]:
        check_matmul_mode(gpu, kernels_for(variant), rng, wtype, row_length(wtype, blocks), n_out, n_tokens,
                          act="gelu")


def test_matmul_refuses_an_unknown_activation(gpu, kernels_for):
    b = gpu.poisoned(1024)
    with pytest.raises(ValueError, match="relu"):
        kernels_for("scalar").matmul(b, K.F32, 4, 4, b, gpu.poisoned(64), 1, glu="relu")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", [K.Q4_1, K.Q8_0, K.F32, K.Q4_K, K.Q6_K, K.Q5_1, K.Q3_K], ids=type_name)
@pytest.mark.parametrize("n_tokens", [1, 5, 10])
def test_matmul_accumulate(gpu, kernels_for, rng, variant, wtype, n_tokens):
    for blocks, n_out in [(7, 33), (3, 7)]:
        check_matmul_mode(gpu, kernels_for(variant), rng, wtype, row_length(wtype, blocks), n_out, n_tokens,
                          accumulate=True)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_tokens", [1, 7, 12])
def test_matmul_into_columns_of_wider_rows(gpu, kernels_for, rng, variant, n_tokens):
    check_matmul_mode(gpu, kernels_for(variant), rng, K.Q4_1, 64, 19, n_tokens, y_col=3)
    check_matmul_mode(gpu, kernels_for(variant), rng, K.Q8_0, 96, 9, n_tokens, y_col=0, accumulate=True)


def test_kquant_rows_are_whole_superblocks(gpu, kernels_for):
    b = gpu.poisoned(1024)
    with pytest.raises(ValueError, match="multiple of 256"):
        kernels_for("scalar").matmul(b, K.Q6_K, 576, 4, b, gpu.poisoned(64), 1)


def test_accumulate_needs_a_distinct_y(gpu, kernels_for):
    b = gpu.poisoned(64 * 4)
    with pytest.raises(ValueError):
        kernels_for("scalar").matmul(b, K.F32, 4, 4, b, b, 1, accumulate=True)


FOLD_CASES = [(t, row_length(t, n)) for t in TYPES for n in (2, 18)] + [(K.F32, 36), (K.F16, 36), (K.BF16, 36)]


@pytest.mark.parametrize("wtype, n_in", FOLD_CASES, ids=[f"{type_name(t)}-{n}" for t, n in FOLD_CASES])
@pytest.mark.parametrize("act", [None, "silu", "gelu"])
def test_one_tokens_product_folds_the_rmsnorm_in(gpu, kernels_for, rng, wtype, act, n_in):
    """The subgroup variant's decode product normalises the raw residual itself (NORM); batches still
    read the normalised x that the norm (a BatchOp, skipped for one token) wrote."""
    check_folded_norm(gpu, kernels_for("subgroup"), rng, wtype, n_in, act)


SCALAR_FOLD_CASES = [(K.Q4_1, 64), (K.Q8_0, 576), (K.Q4_K, 256), (K.Q6_K, 512), (K.F16, 36), (K.Q5_0, 96)]


@pytest.mark.parametrize("wtype, n_in", SCALAR_FOLD_CASES, ids=[f"{type_name(t)}-{n}" for t, n in SCALAR_FOLD_CASES])
@pytest.mark.parametrize("act", [None, "silu"])
@pytest.mark.parametrize("x_lanes", [4, 8])
def test_scalar_products_fold_the_rmsnorm_in_where_lanes_share_x(gpu, kernels_for, rng, wtype, n_in, act, x_lanes):
    """Where lanes share x's loads (matmul_lanes.wgsl), one token's scalar products normalise the raw residual
    themselves as well, the norm's weights shared the same way; where each loads its own, they do not."""
    if "subgroups" not in gpu.device.info.features:
        pytest.skip("lanes share x only on adapters with subgroups")
    assert not kernels_for("scalar", x_lanes=0).folds_norm
    check_folded_norm(gpu, kernels_for("scalar", x_lanes=x_lanes), rng, wtype, n_in, act)


def check_folded_norm(gpu, kernels, rng, wtype, n_in, act):
    from tests.reference import rmsnorm

    n_out, eps = 40, 1e-5
    assert kernels.folds_norm
    raw, w = quantised(rng, wtype, 2 * n_out if act else n_out, n_in)
    residual = (rng.standard_normal((1, n_in)) * 3).astype(np.float32)
    weight = rng.standard_normal(n_in).astype(np.float32)
    x_raw, norm_w, normed, y = gpu.upload(residual), gpu.upload(weight), gpu.poisoned(n_in * 4), gpu.poisoned(n_out * 4)
    norm = kernels.rmsnorm(x_raw, norm_w, normed, n_in, eps, folded_up_to=1)
    product = kernels.matmul(gpu.upload(raw), wtype, n_in, n_out, normed, y, 1, glu=act, norm=(x_raw, norm_w, eps))
    gpu.run(kernels, norm, 1)
    gpu.run(kernels, product, 1)
    assert np.isnan(gpu.read(normed, n_in)).all(), "the norm ran for one token"
    x = rmsnorm(residual.astype(np.float64), weight.astype(np.float64), eps)
    want = x @ w.T
    if act:
        want = glu(act, want[:, :n_out], want[:, n_out:])
    bound = dot4_bounds(kernels, wtype, w, x, act)
    what = f"type {wtype} {n_in}->{n_out} glu={act}"
    assert_close(gpu.read(y, n_out).reshape(1, n_out), want, 1e-4, what, widen=bound)


@pytest.mark.parametrize("wtype", [t for t in TYPES if t != K.F32], ids=type_name)
def test_the_numpy_side_dequantises_as_ggml_does(llama_cpp, rng, wtype):
    """Every kernel test holds the kernels to gguf.quants.dequantize: here that is held to ggml's own to_float
    (llama.cpp's libggml-base, through its type traits), on the same random blocks, bit for bit."""
    import ctypes
    from pathlib import Path

    class Traits(ctypes.Structure):  # ggml.h: struct ggml_type_traits, up to to_float
        _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64), ("blck_size_interleave",
                    ctypes.c_int64), ("type_size", ctypes.c_size_t), ("is_quantized", ctypes.c_bool),
                    ("to_float", ctypes.c_void_p)]  # fmt: skip

    ggml = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    ggml.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
    ggml.ggml_get_type_traits.argtypes = [ctypes.c_int]
    traits = ggml.ggml_get_type_traits(wtype).contents
    assert traits.type_name.decode().upper() == TYPES[wtype].name
    to_float = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)(traits.to_float)
    n_out, n_in = 3, row_length(wtype, 4)
    raw, want = quantised(rng, wtype, n_out, n_in)
    data = np.frombuffer(raw, np.uint8).copy()
    got = np.zeros(n_out * n_in, np.float32)
    to_float(data.ctypes.data, got.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), got.size)
    np.testing.assert_array_equal(got.reshape(n_out, n_in), want)


@pytest.mark.parametrize("kv_f16", [False, True])
@pytest.mark.parametrize("n_rot, llama3, mscale, places", [(32, False, 1.0, None), (10, True, 1.25, [(40, 7)])])
@pytest.mark.parametrize("variant, wtype, n_tokens, x_lanes", [
    ("subgroup", K.Q4_0, 1, None), ("subgroup", K.F16, 1, None), ("scalar", K.Q4_0, 1, None),
    ("scalar", K.Q4_0, 1, 0), ("subgroup", K.Q4_0, 3, None),
], ids=["integer", "subgroup", "scalar", "scalar-own-x", "integer-few"])
def test_qkv_product_rotates_and_stores_keys_and_values(gpu, kernels_for, rng, kv_f16, n_rot, llama3, mscale, places,
                                                        variant, wtype, n_tokens, x_lanes):
    """rope_store (one token: matvec_dot4_rope, matvec_subgroup_rope, matvec_rope; a few: matvec_dot4_few_rope):
    q | k | v rotated and k, v stored in the caches as the product, rope and store_kv after it would: every
    rotation or only the first 10 dims of each head (a pair of the rows written together rotated, the other
    not), llama3's factors and an mscale, tokens of later sequences (cache rows from row 40, and from 0 for the
    few's others) or of the one at pos 13. Nothing else in the caches changes."""
    if places is not None and n_tokens > 1:
        places = [*places, (0, 3), (40, 8)][:n_tokens]
    kernels = kernels_for(variant, kv_f16, x_lanes)
    n_heads, n_kv_heads, head_dim, n_in, max_ctx = 4, 2, 32, 160, 48
    q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
    n_out, store = q_dim + 2 * kv_dim, np.float16 if kv_f16 else np.float32
    raw, _ = quantised(rng, wtype, n_out, n_in)
    w, x = gpu.upload(raw), gpu.upload(rng.standard_normal((n_tokens + 1, n_in)).astype(np.float32))
    factors = gpu.upload(rng.uniform(1, 8, n_rot // 2).astype(np.float32)) if llama3 else None
    rope = dict(n_rot=n_rot, theta=10000.0, freq_scale=1.0, neox=False, freq_factors=factors, mscale=mscale)
    tables = kernels.rope_tables(n_rot, 10000.0, 1.0, factors)
    results = []
    for fused in (True, False):
        y = gpu.poisoned((n_tokens + 1) * n_out * 4)
        k_cache, v_cache = (gpu.poisoned(kernels.kv_cache_nbytes(2 * max_ctx, kv_dim)) for _ in "kv")
        if fused:
            rs = K.RopeStore(q_dim, kv_dim, head_dim, n_rot, tables, k_cache, v_cache, mscale)
            ops = [kernels.matmul(w, wtype, n_in, n_out, x, y, n_tokens + 1, rope_store=rs)]
            assert n_tokens <= kernels.fuses_up_to(wtype)
            plain = kernels.matmul(w, wtype, n_in, n_out, x, y, n_tokens + 1)
            assert ops[0].decode[-1].pipeline is not plain.decode[-1].pipeline
        else:
            ops = [kernels.matmul(w, wtype, n_in, n_out, x, y, n_tokens + 1),
                   kernels.rope(y, n_heads + n_kv_heads, head_dim, row=n_out, **rope),
                   kernels.store_kv(y, y, k_cache, v_cache, kv_dim, src_row=n_out, k_col=q_dim, v_col=q_dim + kv_dim)]
        gpu.run(kernels, ops, n_tokens, pos=13, places=places)
        caches = [gpu.read(c, 2 * max_ctx * kv_dim, store).reshape(2 * max_ctx, kv_dim) for c in (k_cache, v_cache)]
        results.append((gpu.read(y, (n_tokens + 1) * n_out).reshape(n_tokens + 1, n_out), *caches))
    (y_fused, *fused_caches), (y_apart, *apart_caches) = results
    assert_close(y_fused[:n_tokens], y_apart[:n_tokens], 1e-6, "q | k | v")
    assert np.isnan(y_fused[n_tokens]).all(), "a row past the step was written"
    rows = [13 + t for t in range(n_tokens)] if places is None else [sum(place) for place in places]
    for got, want, part in zip(fused_caches, apart_caches, (slice(q_dim, q_dim + kv_dim), slice(q_dim + kv_dim, None)),
                               strict=True):
        assert_close(got[rows], want[rows], 1e-3 if kv_f16 else 1e-6, "the tokens' cache rows")
        assert_close(got[rows], y_apart[:n_tokens, part], 1e-3 if kv_f16 else 1e-6, "the cache rows against y")
        others = np.delete(got, rows, axis=0).astype(np.float32)
        assert np.isnan(others).all(), "cache rows besides the tokens' were written"


def test_rope_store_needs_a_plain_product_of_whole_heads_of_q_k_v(gpu, kernels_for):
    """rope_store refuses a GLU or accumulating product, outputs that are not q | k | v, and heads that split the
    rows written together (16 an invocation on CPU adapters, 4 on GPUs), which Kernels.rotates_output tells."""
    subgroup, scalar = kernels_for("subgroup"), kernels_for("scalar")
    buf = gpu.poisoned(4096)
    rs = K.RopeStore(64, 32, 32, 32, subgroup.rope_tables(32, 10000.0, 1.0), buf, buf)
    with pytest.raises(ValueError, match="only plain products"):
        subgroup.matmul(buf, K.Q4_0, 32, 128, buf, buf, 1, rope_store=rs, accumulate=True)
    with pytest.raises(ValueError, match="only plain products"):
        scalar.matmul(buf, K.Q4_0, 32, 128, buf, buf, 1, rope_store=rs, glu="silu")
    with pytest.raises(ValueError, match="not q | k | v"):
        subgroup.matmul(buf, K.Q4_0, 32, 96, buf, buf, 1, rope_store=rs)
    narrow = K.RopeStore(64, 32, 8, 8, subgroup.rope_tables(8, 10000.0, 1.0), buf, buf)  # heads of 8 dims
    assert subgroup.rotates_output(K.Q4_0, 8) and subgroup.rotates_output(K.F32, 8)
    assert not scalar.rotates_output(K.Q4_0, 8) and scalar.rotates_output(K.Q4_0, 32)
    subgroup.matmul(buf, K.Q4_0, 32, 128, buf, buf, 1, rope_store=narrow)
    with pytest.raises(ValueError, match="a multiple of 16"):
        scalar.matmul(buf, K.Q4_0, 32, 128, buf, buf, 1, rope_store=narrow)
