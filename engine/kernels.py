"""The WGSL kernels behind the model's forward pass, bound once at load time.

Each `Kernels` method compiles (or reuses) the pipelines of one op family from `shaders/`, binds
the buffers it is given and returns an `Op`; the model then only calls `op.record(recorder, n)`
every step. Every kernel reads the shared `StepParams` uniform at binding 0 (`set_step` writes it, or
`set_places` for a step of several sequences), so one command buffer serves any position, and grids
depend only on n_tokens.

Variants, chosen by adapter: "scalar" kernels never use barriers or workgroup memory and give each
invocation whole rows (CPU adapters such as lavapipe and SwiftShader run workgroups as loops over
SIMD lanes, pay heavily at barriers, and pay per load instruction), and their batched products
(prefill) are register-tiled; "subgroup" products give 4 rows of a token to a subgroup whose lanes
split the blocks and reduce with subgroupAdd, a token per grid row (real GPUs), fold the RMSNorm
before them in for one token, and normalise rows with a workgroup each. The other ops are shared.
Scalar kernels read weights from texels (weights_texture.wgsl says why: rows in tiles, block columns together),
the others from storage buffers; on adapters with subgroups their products' lanes share x's loads
(matmul_lanes.wgsl).
The matrix products are products.py's, attention and the KV cache attention.py's, mixed in.
"""

from __future__ import annotations

import struct
from weakref import WeakKeyDictionary

from .attention import (  # noqa: F401  (tests name these as kernels.X)
    ATTENTION_MIN_PART,
    FLASH_MAX_HEAD_DIM,
    AttentionKernels,
    attention_partial_rows,
    attention_parts,
    attention_scores_nbytes,
)
from .errors import InvalidRequest
from .gpu import STORAGE, UNIFORM
from .kernel_ops import BatchOp, Op, PenaltyOp, Step, cdiv, check_distinct, fixed, same_buffer
from .products import (  # noqa: F401  (tests name these as kernels.X)
    DOT4_BATCH8_ROW,
    DOT4_PLANES,
    DOT4_TYPES,
    GLU_ACTIVATIONS,
    MM_ROWS,
    MV_ROWS,
    TILE,
    TILE_PLANES,
    ProductKernels,
    RopeStore,
    check_glu,
    dot4_pays,
    dot4_x_nbytes,
    dot4_x_tokens,
    tiles_fit,
)
from .shader_sources import TEXEL_BINDINGS, load_shader, module_parts  # noqa: F401  (tests read shaders as kernels.load_shader)
from .weight_binding import WeightBinding
from .weight_types import (  # noqa: F401  (the model and tests name the types as kernels.X)
    BF16,
    BLOCK_TYPES,
    F16,
    F32,
    FLOAT_TYPES,
    IQ4_NL,
    IQ4_XS,
    Q2_K,
    Q3_K,
    Q4_0,
    Q4_1,
    Q4_K,
    Q5_0,
    Q5_1,
    Q5_K,
    Q6_K,
    Q8_0,
    SUPPORTED_WEIGHT_TYPES,
    check_row,
    texel_layout_bytes,
    weight_nbytes,
)

VARIANTS = ("scalar", "subgroup")
# Tokens a step of several sequences may hold (positions.wgsl's MAX_TABLE_TOKENS): each token's place
# (its sequence's first cache row, its position) rides in the StepParams uniform, after its 16 bytes.
MAX_TABLE_TOKENS = 64
ARGMAX_PARTS = 256  # invocations that each scan a share of a row of logits before one picks among them
STEP_PARAMS_NBYTES = 16 + 8 * MAX_TABLE_TOKENS
# One-token steps recorded into one submission at most (Model.forward_greedy): their StepParams are written to
# the step ring together, and each step's are copied from it into the uniform on the GPU, in order.
MAX_RING_STEPS = 16
# Shaders compiled without naga's runtime checks on Vulkan (NativeDevice.create_pipeline's checked=False): the
# products' and attention's, whose indices of local and workgroup arrays stay in range by construction (loop
# counters under the constants that size them, rows clamped by clamp_row, tokens past a batch read as its last).
# Their buffer accesses stay guarded: wgpu enables the driver's robustBufferAccess2. H200 (NOTES.md, session 22):
# prompt tiles at T = 512 8-10 % faster; 8B Q4_0 decode 278 -> 318 tok/s, prefill 1790 -> 1943 (f16 2237 -> 2473);
# q8 prompts' integer tiles 3585 -> 3758 (session 27).
UNCHECKED_SHADERS = frozenset({
    "matmul.wgsl", "matmul_lanes.wgsl", "matmul_subgroup.wgsl", "matmul_tiled.wgsl", "matmul_tiled_wide.wgsl",
    "matmul_tiled_f16.wgsl", "matmul_tiled_dot4.wgsl", "matvec_dot4.wgsl", "quantize_x.wgsl", "attention.wgsl",
    "attention_flash.wgsl",
})
# Compiled pipelines per device, shared by every Kernels on it: CPU adapters take up to a second
# to compile one matmul specialisation.
_PIPELINES: WeakKeyDictionary = WeakKeyDictionary()


