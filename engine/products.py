"""Matrix products: which kernel computes y = W x for each adapter variant, weight type and batch size.

A part of `Kernels` (kernels.py), which mixes it in: the methods use its plumbing (_step, _shared_scratch,
_weights, variant, wg). Why each kernel where: CPU adapters take matmul.wgsl (barrier-free, whole rows an
invocation, token-tiled batches); GPUs matvec_dot4.wgsl (x quantised by quantize_x.wgsl, packed integer dot
products) for the quantised types where it pays (dot4_pays), and matmul_subgroup.wgsl (f32 x) for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpu import SUBGROUP_MATRIX
from .kernel_ops import MatmulOp, Op, Step, cdiv, check_distinct, fixed, split_groups
from .weight_types import IQ4_NL, IQ4_XS, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, check_row

GLU_ACTIVATIONS = ("silu", "gelu")  # the feed-forward's gate: SiLU (SwiGLU), or GELU's tanh form (GeGLU)
MV_ROWS, MM_ROWS, TILE = 16, 16, 4  # rows and tokens an invocation of matmul.wgsl owns (its constants)
# Rows a subgroup owns in matmul_subgroup.wgsl (4 or 8), for one token and for batches; a workgroup's 4
# subgroups own 4x that.
SG_RPS, SG_BATCH_RPS = 4, 8
# Types whose library has int_parts: on GPUs their products are matvec_dot4.wgsl's packed integer dot
# products, on x quantised by quantize_x.wgsl (the rest keep matmul_subgroup.wgsl).
DOT4_TYPES = frozenset({Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS})
# Invocations of matvec_dot4's workgroup, which owns four outputs of one token's product: more loads in flight
# than a subgroup an output (NOTES.md).
DOT4_WG = 128
# One token's products of rows longer than this take DOT4_LONG_WG invocations a workgroup: the 8B shape's down
# (4096 rows of 14336) left an H200 half empty with 128 (1024 workgroups, 3.5 blocks an invocation). H200, that
# product alone 1540 -> 1739-1809 GB/s, 8B Q4_0 decode 267.5 -> 274.4 tok/s; the 1B shape's down (rows of 8192,
# 2 blocks an invocation at 128) lost at 256 (1016 -> 754 GB/s), so rows of 8192 keep 128 (NOTES.md).
DOT4_LONG_ROW, DOT4_LONG_WG = 8192, 256
QUANTIZE_WG = 256  # quantize_x.wgsl's WG
DOT4_BATCH_ROWS = 16  # outputs a workgroup of matvec_dot4_batch (128 invocations): four a subgroup of 32 (batch8: 32)
# A batch's tokens a subgroup of matvec_dot4_batch takes (at most its MAX_TT): each weight block decoded once
# for them. 4, not 8, with four rows a subgroup (H200 prefill of 512: 8B 809 -> 833 tok/s, 1B 4533 -> 4807).
DOT4_TT = 4
# Batches' products of rows at least this long take matvec_dot4_batch8, eight outputs a subgroup: each x block a
# lane loads serves twice the rows (x is most of what a batch loads). H200, prefill of 512 in steps of 256: 8B
# Q4_0 934 -> 987 tok/s, 8B Q4_K_M 790 -> 842, 1B Q4_0 (only its down, rows of 8192) 5900 -> 6125; rows of 2048
# (the 1B shape's other products) lost 5-7 % (NOTES.md).
DOT4_BATCH8_ROW = 4096
# Batches of up to DOT4_FEW tokens (streams decoding together: a token a stream) take matvec_dot4_few, one
# token's layout with DOT4_FEW_TT tokens a workgroup (at most its MAX_FEW), rather than matvec_dot4_batch.
DOT4_FEW, DOT4_FEW_TT = 8, 8
# matvec_dot4_few's GROUPS of tokens (for plain products, and for GLU ones, which split gate and up as well;
# each dividing DOT4_FEW_TT), each part of the sums in its own subgroups (SPLIT, DOT4_FEW_WG invocations at most:
# its workgroup memory holds 32 subgroups' sums) rather than one after the other in every invocation.
DOT4_FEW_GROUPS, DOT4_FEW_GLU_GROUPS, DOT4_FEW_SPLIT, DOT4_FEW_WG = 2, 2, True, 128
# Model width from which the products quantise x (dot4_pays): below it the extra dispatch a product
# costs more than the integer products save. H200, GPU time a token: SmolLM2-135M (dim 576) 3.36 ms with
# them, 2.30 without; the Llama 3.2 1B shape (2048) 2.12 with, 2.48 without (NOTES.md).
DOT4_MIN_DIM = 1024
# Signed bytes quantize_x.wgsl splits each element of x into: 23 bits of a block's largest |x|. Two planes (15
# bits) read as fast on an H200 but left logits 1e-3 from f32's on SmolLM2 (a block holding one of its
# outlier channels keeps only a few bits for the rest); three leave 1e-5, f32's own rounding (NOTES.md).
DOT4_PLANES = 3
# Invocations of matvec_dot4_glu_quantized's workgroup (one token's gate_up quantising down's x): 32 outputs, four
# a subgroup.
DOT4_GLU_QUANTIZED_WG = 256
# Batches' products on GPUs whose workgroups hold TILED_STORAGE bytes: matmul_tiled.wgsl's tiles of TILE_ROWS rows
# (half of them up rows with GLU) x TILE_TOKENS tokens on f32 x (no quantize_x), rather than matvec_dot4_batch's
# integer products: an H200's prompt of 512 at the 8B shape 939 -> 1489 tok/s, at 1B 6072 -> 7522, every product
# in tiles (tiles only where a step makes 256 of them left the 8B's at 1201: NOTES.md, session 19). 28 KB fit the
# 32 KB that browsers give on desktop GPUs; 128 tokens a tile (37 KB) would not.
TILED, TILED_STORAGE = True, 28672
TILE_ROWS, TILE_TOKENS = 128, 64
# f32 tiles are wide (matmul_tiled_wide.wgsl: twice the tokens and invocations, 32 KB: browsers' and lavapipe's
# most) where workgroups hold them and a product's grid of them has WIDE_MIN_WORKGROUPS at least at its most
# tokens: fewer left an H200 idle (the 1B shape's o and down, 64 of them: 1.65x slower, 8B's k and v, 32: 1.7x),
# where at 128 and more they ran 1.15-1.23x faster (8B's q, o, gate_up, down; NOTES.md, session 31). The IQ4s'
# products hold their table too (TABLE_BYTES: quant_iq4.wgsl's iq4_pairs).
WIDE_STORAGE, WIDE_MIN_WORKGROUPS = 32768, 128
TABLE_TYPES, TABLE_BYTES = frozenset({IQ4_NL, IQ4_XS}), 1024
# f16 prompts on adapters with f16 subgroup matrices (SUBGROUP_MATRIX) take matmul_tiled_matrix.wgsl: the same
# tiles, multiplied on tensor cores, MATRIX_STAGE columns a stage (rows whose length it divides; others keep the
# f16 tiles) in MATRIX_STORAGE bytes of workgroup memory.
MATRIX_STAGE, MATRIX_STORAGE = 64, 32768
# q8 prompts (Kernels' q8_prompts) take matmul_tiled_dot4.wgsl's integer tiles, x as TILE_PLANES plane of bytes a
# block, a scale each half (llama.cpp's q8_1 has one a block): an H200's prefill of 512 at the 8B shape 2478 tok/s
# in f16 tiles -> 3586 with a scale a block (NOTES.md, session 27), 3330 -> 3104 with a scale each half (session 30).
TILE_PLANES = 1
# Types whose scalar products take each quant where it lies in its word and scale x instead (quant.wgsl's
# QUANTS_IN_PLACE: a shift fewer a weight).
IN_PLACE_TYPES = frozenset({Q4_0, Q4_1, Q8_0})
# Types whose blocks' halves have scales of their own (IntParts' d.x != d.y): matmul_tiled_dot4's TWO_SCALES.
TWO_SCALE_TYPES = frozenset({Q2_K, Q3_K, Q6_K})


def dot4_x_nbytes(n_in: int, planes: int = DOT4_PLANES) -> tuple[int, int]:
    """Bytes of quantize_x.wgsl's two outputs for one token of n_in in `planes` planes: the planes, and the
    scales and sums."""
    return n_in * planes, n_in // 32 * 16


def tiles_fit(info, variant: str) -> bool:
    """Whether batches' integer-type products are matmul_tiled.wgsl's on this adapter (an AdapterInfo): GPUs
    whose workgroups hold the tiles."""
    return TILED and variant == "subgroup" and info.max_workgroup_storage >= TILED_STORAGE


def wide_tiles_pay(info, wtype: int, row_groups: int, max_tokens: int) -> bool:
    """Whether the f32 tiles of a product of wtype with row_groups tile rows, in steps of up to max_tokens, are
    wide on this adapter (an AdapterInfo): where its workgroups hold them and their grid fills a large GPU."""
    room = WIDE_STORAGE + (TABLE_BYTES if wtype in TABLE_TYPES else 0)
    return info.max_workgroup_storage >= room and row_groups * cdiv(max_tokens, 2 * TILE_TOKENS) >= WIDE_MIN_WORKGROUPS


def _offers_matrices(info) -> bool:
    """Whether the adapter (an AdapterInfo) multiplies f16 subgroup matrices with room for matmul_tiled_matrix.wgsl."""
    return SUBGROUP_MATRIX in info.features and info.max_workgroup_storage >= MATRIX_STORAGE


def matrix_tiles(info, variant: str, f16_prompts: bool) -> bool:
    """Whether f16 prompts' products in tiles run on subgroup matrices on this adapter (those of rows that
    matrix_tiles_fit)."""
    return f16_prompts and tiles_fit(info, variant) and _offers_matrices(info)


def matrix_tiles_fit(info, n_in: int) -> bool:
    """Whether f16 prompts' products of rows of n_in are matmul_tiled_matrix.wgsl's on this adapter."""
    return _offers_matrices(info) and n_in % MATRIX_STAGE == 0


def dot4_x_tokens(max_tokens: int, tiles: bool) -> int:
    """Tokens the integer x scratch holds for products of up to max_tokens: with tiles only one token's and a
    few tokens' products quantise x (batches read it as f32), so DOT4_FEW at most."""
    return min(max_tokens, DOT4_FEW) if tiles else max_tokens


