"""Kernels' attention and KV cache: which kernels attend over the cache for each adapter variant.

A part of `Kernels` (kernels.py), which mixes it in: the methods use its plumbing (_step, _shared_scratch,
variant, wg, kv_f16, and products.py's dot4_x for o's integer x). CPU adapters score, normalise and weigh in
one dispatch of attention.wgsl through a scores buffer; GPUs attend in two of
attention_flash.wgsl, parts of the context in workgroup memory, then their combination.
"""

from __future__ import annotations

from .kernel_ops import BatchOp, OneTokenOp, Op, cdiv

# GPUs' attention is attention_flash.wgsl's for every step: one token, streams decoding together, prompts (a part
# or more of the context a query; a step's queries share the parts one token would have). Prompts took
# attention.wgsl's CPU kernels (scores, softmax, weighted sum) before, through a scores buffer of (max_batch, n_heads,
# n_ctx) f32 that bounded max_batch (H200, prefill of 512 in batches of 64: 8B Q4_0 818 -> 830 tok/s, 1B 4646 ->
# 4892; alike at 256 and 512, NOTES.md).
# Positions a part of the context at least, and parts at most: a workgroup's part is a chain of dependent loads
# (its tiles one after another), the combine's loop over parts another (H200, one token's attention in the 8B
# shape at depth 2048 / 4000: 32 and 128: 41.6 / 53.2 us, 64 and 256: 36.1 / 42.4 us). Parts of 32 rather than 64
# with 256 of them, decode (H200, NOTES.md): SmolLM2-135M +5 % after 128 tokens, +3 % after 2048 (its few heads
# leave short contexts with few workgroups); 1B +0-4 %, 8B +3 % / -1 %; 16 lost 8-17 % at depth 2048.
ATTENTION_MIN_PART = 32
ATTENTION_MAX_PARTS = 256
FLASH_MAX_HEAD_DIM = 256  # attention_flash.wgsl's MAX_HEAD_DIM: its workgroup arrays' size
# One token's combine: a workgroup of 32 outputs (a multiple of 8: quantize4's blocks) x 8 slices of the parts,
# each folding every eighth part (attention_flash.wgsl's combined()).
COMBINE_OUTPUTS = 32
COMBINE_SLICES = 8


def attention_parts(max_ctx: int) -> int:
    """The parts one token's context may be split into on GPUs (attention_flash.wgsl's PARTS)."""
    return max(1, min(ATTENTION_MAX_PARTS, cdiv(max_ctx, ATTENTION_MIN_PART)))


def attention_partial_rows(max_ctx: int, max_tokens: int) -> int:
    """Rows of N_HEADS x HEAD_DIM in attention_flash.wgsl's scratch: its tokens' parts, PARTS shared out."""
    return max(attention_parts(max_ctx), max_tokens)


def attention_scores_nbytes(max_ctx: int, max_tokens: int, n_heads: int) -> int:
    """Bytes of attention.wgsl's scores buffer on CPU adapters, which every layer shares: (max_tokens, n_heads,
    max_ctx rounded up to 4) f32."""
    return max_tokens * n_heads * cdiv(max_ctx, 4) * 4 * 4