def weights_in_texels(variant: str) -> bool:
    """Whether kernels of this variant read weights from texels: the scalar ones, for CPU adapters
    (weights_texture.wgsl says why)."""
    return variant == "scalar"


def lanes_sharing_x(info, variant: str) -> int:
    """Lanes of a subgroup that share the scalar products' x loads (matmul_lanes.wgsl's X_LANES): 8, or 4, at most
    the adapter's smallest subgroup; 0 where lanes load their own (other variants, adapters without subgroups or
    whose subgroup sizes are unknown or below 4)."""
    if variant != "scalar" or "subgroups" not in info.features:
        return 0
    return max((n for n in (8, 4) if n <= info.subgroup_min_size), default=0)


def resolve_variant(info, variant: str | None = None) -> str:
    """The kernel variant for an adapter: `variant` if given (and possible), else "subgroup" on GPUs with
    subgroups and "scalar" on CPU adapters and the rest."""
    if variant is None:
        variant = "subgroup" if not info.is_software and "subgroups" in info.features else "scalar"
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    if variant == "subgroup" and "subgroups" not in info.features:
        raise ValueError("the subgroup variant needs an adapter with the 'subgroups' feature")
    return variant


# Tokens a step holds unless Model.load is told (max_batch): a prompt runs in steps of this many. GPUs 512: with
# prompts' products in tiles (H200, prefill of 512 tokens: 1B Q4_0 7500 -> 9850 tok/s from 256, 8B 1490 -> 1553;
# the 1B shape's o and down make 64 tiles a step of 256, too few for the GPU's 132 cores); CPU adapters 64: their
# token tiles gain nothing from more, and their attention scores grow with it (NOTES.md).
STEP_TOKENS = {"subgroup": 512, "scalar": 64}
class Kernels(ProductKernels, AttentionKernels, WeightBinding):
    """Compiles and caches pipelines for one device, and builds the ops the model records."""

    def __init__(self, device, *, variant: str | None = None, kv_f16: bool = False, dot4: bool = True,
                 f16_prompts: bool = False, q8_prompts: bool = False, x_lanes: int | None = None):
        """dot4: products on GPUs quantise x and multiply integers (products.py; see dot4_pays).
        f16_prompts: prompts' products in f16 tiles (matmul_tiled_f16.wgsl; the adapter needs shader-f16), on
        subgroup matrices where the browser offers them (matmul_tiled_matrix.wgsl). An H200's prefill at the 8B
        shape gains 28 % natively (NOTES.md, session 22), and 1.29x more on matrices in Chromium (session 23),
        but the default model's logits move ~6e-3 of their largest (its outlier channels; peers' f16 and int8
        products move them so too): off unless asked for, since f32's follow the float64 reference (DOT4_PLANES
        made the same choice for one token's integer x).
        q8_prompts: prompts' products of integer types as packed integer dot products on x quantised to a byte a
        value, a scale each half block (matmul_tiled_dot4.wgsl: llama.cpp's q8_1 for its prompts has one a block;
        any GPU that takes prompts in tiles): faster than f16 tiles natively (H200, 8B prefill 1.36x, NOTES.md
        sessions 27 and 30); less exact than f16 where a model has outlier channels (the default model's logits
        move ~1.2e-2 of their largest on text; benchmarks/bench_precision.py: KL divergence from f32 ~2e-3).
        x_lanes: lanes that share the scalar products' x loads (0, 4 or 8; lanes_sharing_x's if None)."""
        info = device.info
        variant = resolve_variant(info, variant)
        self.device, self.variant, self.kv_f16 = device, variant, kv_f16
        if f16_prompts and "shader-f16" not in info.features:
            raise InvalidRequest(f"f16 prompts need a GPU with the 'shader-f16' feature, which {info.device} lacks")
        self.f16_prompts, self.q8_prompts = f16_prompts, q8_prompts
        self.dot4 = dot4 and variant == "subgroup"
        self.x_lanes = lanes_sharing_x(info, variant) if x_lanes is None else x_lanes
        if self.x_lanes not in (0, 4, 8) or (self.x_lanes and variant != "scalar"):
            raise ValueError(f"x_lanes is 0, 4 or 8, and 0 outside the scalar variant, got {self.x_lanes}")
        self.weights_in_texels = weights_in_texels(variant)  # (Uploader makes the model's weights so)
        # lavapipe runs 8 lanes at a time: small workgroups spread rows over its threads.
        self.wg = 8 if info.is_software else 64
        self.params = device.create_buffer(STEP_PARAMS_NBYTES, UNIFORM, label="step_params")
        self.step_ring = device.create_buffer(MAX_RING_STEPS * 16, STORAGE, label="step_ring")  # (steps, 4) u32
        self._sources: dict[tuple, str] = {}
        self._pipelines: dict[tuple, object] = _PIPELINES.setdefault(device, {})
        self._constants: dict[tuple, object] = {}
        self._weight_copies: dict[tuple, tuple] = {}  # (the source, its padded copy or texels)
        self._shared: dict[tuple, object] = {}

    # ---------------------------------------------------------------- plumbing

    def set_step(self, pos: int, n_tokens: int) -> None:
        """Write StepParams for a batch of one sequence: its first position and its number of tokens."""
        self.device.write_buffer(self.params, struct.pack("<4I", pos, n_tokens, 0, 0))

    def set_steps(self, pos: int, n_steps: int) -> None:
        """Write the step ring: StepParams of n_steps one-token steps of one sequence from position pos on, for
        use_ring_step to put in place in turn (queue writes land before a submission, not between its steps)."""
        if not 0 < n_steps <= MAX_RING_STEPS:
            raise ValueError(f"the step ring holds 1..{MAX_RING_STEPS} steps, got {n_steps}")
        params = [value for i in range(n_steps) for value in (pos + i, 1, 0, 0)]
        self.device.write_buffer(self.step_ring, struct.pack(f"<{len(params)}I", *params))

    def use_ring_step(self, rec, i: int) -> None:
        """Record the copy of the step ring's step i into StepParams: the dispatches recorded after it see it."""
        rec.copy(self.step_ring, 16 * i, self.params, 0, 16)

    def set_places(self, places: list[tuple[int, int]]) -> None:
        """Write StepParams for a batch whose token t is at (first cache row of its sequence, position)
        places[t]: tokens of several sequences in one step (positions.wgsl)."""
        if not 0 < len(places) <= MAX_TABLE_TOKENS:
            raise ValueError(f"a step of several sequences holds 1..{MAX_TABLE_TOKENS} tokens, got {len(places)}")
        flat = [value for place in places for value in place]
        self.device.write_buffer(self.params, struct.pack(f"<4I{len(flat)}I", 0, len(places), 1, 0, *flat))

    def pipeline(self, file: str, entry: str, constants: dict[str, float]):
        """The compute pipeline of `entry` in shaders/`file`, cached by (file, entry, constants)."""
        texels = TEXEL_BINDINGS[self.device.storage_texels] if self.weights_in_texels else None
        key = (file, entry, tuple(sorted(constants.items())), texels)
        if key not in self._pipelines:
            parts = module_parts(file, constants.get("WTYPE"), texels)
            if parts not in self._sources:
                self._sources[parts] = "\n".join(load_shader(part) for part in parts)
            self._pipelines[key] = self.device.create_pipeline(self._sources[parts], entry, constants,
                                                               checked=file not in UNCHECKED_SHADERS)
        return self._pipelines[key]

    def _step(self, file: str, entry: str, constants: dict, buffers: list, grid) -> Step:
        """A dispatch of `entry` with `buffers` at bindings 1.. (params is always binding 0)."""
        pipeline = self.pipeline(file, entry, constants)
        bind_group = self.device.create_bind_group(pipeline, [self.params, *buffers])
        return Step(pipeline, bind_group, grid)

    def _shared_scratch(self, nbytes: int, label: str):
        """A scratch buffer every op of this size and label shares: dispatches run one after another, and
        an op's scratch holds nothing from one dispatch to the next (attention's scores: one buffer for
        every layer, not one each)."""
        key = (label, nbytes)
        if key not in self._shared:
            self._shared[key] = self._scratch(nbytes, label)
        return self._shared[key]

    def _scratch(self, nbytes: int, label: str):
        if nbytes > self.device.info.max_storage_binding:
            raise ValueError(
                f"{label} needs {nbytes >> 20} MiB, more than this GPU binds "
                f"({self.device.info.max_storage_binding >> 20} MiB): lower max_tokens or the context"
            )
        return self.device.create_buffer(nbytes, label=label)

    # ---------------------------------------------------------------- matrix products

    def embed(self, table, wtype: int, dim: int, ids, out, scale: float = 1.0, first_row: int = 0,
              n_rows: int = 0) -> Op:
        """out[t, :] = dequant(table row ids[t]) * scale; ids is a u32 buffer of at least n_tokens ids.
        n_rows: the table holds rows first_row.. first_row + n_rows - 1 of a split one (model.Rows), and
        only tokens among them are written (0: the whole table)."""
        check_row(wtype, dim)
        c = {"WTYPE": wtype, "N_IN": dim, "WG": self.wg, **({"SCALE": scale} if scale != 1.0 else {})}
        if n_rows:
            c.update(FIRST_ROW=first_row, N_ROWS=n_rows)
        gx = cdiv(dim // 4, self.wg)
        weights, rows = self._weights(table, wtype, dim)
        c.update(rows)
        return Op(self._step("embed.wgsl", "embed", c, [weights, ids, out], lambda n: (gx, n, 1)))

    def rmsnorm(self, x, weight, out, n: int, eps: float, *, folded_up_to: int = 0,
                accumulate: bool = False) -> Op:
        """out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight (accumulate: out[t] +=); out must not be x.
        folded_up_to: nothing for steps of up to this many tokens (the products after it fold the norm in
        for them: see `folds_norm` and `fuses_up_to`)."""
        check_distinct(x, out, "rmsnorm's out")
        if folded_up_to:
            return BatchOp(*self.rmsnorm(x, weight, out, n, eps, accumulate=accumulate).steps, up_to=folded_up_to)
        c = {"N": n, "EPS": eps, **({"ACCUMULATE": True} if accumulate else {})}
        if self.variant == "subgroup":  # a GPU: a workgroup per row
            return Op(self._step("rmsnorm.wgsl", "rmsnorm_rows", c, [x, weight, out], lambda t: (t, 1, 1)))
        c, entry = {**c, "WG": self.wg}, "rmsnorm4" if n % 4 == 0 else "rmsnorm"
        return Op(self._step("rmsnorm.wgsl", entry, c, [x, weight, out], lambda t: (cdiv(t, self.wg), 1, 1)))

    def rmsnorm_heads(self, x, weight, n_heads: int, head_dim: int, eps: float, *, row: int, col: int = 0) -> Op:
        """RMSNorm of each of n_heads heads in place, x[t, col + h * head_dim ..] for rows of `row`
        (Qwen 3's and Gemma 3's per-head q and k norms, one weight of head_dim for all heads)."""
        if col + n_heads * head_dim > row:
            raise ValueError(f"{n_heads} heads of {head_dim} from column {col} overrun rows of {row}")
        c = {"N": head_dim, "EPS": eps, "N_HEADS": n_heads, "ROW": row, "COL": col, "WG": self.wg}
        grid = lambda t: (cdiv(t * n_heads, self.wg), 1, 1)  # noqa: E731
        return Op(self._step("rmsnorm.wgsl", "rmsnorm_heads", c, [x, weight], grid))

    def rope(
        self,
        x,
        n_heads: int,
        head_dim: int,
        n_rot: int,
        theta: float,
        freq_scale: float,
        neox: bool,
        freq_factors=None,
        row: int = 0,
        mscale: float = 1.0,
        *,
        folded_up_to: int = 0,
    ) -> Op:
        """Rotates the first n_rot dims of each head of x [T, n_heads * head_dim] in place, row t at pos + t.

        row: x's rows are this wide (0: n_heads * head_dim), the heads leading each. mscale multiplies
        the rotated pairs (LongRoPE's attention factor). folded_up_to: nothing for steps of up to this many
        tokens (the qkv product rotates its own output for them: matmul's rope_store and `fuses_up_to`)."""
        if n_rot % 2 or not 0 < n_rot <= head_dim:
            raise ValueError(f"n_rot {n_rot} must be even and at most head_dim {head_dim}")
        half = n_rot // 2
        c = {"N_HEADS": n_heads, "HEAD_DIM": head_dim, "N_ROT": n_rot, "NEOX": neox, "WG": self.wg}
        if row:
            c["ROW"] = row
        if mscale != 1.0:
            c["MSCALE"] = mscale
        gx = cdiv(half, self.wg)
        grid = lambda t: (gx, t, n_heads)  # noqa: E731
        tables = self.rope_tables(n_rot, theta, freq_scale, freq_factors)
        step = self._step("rope.wgsl", "rope", c, [x, *tables], grid)
        return BatchOp(step, up_to=folded_up_to) if folded_up_to else Op(step)

    def rope_tables(self, n_rot: int, theta: float, freq_scale: float, freq_factors=None) -> tuple:
        """rope.wgsl's inv_freq and factors buffers (rotations.wgsl): each rotation's speed, and its divisor
        (freq_factors, llama3's rope_freqs; ones when None)."""
        half = n_rot // 2
        # Rotation speeds in float64 here, rounded once to f32: closer to the textbook than pow() on the GPU.
        inv_freq = [freq_scale * theta ** (-2 * i / n_rot) for i in range(half)]
        inv_freq_buffer = self._constant(struct.pack(f"<{half}f", *inv_freq), "rope_inv_freq")
        if freq_factors is None:  # the shader always divides by a factor: bind ones
            freq_factors = self._constant(struct.pack(f"<{half}f", *[1.0] * half), "ones")
        return inv_freq_buffer, freq_factors

    def glu_mul(self, gate, up, out, n: int, activation: str = "silu") -> Op:
        """out = act(gate) * up over [T, n] (act: GLU_ACTIVATIONS); out may be gate itself."""
        check_glu(activation)
        gelu = {"GELU": True} if activation == "gelu" else {}
        if same_buffer(out, gate):
            return self._elementwise("glu_mul_in_gate", [gate, up], n, gelu)
        check_distinct(out, up, "glu_mul's out")
        return self._elementwise("glu_mul", [gate, up, out], n, gelu)

    def add(self, x, y, n: int) -> Op:
        """x += y over [T, n] (the residual stream)."""
        check_distinct(x, y, "add's y")
        return self._elementwise("add", [x, y], n)

    def add_bias(self, x, bias, n: int) -> Op:
        """x[t, :] += bias (Qwen2's QKV biases)."""
        return self._elementwise("add_bias", [x, bias], n)

    def softcap(self, x, n: int, cap: float) -> Op:
        """x = cap * tanh(x / cap) over [T, n] in place (Gemma 2's final logits)."""
        if cap <= 0:
            raise ValueError(f"soft-cap {cap} must be positive")
        return self._elementwise("softcap", [x], n, {"CAP": cap})

    def _elementwise(self, entry: str, buffers: list, n: int, constants: dict | None = None) -> Op:
        if n % 4 == 0:  # vec4 loads: 4x fewer load instructions, which CPU adapters pay for
            entry, n_invocations = entry + "4", n // 4
        else:
            n_invocations = n
        wg = 64  # rows are long: no need for lavapipe's narrow workgroups here
        gx = cdiv(n_invocations, wg)
        c = {"N": n, "WG": wg, **(constants or {})}
        return Op(self._step("elementwise.wgsl", entry, c, buffers, lambda t: (gx, t, 1)))

    # ---------------------------------------------------------------- sampling

    def argmax(self, logits, out, n: int, *, rows: bool = False, max_rows: int = 1) -> Op:
        """out[0] = index of the largest of logits[0:n] (lowest on ties): one row, whatever the batch; or with
        `rows`, out[t] for each row t of a batch's [T, n] logits (up to max_rows)."""
        parts = ARGMAX_PARTS
        partial = self._scratch(parts * 8 * max_rows, "argmax partials")
        c = {"N": n, "PARTS": parts, "WG": self.wg}
        gx = cdiv(parts, self.wg)
        partial_grid, final_grid = (lambda t: (gx, t, 1), lambda t: (t, 1, 1)) if rows else \
            (fixed((gx, 1, 1)), fixed((1, 1, 1)))  # fmt: skip
        return Op(
            self._step("sampling.wgsl", "argmax_partial", c, [logits, partial], partial_grid),
            self._step("sampling.wgsl", "argmax_final", {"PARTS": parts}, [partial, out], final_grid),
            owned=(partial,),
        )

    def penalize(self, logits, n_vocab: int, max_history: int) -> PenaltyOp:
        """Repetition/presence/frequency penalties on one row of logits; `set` them before recording."""
        entries = self._scratch(max(max_history, 1) * 8, "penalty entries")
        settings = self._scratch(16, "penalty settings")  # zero-initialised: count 0, a no-op until set
        step = self._step(
            "sampling.wgsl",
            "penalize",
            {"WG": self.wg},
            [logits, entries, settings],
            fixed((cdiv(max(max_history, 1), self.wg), 1, 1)),
        )
        return PenaltyOp(self.device, step, entries, settings, max_history, n_vocab)

    def _constant(self, data: bytes, label: str):
        """A small read-only buffer, shared by every op that asks for the same bytes."""
        key = (label, data)
        if key not in self._constants:
            buffer = self.device.create_buffer(len(data), label=label)
            self.device.write_buffer(buffer, data)
            self._constants[key] = buffer
        return self._constants[key]