def dot4_pays(dim: int) -> bool:
    """Whether a model of this width runs its products as matvec_dot4 on GPUs (Kernels' dot4)."""
    return dim >= DOT4_MIN_DIM


@dataclass(frozen=True)
class RopeStore:
    """What one token's q | k | v product does after it (matmul's rope_store; rope_store.wgsl): q's and k's
    heads rotated as Kernels.rope rotates adjacent pairs (not NEOX), with its tables (Kernels.rope_tables)
    and mscale, and k and v stored into the caches as Kernels.store_kv stores them."""

    q_dim: int
    kv_dim: int
    head_dim: int
    n_rot: int
    tables: tuple  # (inv_freq, factors) buffers
    k_cache: object
    v_cache: object
    mscale: float = 1.0


def check_glu(activation: str | None) -> None:
    if activation is not None and activation not in GLU_ACTIVATIONS:
        raise ValueError(f"GLU activation {activation!r} is not one of {GLU_ACTIVATIONS}")


class ProductKernels:
    """Kernels' matrix products (see the module's docstring)."""

    @property
    def folds_norm(self) -> bool:
        """Whether one token's products apply the RMSNorm before them (matmul's `norm`): on GPUs, where
        a dispatch fewer is worth more than the few loads each subgroup repeats, and on CPU adapters whose lanes
        share x's loads (Kernels.x_lanes), which share the norm's the same way: a dispatch costs lavapipe 40-70 us
        of thread wake-ups on two cores (NOTES.md, session 24)."""
        return self.variant == "subgroup" or bool(self.x_lanes)

    def fuses_up_to(self, wtype: int) -> int:
        """The most tokens a step may hold for which products of `wtype` apply the norm before them (matmul's
        `norm`, where `folds_norm`) and rotate and store their output (matmul's `rope_store`): a few tokens'
        (DOT4_FEW) with integer products, else one token's."""
        return DOT4_FEW if self.uses_dot4(wtype) else 1

    def rotates_output(self, wtype: int, head_dim: int) -> bool:
        """Whether one token's q | k | v product of this type, in heads of head_dim, can rotate and store its
        output itself (matmul's rope_store): the rows an invocation (scalar), subgroup or workgroup (dot4)
        writes together lie in one head."""
        return head_dim % self._rows_together(wtype) == 0

    def _rows_together(self, wtype: int) -> int:
        return MV_ROWS if self.variant == "scalar" and not self.uses_dot4(wtype) else 4

    def matmul(
        self, w, wtype: int, n_in: int, n_out: int, x, y, max_tokens: int, *,
        glu: str | None = None, accumulate: bool = False, y_stride: int = 0, y_col: int = 0,
        norm: tuple | None = None, reuse_x: bool = False, x_quantised: bool = False,
        rope_store: RopeStore | None = None, quantise_out: bool = False,
    ) -> Op:
        """y[t, r] = sum_k W[r, k] x[t, k]; W is n_out rows of n_in weights in ggml type `wtype`.

        glu: "silu" or "gelu": W is 2 * n_out rows (gate, then up) and y = act(gate x) * (up x).
        accumulate: y +=.
        y_stride, y_col: y's rows are y_stride wide (0: n_out) and this product fills columns y_col..
        norm: (x_raw, weight, eps), where x = rmsnorm(x_raw) * weight; when `folds_norm`, steps of up to
        `fuses_up_to` tokens read x_raw and normalise it themselves (larger ones read x, which a BatchOp fills).
        reuse_x: the product takes x as integers from the product recorded just before it, which `uses_dot4`
        and had the same x, norm, n_in and max_tokens (Separate q, k, v after the first): one dispatch fewer.
        x_quantised: one token's x arrives as integers from the op recorded just before (`attention`'s
        quantise_out, for o): that product, too, skips quantize_x; batches still quantise x.
        rope_store: y is q | k | v, which steps of up to `fuses_up_to` tokens rotate and store themselves (see
        RopeStore; heads as `rotates_output` needs them). Larger ones leave that to rope and store_kv.
        quantise_out: a GLU product (`glu`, n_out a multiple of 32) that `uses_dot4` also puts one token's y into
        the integer x of the products of n_out inputs, for a matmul with x_quantised (down's) to take.
        """
        check_row(wtype, n_in)
        check_glu(glu)
        if rope_store is not None:
            check_rope_store(rope_store, n_out, self._rows_together(wtype), not (glu or accumulate or y_stride))
        if accumulate:
            check_distinct(x, y, "an accumulating matmul's y")
        c = {"WTYPE": wtype, "N_IN": n_in, "N_OUT": n_out}
        for name, value, default in (("GLU", bool(glu), False), ("GELU", glu == "gelu", False),
                                     ("ACCUMULATE", accumulate, False),
                                     ("Y_STRIDE", y_stride, 0), ("Y_COL", y_col, 0)):
            if value != default:  # only what differs, so plain products keep their pipelines
                c[name] = value
        weights, rows = self._weights(w, wtype, n_in)
        c.update(rows)
        buffers = [weights, x, y]
        rope_buffers = [] if rope_store is None else [*rope_store.tables, rope_store.k_cache, rope_store.v_cache]
        wg, prefill, few, per_row = self.wg, None, (), 2 if glu else 1  # GLU: two weight rows per output
        # binding 4 of matmul_lanes.wgsl: the norm's weights for one token's products, or x again (unused)
        lanes_x = [x] if self.x_lanes else []
        if max_tokens > 1 and self.variant == "scalar":
            px, py = split_groups(cdiv(n_out * per_row, MM_ROWS * wg))
            grid = lambda n: (px, py, cdiv(n, TILE))  # noqa: E731
            prefill = (self._step(*self._scalar("matmul", {**c, "WG": wg}), [*buffers, *lanes_x], grid),)
        if self.uses_dot4(wtype):  # GPUs: x quantised, then integer products (a batch's DOT4_TT tokens a subgroup)
            one = self._matvec_dot4(c, buffers[0], n_in, n_out, x, y, norm, max_tokens, "one", rope_store)
            if quantise_out:
                one = (one[0], self._glu_quantized(c, buffers[0], n_in, n_out, y, max_tokens))
            decode = one[reuse_x or x_quantised:]
            if max_tokens > 1:
                few = self._matvec_dot4(c, buffers[0], n_in, n_out, x, y, norm, max_tokens, "few", rope_store)
                few = few[reuse_x:]
                if self.tiles:
                    prefill = self._tiles(c, buffers, n_in, n_out, bool(glu), max_tokens)
                else:
                    prefill = self._matvec_dot4(c, buffers[0], n_in, n_out, x, y, None, max_tokens,
                                                "batch")[reuse_x:]
        elif self.variant == "subgroup":  # 4 rows per subgroup of 32
            gx, gy = split_groups(cdiv(n_out * per_row, 4 * SG_RPS))
            sc = {**c, "WG": 128, "ROWS": 4 * SG_RPS}
            grid = lambda n: (gx, gy, n)  # noqa: E731  (a token a workgroup row: weights come from L2 again)
            plain = [*buffers, x]  # binding 4: the norm's weights, or x again (unused)
            if max_tokens > 1:  # more rows a subgroup: each x block serves 8 (+25 % on an H200, NOTES.md)
                bx, by = split_groups(cdiv(n_out * per_row, 4 * SG_BATCH_RPS))
                batch = {**sc, "ROWS": 4 * SG_BATCH_RPS, "RPS": SG_BATCH_RPS}
                prefill = (self._step("matmul_subgroup.wgsl", "matvec_subgroup", batch, plain, lambda n: (bx, by, n)),)
                if self.tiles and wtype in DOT4_TYPES:  # integer types' prompts in tiles (they read f32 x), a few
                    few = prefill                       # tokens a token a workgroup row still
                    prefill = self._tiles(c, buffers, n_in, n_out, bool(glu), max_tokens)
            if norm is not None:
                x_raw, weight, eps = norm
                sc, plain = {**sc, "NORM": True, "EPS": eps}, [buffers[0], x_raw, y, weight]
            entry = "matvec_subgroup"
            if rope_store is not None:
                sc, entry = {**sc, **self._rope_store_constants(rope_store)}, "matvec_subgroup_rope"
                plain = [*plain, *rope_buffers]
            decode = (self._step("matmul_subgroup.wgsl", entry, sc, plain, grid),)
        else:
            gx, gy = split_groups(cdiv(n_out * per_row, MV_ROWS * wg))
            mc, entry, one = {**c, "WG": wg}, "matvec", [*buffers, *lanes_x]
            if norm is not None and self.folds_norm:  # (lanes share x's loads: matmul_lanes.wgsl's NORM)
                x_raw, weight, eps = norm
                mc, one = {**mc, "NORM": True, "EPS": eps}, [buffers[0], x_raw, y, weight]
            if rope_store is not None:  # (matmul.wgsl has no binding 4)
                mc, entry = {**mc, **self._rope_store_constants(rope_store)}, "matvec_rope"
                one = [*one, *([] if self.x_lanes else [None]), *rope_buffers]
            decode = (self._step(*self._scalar(entry, mc), one, fixed((gx, gy, 1))),)
        return MatmulOp(decode, prefill, few, DOT4_FEW)

    def _scalar(self, entry: str, constants: dict) -> tuple[str, str, dict]:
        """The module, entry point and constants of matmul.wgsl's `entry`: matmul_lanes.wgsl's where lanes share
        x's loads (Kernels.x_lanes). IN_PLACE_TYPES' leave the quants in place (quant.wgsl's QUANTS_IN_PLACE)."""
        if constants["WTYPE"] in IN_PLACE_TYPES:
            constants = {**constants, "QUANTS_IN_PLACE": True}
        if not self.x_lanes:
            return "matmul.wgsl", entry, constants
        return "matmul_lanes.wgsl", f"{entry}_lanes", {**constants, "X_LANES": self.x_lanes}

    @property
    def tiles(self) -> bool:
        """Whether batches' integer-type products are matmul_tiled.wgsl's (GPUs with its workgroup memory)."""
        return tiles_fit(self.device.info, self.variant)

    @property
    def prompts_on_matrices(self) -> bool:
        """Whether f16 prompts' products run on subgroup matrices (tensor cores) here (matrix_tiles; q8 prompts
        take integer tiles instead)."""
        return not self.q8_prompts and matrix_tiles(self.device.info, self.variant, self.f16_prompts)

    def _tiles(self, c: dict, buffers: list, n_in: int, n_out: int, glu: bool, max_tokens: int) -> tuple[Step, ...]:
        """A batch's product in tiles (tiles_module): TILE_ROWS rows (GLU: half as many outputs) x TILE_TOKENS
        tokens a workgroup; integer tiles quantise x first (one plane, into scratch of their own)."""
        row_groups = cdiv(n_out, TILE_ROWS // 2 if glu else TILE_ROWS)
        tx, ty = split_groups(row_groups)
        module = self.tiles_module(n_in)
        if module == "matmul_tiled.wgsl" and wide_tiles_pay(self.device.info, c["WTYPE"], row_groups, max_tokens):
            module, tokens = "matmul_tiled_wide.wgsl", 2 * TILE_TOKENS
        else:
            tokens = TILE_TOKENS
        grid = lambda n: (tx, ty, cdiv(n, tokens))  # noqa: E731
        if module != "matmul_tiled_dot4.wgsl":
            return (self._step(module, "matmul_tiled", c, buffers, grid),)
        w, x, y = buffers
        q_bytes, s_bytes = (n * max_tokens for n in dot4_x_nbytes(n_in, TILE_PLANES))
        planes, sums = self._shared_scratch(q_bytes, "tile x q"), self._shared_scratch(s_bytes, "tile x s")
        layout = self.dot4_x_layout(n_in, spread=False, planes=TILE_PLANES)
        quantize = self._quantize_x(layout, [x, x], planes, sums)
        tc = {**c, **layout, **({"TWO_SCALES": True} if c["WTYPE"] in TWO_SCALE_TYPES else {})}
        return quantize, self._step(module, "matmul_tiled", tc, [w, planes, y, sums], grid)

    def tiles_module(self, n_in: int) -> str:
        """The module of batches' tiles for rows of n_in (Kernels' options): integer tiles with q8_prompts (faster
        than the others where measured, Chromium's tensor cores among them: NOTES.md, session 27); with f16_prompts
        on subgroup matrices where the adapter has them (matrix_tiles_fit), else f16 tiles; else f32 ones."""
        if self.q8_prompts:
            return "matmul_tiled_dot4.wgsl"
        if self.f16_prompts and matrix_tiles_fit(self.device.info, n_in):
            return "matmul_tiled_matrix.wgsl"
        return "matmul_tiled_f16.wgsl" if self.f16_prompts else "matmul_tiled.wgsl"

    def uses_dot4(self, wtype: int) -> bool:
        """Whether products with weights of `wtype` quantise x first (see `matmul`'s reuse_x)."""
        return self.dot4 and wtype in DOT4_TYPES

    def dot4_x(self, n_in: int, max_tokens: int) -> tuple:
        """The scratch where x of n_in inputs goes as integers (planes, then scales and sums), which every
        product of this width and max_tokens and what quantises x for them share."""
        tokens = dot4_x_tokens(max_tokens, self.tiles)
        q_bytes, s_bytes = (n * tokens for n in dot4_x_nbytes(n_in))
        return self._shared_scratch(q_bytes, "dot4 x q"), self._shared_scratch(s_bytes, "dot4 x s")

    @staticmethod
    def dot4_x_layout(n_in: int, spread: bool, planes: int = DOT4_PLANES) -> dict:
        """The overrides that say how x of n_in inputs lies in dot4_x (x_blocks.wgsl), which what quantises x
        and the product must share: one token's (and a few tokens') lanes load consecutive words (spread);
        matvec_dot4_batch and the integer tiles (one plane) keep blocks whole."""
        return {"N_IN": n_in, "PLANES": planes, **({"SPREAD": True} if spread else {})}

    def _quantize_x(self, constants: dict, inputs: list, planes, sums) -> Step:
        """quantize_x.wgsl's dispatch: x (or x_raw and the norm's weights) into planes and sums as `constants`
        (a dot4_x_layout, NORM) say; an invocation 4 elements, a workgroup row a token."""
        x_groups = cdiv(constants["N_IN"] // 4, QUANTIZE_WG)
        return self._step("quantize_x.wgsl", "quantize_x", constants, [*inputs, planes, sums],
                          lambda n: (x_groups, 1, n))

    def _glu_quantized(self, c: dict, w, n_in: int, n_out: int, y, max_tokens: int) -> Step:
        """One token's GLU product that also quantises its output for the next product (matvec_dot4.wgsl's
        matvec_dot4_glu_quantized): x from dot4_x(n_in), the output's integers into dot4_x(n_out)."""
        if not c.get("GLU") or n_out % 32:
            raise ValueError(f"quantise_out: a GLU product of whole blocks of outputs, not {n_out} plain ones")
        planes, sums = self.dot4_x(n_in, max_tokens)
        out_planes, out_sums = self.dot4_x(n_out, max_tokens)
        gx, gy = split_groups(n_out // 32)
        pc = {**c, "WG": DOT4_GLU_QUANTIZED_WG, **self.dot4_x_layout(n_in, spread=True)}
        return self._step("matvec_dot4.wgsl", "matvec_dot4_glu_quantized", pc,
                          [w, planes, y, sums, out_planes, out_sums], fixed((gx, gy, 1)))

    def _rope_store_constants(self, rs: RopeStore) -> dict:
        """rope_store.wgsl's overrides."""
        mscale = {"MSCALE": rs.mscale} if rs.mscale != 1.0 else {}
        dims = dict(Q_DIM=rs.q_dim, KV_DIM=rs.kv_dim, HEAD_DIM=rs.head_dim, N_ROT=rs.n_rot)
        return {**dims, "KV_F16": self.kv_f16, **mscale}

    def _matvec_dot4(self, c: dict, w, n_in: int, n_out: int, x, y, norm: tuple | None, max_tokens: int,
                     tokens: str, rope_store: RopeStore | None = None) -> tuple[Step, Step]:
        """A product as two dispatches: x (normalised first when `norm`) quantised into dot4_x, then
        matvec_dot4 over it for `tokens` "one", matvec_dot4_few for "few" (DOT4_FEW_TT tokens a workgroup)
        (each ..._rope with rope_store), or matvec_dot4_batch (matvec_dot4_batch8 for rows of at least
        DOT4_BATCH8_ROW) for "batch" (DOT4_TT tokens a subgroup)."""
        planes, sums = self.dot4_x(n_in, max_tokens)
        layout = self.dot4_x_layout(n_in, tokens != "batch")
        qc, inputs = layout, [x, x]
        if norm is not None:
            x_raw, weight, eps = norm
            qc, inputs = {**qc, "NORM": True, "EPS": eps}, [x_raw, weight]
        quantize = self._quantize_x(qc, inputs, planes, sums)
        buffers = [w, planes, y, sums]
        if tokens == "batch":
            batch8 = n_in >= DOT4_BATCH8_ROW
            rows = DOT4_BATCH_ROWS * (2 if batch8 else 1)
            gx, gy = split_groups(cdiv(n_out, rows))
            pc = {**c, "WG": 128, "ROWS": rows, "TT": DOT4_TT, **layout}
            grid = lambda n: (gx, gy, cdiv(n, DOT4_TT))  # noqa: E731
            entry = "matvec_dot4_batch8" if batch8 else "matvec_dot4_batch"
            return quantize, self._step("matvec_dot4.wgsl", entry, pc, buffers, grid)
        # a workgroup four outputs, no more invocations on a part than a row has blocks
        wg = min(DOT4_LONG_WG if n_in > DOT4_LONG_ROW else DOT4_WG, max(32, 1 << (n_in // 32 - 1).bit_length()))
        gx, gy = split_groups(cdiv(n_out, 4))
        pc = {**c, "WG": wg, **layout}
        entry, grid = "matvec_dot4", fixed((gx, gy, 1))
        if tokens == "few":
            token_groups = DOT4_FEW_GLU_GROUPS if c.get("GLU") else DOT4_FEW_GROUPS
            parts = token_groups * (2 if c.get("GLU") else 1)
            few = {"TT": DOT4_FEW_TT, "GROUPS": token_groups, "SPLIT": DOT4_FEW_SPLIT,
                   "WG": min(parts * wg if DOT4_FEW_SPLIT else wg, DOT4_FEW_WG)}
            pc, entry, grid = {**pc, **few}, "matvec_dot4_few", lambda n: (gx, gy, cdiv(n, DOT4_FEW_TT))
        if rope_store is not None:
            rs = rope_store
            pc.update(self._rope_store_constants(rs))
            buffers, entry = [*buffers, *rs.tables, rs.k_cache, rs.v_cache], f"{entry}_rope"
        return quantize, self._step("matvec_dot4.wgsl", entry, pc, buffers, grid)


def check_rope_store(rs: RopeStore, n_out: int, rows_together: int, plain: bool) -> None:
    """rope_store.wgsl's conditions: a plain product (no GLU, accumulation or stride) whose n_out rows are
    q | k | v of whole heads of a multiple of rows_together dims (the rows written together lie in one head)."""
    if not plain:
        raise ValueError("rope_store: only plain products (no GLU, accumulation or y_stride) rotate their output")
    whole = not (rs.q_dim % rs.head_dim or rs.kv_dim % rs.head_dim or rs.head_dim % rows_together or rs.n_rot % 2)
    if n_out != rs.q_dim + 2 * rs.kv_dim or not whole or not 0 < rs.n_rot <= rs.head_dim:
        raise ValueError(f"rope_store: {n_out} outputs are not q | k | v of {rs.q_dim}, {rs.kv_dim}, {rs.kv_dim} "
                         f"in heads of {rs.head_dim} (a multiple of {rows_together}), rotating an even {rs.n_rot} "
                         "of each")