class AttentionKernels:
    """Kernels' attention and KV cache (see the module's docstring)."""

    def kv_cache_nbytes(self, max_ctx: int, kv_dim: int) -> int:
        """Bytes of one layer's key (or value) cache: max_ctx rows of kv_dim f32, or f16 when kv_f16."""
        return max_ctx * kv_dim * (2 if self.kv_f16 else 4)

    def store_kv(self, k, v, k_cache, v_cache, kv_dim: int, src_row: int = 0, k_col: int = 0, v_col: int = 0, *,
                 folded_up_to: int = 0) -> Op:
        """Cache rows pos + t <- k[t], v[t] (f32, or f16 when kv_f16).

        src_row, k_col, v_col: k and v are rows src_row wide (0: kv_dim) holding keys from column k_col
        and values from v_col (the model passes its q | k | v buffer as both). folded_up_to: as rope's."""
        if kv_dim % 4 or src_row % 4 or k_col % 4 or v_col % 4:
            raise ValueError(f"kv_dim {kv_dim}, src_row {src_row} and columns {k_col}, {v_col}: not multiples of 4")
        c = {"KV_DIM": kv_dim, "KV_F16": self.kv_f16, "WG": self.wg}
        if src_row:
            c.update(SRC_ROW=src_row, K_COL=k_col, V_COL=v_col)
        gx = cdiv(kv_dim // 4, self.wg)
        step = self._step("kv_cache.wgsl", "store_kv", c, [k, v, k_cache, v_cache], lambda t: (gx, t, 1))
        return BatchOp(step, up_to=folded_up_to) if folded_up_to else Op(step)

    def attention(
        self, q, k_cache, v_cache, out, n_heads: int, n_kv_heads: int, head_dim: int, max_ctx: int, max_tokens: int,
        q_row: int = 0, *, scale: float | None = None, softcap: float = 0.0, window: int = 0,
        quantise_out: bool = False,
    ) -> Op:
        """Causal GQA of q [T, n_heads * head_dim] over cache rows 0..pos + t, into out (same shape).

        q_row: q's rows are this wide (0: n_heads * head_dim), the query heads leading each.
        scale: of q.k (None: 1 / sqrt(head_dim)); softcap: scores become softcap * tanh(s / softcap)
        (0: not capped); window: query p sees only keys p - window < s <= p (0: every earlier key).
        quantise_out: on GPUs with `dot4`, one token's out also goes into the integer x of the products of
        n_heads * head_dim inputs, for a `matmul` with x_quantised (o's) to take without quantising it."""
        if n_heads % n_kv_heads or head_dim % 8 or q_row % 4:
            raise ValueError(f"{n_heads} heads over {n_kv_heads} KV heads of {head_dim} dims: unsupported")
        if softcap < 0 or window < 0 or (scale is not None and scale <= 0):
            raise ValueError(f"attention scale {scale}, softcap {softcap} and window {window} must be positive")
        ctx = cdiv(max_ctx, 4) * 4
        c = {"N_HEADS": n_heads, "N_KV_HEADS": n_kv_heads, "HEAD_DIM": head_dim, "CTX": ctx, "KV_F16": self.kv_f16}
        score_options = {name: value for name, value in (("SCALE", scale), ("SOFTCAP", softcap), ("WINDOW", window))
                         if value}
        chunks = n_kv_heads * cdiv(n_heads // n_kv_heads, 4)  # up to 4 query heads per invocation
        q_row_c = {"Q_ROW": q_row} if q_row else {}
        if self.variant == "scalar":  # CPU adapters: a workgroup per (token, chunk), its loops barrier-free
            scores = self._shared_scratch(attention_scores_nbytes(max_ctx, max_tokens, n_heads), "attention scores")
            attending = {**c, "WG": self.wg, **score_options, **q_row_c}
            attend = self._step("attention.wgsl", "attend", attending, [q, k_cache, scores, v_cache, out],
                                lambda t: (1, chunks, t))
            return Op(attend, owned=(scores,))
        # GPUs: two dispatches, the scores in workgroup memory (attention_flash.wgsl)
        if head_dim > FLASH_MAX_HEAD_DIM:
            raise ValueError(f"heads of {head_dim} dims: GPUs' attention takes up to {FLASH_MAX_HEAD_DIM}")
        parts = attention_parts(max_ctx)
        rows = attention_partial_rows(max_ctx, max_tokens)
        acc = self._shared_scratch(rows * n_heads * head_dim * 4, "attention partials")
        ml = self._shared_scratch(rows * n_heads * 8, "attention maxima")
        # (combine counts a token's parts as attend_part does: from its visible positions, so WINDOW too)
        fc = {**c, "PARTS": parts, "MIN_PART": ATTENTION_MIN_PART, **({"WINDOW": window} if window else {})}
        attending = {**fc, **score_options, **q_row_c, "WG": head_dim // 2}
        attend = self._step("attention_flash.wgsl", "attend_part", attending, [q, k_cache, v_cache, acc, ml],
                            lambda t: (max(1, parts // t), chunks, t))
        outputs = n_heads * head_dim // 4
        combine = self._step("attention_flash.wgsl", "attend_combine", {**fc, "WG": 64}, [acc, ml, out],
                             lambda t: (cdiv(outputs, 64), t, 1))
        # One token's parts (65 at depth 2048) folded by COMBINE_SLICES invocations an output, not one
        one_fc = {**fc, "WG": COMBINE_OUTPUTS * COMBINE_SLICES, "SLICES": COMBINE_SLICES}
        one_grid = lambda t: (cdiv(outputs, COMBINE_OUTPUTS), t, 1)  # noqa: E731
        if quantise_out and self.dot4:
            planes, sums = self.dot4_x(n_heads * head_dim, max_tokens)
            quantising = {**one_fc, **self.dot4_x_layout(n_heads * head_dim, spread=True)}
            one = self._step("attention_flash.wgsl", "attend_combine_quantized", quantising,
                             [acc, ml, out, planes, sums], one_grid)
        else:
            one = self._step("attention_flash.wgsl", "attend_combine", one_fc, [acc, ml, out], one_grid)
        return OneTokenOp(attend, combine, one_steps=(attend, one), owned=(acc, ml))
