"""From a GGUF's bytes to GPU buffers: the layouts weights take there, and the uploader that checks each
tensor's type and shape on the way (Model.load drives it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import kernels as K
from .errors import UnsupportedModel
from .gguf import GGUFFile, ggml_type_name
from .gpu import TEXEL_BYTES, Device
from .memory import row_ranges, stacking_runs

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class Weight:
    """A matrix (or matrices stacked row-wise) in one GPU buffer, or texels (Kernels.weights_in_texels), in
    one ggml type."""

    buffer: object
    type: int  # ggml type, one of kernels.SUPPORTED_WEIGHT_TYPES (floats, 32-weight blocks, K-quants)


@dataclass(frozen=True)
class Separate:
    """Matrices a product would read stacked, in several buffers (memory.stacking_runs: their types differ, as a
    buffer holds one, or a part would start off a 4-byte boundary), each part one or more of them stacked. The
    model then runs one product per part."""

    parts: tuple[Weight, ...]
    rows: tuple[int, ...]  # each part's


@dataclass(frozen=True)
class Rows:
    """A vocabulary-sized matrix (the embedding, the head) too big for one binding, as row ranges of one
    buffer each: (the part, its first row, its rows). Products and lookups run once per part."""

    parts: tuple[tuple[Weight, int, int], ...]


def row_parts(matrix: Weight | Rows, n_rows: int) -> tuple[tuple[Weight, int, int], ...]:
    return matrix.parts if isinstance(matrix, Rows) else ((matrix, 0, n_rows),)


# What the block reads (Model._load_globals, _load_layer); LongRoPE's files hold both factor tensors, of
# which the context picks one.
LONG_ROPE_FACTORS = ("rope_factors_short.weight", "rope_factors_long.weight")
_GLOBAL_TENSORS = {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight", *LONG_ROPE_FACTORS}
_LAYER_TENSORS = {
    *(f"attn_{n}.weight" for n in ("q", "k", "v", "qkv", "output", "norm", "q_norm", "k_norm")),
    *(f"attn_{n}.bias" for n in "qkv"),
    *(f"ffn_{n}.weight" for n in ("gate", "up", "down", "norm")),
    "post_attention_norm.weight", "post_ffw_norm.weight",
}  # fmt: skip


def check_no_unknown_tensors(config, tensors) -> None:
    """Refuse a file with a tensor the block would not read (an output bias, a MoE router, a vision
    tower): running without it would answer, and answer wrongly."""
    for name in tensors:
        layer, _, rest = name.removeprefix("blk.").partition(".")
        known = rest in _LAYER_TENSORS and layer.isdigit() and int(layer) < config.n_layers
        if name not in _GLOBAL_TENSORS and not (name.startswith("blk.") and known):
            raise UnsupportedModel(f"tensor {name} is not part of the {config.arch} block Hearth runs")


class Uploader:
    """Moves tensors from the GGUF's bytes to GPU buffers, checking types and shapes on the way; matrices go on
    into texels through `to_texels` (Kernels.texels_from, where Kernels.weights_in_texels), through a buffer
    each that is freed at once."""

    def __init__(self, device: Device, gguf: GGUFFile, progress: ProgressFn | None, unused: frozenset = frozenset(),
                 to_texels: Callable | None = None):
        self.device, self.gguf, self.progress, self.to_texels = device, gguf, progress, to_texels
        self.texels = to_texels is not None
        self.max_binding = device.info.weight_binding(self.texels)
        self.total = sum(t.nbytes for t in gguf.tensors.values() if t.name not in unused)
        self.done = 0

    def has(self, name: str) -> bool:
        return name in self.gguf.tensors

    def vocab_matrix(self, name: str, shape: tuple[int, int]) -> Weight | Rows:
        """The embedding or the head: one buffer, or row ranges of one buffer each past a binding
        (memory.row_ranges, which the memory plan counted the same way)."""
        info = self._info(name, shape, whole=False)
        self._check_type(info)
        n_rows = shape[1]
        row_bytes = info.nbytes // n_rows
        ranges = row_ranges(n_rows, self._bound_bytes(info.type, row_bytes, matrix=True), self.max_binding)
        if len(ranges) == 1:
            return Weight(self._upload(info, matrix=True), info.type)
        return Rows(tuple(
            (Weight(self._upload_bytes(info, first * row_bytes, n * row_bytes, f"{name} rows {first}.."), info.type),
             first, n)
            for first, n in ranges
        ))  # fmt: skip

    def _bound_bytes(self, wtype: int, nbytes: int, matrix: bool) -> int:
        """What `nbytes` of a tensor take where kernels bind them (texels lay some types out padded)."""
        return K.texel_layout_bytes(wtype, nbytes) if matrix and self.texels else nbytes

    def tensor(self, name: str, shape: tuple[int, int]) -> Weight:
        """A matrix weight, uploaded in its own (possibly quantised) type."""
        info = self._info(name, shape)
        self._check_type(info)
        return Weight(self._upload(info, matrix=True), info.type)

    def _check_type(self, info) -> None:
        if info.type not in K.SUPPORTED_WEIGHT_TYPES:
            supported = ", ".join(ggml_type_name(t) for t in sorted(K.SUPPORTED_WEIGHT_TYPES))
            raise UnsupportedModel(
                f"tensor {info.name} has type {info.type_name}, which Hearth does not run (supported: {supported})"
            )

    def stacked(self, names: list[str], n_in: int, rows: list[int]) -> Weight | Separate:
        """Matrices of n_in columns stacked row-wise in one buffer; Separate where they cannot all share one
        (memory.stacking_runs), each run of them stacked in its own."""
        infos = []
        for name, n in zip(names, rows, strict=True):  # each checked in turn: errors name the first bad one
            infos.append(self._info(name, (n_in, n)))
            self._check_type(infos[-1])
        runs = stacking_runs(infos)
        weights = tuple(Weight(self._upload_all(run, run[0].name + (" stacked" if len(run) > 1 else ""),
                                                matrix=True), run[0].type) for run in runs)
        if len(weights) == 1:
            return weights[0]
        n_rows = dict(zip(names, rows, strict=True))
        return Separate(weights, tuple(sum(n_rows[info.name] for info in run) for run in runs))

    def separate(self, names: list[str], n_in: int, rows: list[int]) -> Separate:
        """Matrices of n_in columns, one buffer each (what `stacked` makes of matrices of different types)."""
        return Separate(tuple(self.tensor(name, (n_in, n)) for name, n in zip(names, rows, strict=True)), tuple(rows))

    def stacked_norms(self, names: list[str], sizes: list[int]):
        """F32 vectors one after another in one buffer (Qwen2's q, k and v biases)."""
        infos = [self._info(name, (n,)) for name, n in zip(names, sizes, strict=True)]
        for info in infos:
            if info.type != K.F32:
                raise UnsupportedModel(f"tensor {info.name} has type {info.type_name}; Hearth expects F32 vectors")
        return self._upload_all(infos, infos[0].name + " stacked")

    def norm(self, name: str, n: int):
        """A vector (norm weight, rope factors) as a buffer; kernels read these as f32."""
        info = self._info(name, (n,))
        if info.type != K.F32:
            raise UnsupportedModel(f"tensor {name} has type {info.type_name}; Hearth expects F32 vectors")
        return self._upload(info)

    def _info(self, name: str, shape: tuple[int, ...], whole: bool = True):
        info = self.gguf.tensors.get(name)
        if info is None:
            raise UnsupportedModel(f"the model lacks tensor {name}")
        if tuple(info.shape) != tuple(shape):
            raise UnsupportedModel(f"tensor {name} has shape {list(info.shape)}, expected {list(shape)}")
        if whole and self._bound_bytes(info.type, info.nbytes, len(shape) > 1) > self.max_binding:
            raise UnsupportedModel(
                f"tensor {name} ({info.nbytes >> 20} MiB) exceeds this GPU's largest binding "
                f"({self.max_binding >> 20} MiB)"
            )
        return info

    def _upload(self, info, matrix: bool = False):
        return self._upload_all([info], info.name, matrix)

    def _upload_bytes(self, info, start: int, n: int, label: str):
        """Bytes start..start + n of one tensor (a matrix), into a buffer of their own (a row range of a Rows)."""
        buffer = self._buffer(n, label, matrix=True)
        self.device.write_buffer(buffer, self.gguf.source.view(info.offset + start, n))
        self._advance(n)
        return self._finish(buffer, n, label, info)

    def _buffer(self, n: int, label: str, matrix: bool):
        """A buffer for n bytes: a matrix's for texels holds whole texels, which the copy into them reads."""
        if matrix and self.texels:
            return self.device.create_buffer(-(-n // TEXEL_BYTES) * TEXEL_BYTES, label=label + " (staging)")
        return self.device.create_buffer(n, label=label)

    def _finish(self, buffer, n: int, label: str, matrix):
        """The buffer, or for a matrix (`matrix`: the tensor info of it, or of one of those stacked in it) with
        texels its bytes as texels (the buffer freed)."""
        if matrix is None or not self.texels:
            return buffer
        texels = self.to_texels(buffer, n, matrix.type, K.weight_nbytes(matrix.type, matrix.shape[0]), label)
        buffer.destroy()  # (after the submitted copy: WebGPU lets it finish)
        return texels

    def _advance(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)

    def _upload_all(self, infos: list, label: str, matrix: bool = False):
        total = sum(info.nbytes for info in infos)
        if self._bound_bytes(infos[0].type, total, matrix) > self.max_binding:
            raise UnsupportedModel(
                f"{label} ({total >> 20} MiB) exceeds this GPU's largest binding ({self.max_binding >> 20} MiB)"
            )
        buffer = self._buffer(total, label, matrix)
        offset = 0
        for info in infos:
            self.device.write_buffer(buffer, self.gguf.view(info.name), offset)
            offset += info.nbytes
            self._advance(info.nbytes)
        return self._finish(buffer, total, label, infos[0] if matrix else None)
