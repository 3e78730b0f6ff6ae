"""The WGSL kernels behind the model's forward pass, bound once at load time.

Each `Kernels` method compiles (or reuses) the pipelines of one op family from `shaders/`, binds
the buffers it is given and returns an `Op`; the model then only calls `op.record(recorder, n)`
every step. Every kernel reads the shared `StepParams` uniform at binding 0 (`set_step` writes it),
so one command buffer serves any position, and grids depend only on n_tokens.

Variants, chosen by adapter: "scalar" kernels never use barriers or workgroup memory and give each
invocation whole rows (CPU adapters such as lavapipe and SwiftShader run workgroups as loops over
SIMD lanes and pay heavily at barriers); "subgroup" matrix products give each row to a subgroup and
reduce with subgroupAdd (real GPUs). The other ops are barrier-free in both variants.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .gpu import UNIFORM
from .kernel_ops import MatmulOp, Op, Step, cdiv, fixed, split_groups  # noqa: F401 (Op: re-exported)

F32, F16, Q4_0, Q4_1, Q8_0 = 0, 1, 2, 3, 8
SUPPORTED_WEIGHT_TYPES = frozenset({F32, F16, Q4_0, Q4_1, Q8_0})
BLOCK_TYPES = {Q4_0: 18, Q4_1: 20, Q8_0: 34}  # bytes per block of 32 weights
VARIANTS = ("scalar", "subgroup")
# WGSL has no include: these files are appended to a module's own text (declarations may come in
# any order; only directives such as `enable` must come first, so they stay in the module's file).
_LIBRARIES = {
    "matmul.wgsl": ("quant.wgsl",),
    "matmul_subgroup.wgsl": ("matmul.wgsl", "quant.wgsl"),
    "embed.wgsl": ("quant.wgsl",),
}
MV_ROWS, MM_ROWS, TILE = 8, 8, 4  # rows and tokens an invocation of matmul.wgsl owns (its constants)
SG_ROWS, SG_TILE = 4, 4  # rows a workgroup and tokens a subgroup owns in matmul_subgroup.wgsl


def weight_nbytes(wtype: int, n_elements: int) -> int:
    """Bytes of n_elements weights of ggml type `wtype` as stored in GGUF."""
    if wtype == F32:
        return 4 * n_elements
    if wtype == F16:
        return 2 * n_elements
    if wtype not in BLOCK_TYPES:
        raise ValueError(f"ggml type {wtype} is not supported (supported: {sorted(SUPPORTED_WEIGHT_TYPES)})")
    if n_elements % 32:
        raise ValueError(f"{n_elements} elements are not whole blocks of 32")
    return n_elements // 32 * BLOCK_TYPES[wtype]


def load_shader(name: str) -> str:
    """The WGSL text of shaders/<name>; the browser build replaces this with its own loader."""
    return (Path(__file__).parent.parent / "shaders" / name).read_text()


def _check_row(wtype: int, n: int) -> None:
    """Rows are read as vec4 and block types as whole blocks."""
    if wtype not in SUPPORTED_WEIGHT_TYPES:
        raise ValueError(f"ggml type {wtype} is not supported (supported: {sorted(SUPPORTED_WEIGHT_TYPES)})")
    step = 32 if wtype in BLOCK_TYPES else 4
    if n <= 0 or n % step:
        raise ValueError(f"rows of {n} elements: ggml type {wtype} needs a multiple of {step}")


class Kernels:
    """Compiles and caches pipelines for one device, and builds the ops the model records."""

    def __init__(self, device, *, variant: str | None = None, kv_f16: bool = False):
        info = device.info
        if variant is None:
            variant = "subgroup" if not info.is_software and "subgroups" in info.features else "scalar"
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
        if variant == "subgroup" and "subgroups" not in info.features:
            raise ValueError("the subgroup variant needs an adapter with the 'subgroups' feature")
        self.device, self.variant, self.kv_f16 = device, variant, kv_f16
        # lavapipe runs 8 lanes at a time: small workgroups spread rows over its threads.
        self.wg = 8 if info.is_software else 64
        self.params = device.create_buffer(16, UNIFORM, label="step_params")
        self._sources: dict[str, str] = {}
        self._pipelines: dict[tuple, object] = {}

    # ---------------------------------------------------------------- plumbing

    def set_step(self, pos: int, n_tokens: int) -> None:
        """Write StepParams: the batch's first absolute position and its number of tokens."""
        self.device.write_buffer(self.params, struct.pack("<4I", pos, n_tokens, 0, 0))

    def pipeline(self, file: str, entry: str, constants: dict[str, float]):
        """The compute pipeline of `entry` in shaders/`file`, cached by (file, entry, constants)."""
        key = (file, entry, tuple(sorted(constants.items())))
        if key not in self._pipelines:
            if file not in self._sources:
                parts = [file, *_LIBRARIES.get(file, ())]
                self._sources[file] = "\n".join(load_shader(part) for part in parts)
            self._pipelines[key] = self.device.create_pipeline(self._sources[file], entry, constants)
        return self._pipelines[key]

    def _step(self, file: str, entry: str, constants: dict, buffers: list, grid) -> Step:
        """A dispatch of `entry` with `buffers` at bindings 1.. (params is always binding 0)."""
        pipeline = self.pipeline(file, entry, constants)
        bind_group = self.device.create_bind_group(pipeline, [self.params, *buffers])
        return Step(pipeline, bind_group, grid)

    def _scratch(self, nbytes: int, label: str):
        if nbytes > self.device.info.max_storage_binding:
            raise ValueError(
                f"{label} needs {nbytes >> 20} MiB, more than this GPU binds "
                f"({self.device.info.max_storage_binding >> 20} MiB): lower max_tokens or the context"
            )
        return self.device.create_buffer(nbytes, label=label)

    # ---------------------------------------------------------------- matrix products

    def matmul(self, w, wtype: int, n_in: int, n_out: int, x, y, max_tokens: int) -> Op:
        """y[t, r] = sum_k W[r, k] x[t, k]; W is n_out rows of n_in weights in ggml type `wtype`."""
        _check_row(wtype, n_in)
        c = {"WTYPE": wtype, "N_IN": n_in, "N_OUT": n_out}
        buffers = [w, x, y]
        if self.variant == "subgroup":
            wg = 32 * SG_ROWS  # one row per subgroup of 32; other subgroup sizes loop or idle
            c = {**c, "WG": wg, "ROWS": SG_ROWS}
            gx, gy = split_groups(cdiv(n_out, SG_ROWS))
            decode = self._step("matmul_subgroup.wgsl", "matvec_subgroup", c, buffers, fixed((gx, gy, 1)))
            prefill = self._step(
                "matmul_subgroup.wgsl", "matmul_subgroup", c, buffers, lambda n: (gx, gy, cdiv(n, SG_TILE))
            )
        else:
            c = {**c, "WG": self.wg}
            gx, gy = split_groups(cdiv(n_out, MV_ROWS * self.wg))
            decode = self._step("matmul.wgsl", "matvec", c, buffers, fixed((gx, gy, 1)))
            px, py = split_groups(cdiv(n_out, MM_ROWS * self.wg))
            prefill = self._step("matmul.wgsl", "matmul", c, buffers, lambda n: (px, py, cdiv(n, TILE)))
        return MatmulOp(decode, prefill if max_tokens > 1 else None)
