"""How kernels bind a weight tensor: a storage buffer of whole 16-byte words (GPUs), or texels (CPU adapters:
weights_texture.wgsl says why), some types laid out there with a gap in each block (weight_types.TEXEL_GAPS).

A part of `Kernels` (kernels.py), which mixes it in: the methods use its plumbing (device, _step, _scratch,
weights_in_texels, variant, _weight_copies).
"""

from __future__ import annotations

from .gpu import TEXEL_BYTES, Texels
from .kernel_ops import cdiv, fixed, split_groups
from .weight_types import BLOCK_TYPES, TEXEL_GAPS, texel_layout_bytes, weight_nbytes


class WeightBinding:
    """Kernels' weight bindings (see the module's docstring)."""

    def texels_from(self, src, size: int, wtype: int, row_bytes: int, label: str = "weights") -> Texels:
        """A tensor of `size` bytes in `wtype`, rows of `row_bytes` (as GGUF stores them), in src from byte 0 (whole
        texels of them), as texels laid out as weights_texture.wgsl reads them: floats as they are, blocks in tiles
        of ROW_TILE rows and TEXEL_GAPS types' with their gap (texel_repack.wgsl). Submitted at once; src may be
        freed after."""
        texels = self.device.create_texels(texel_layout_bytes(wtype, size), label=label)
        recorder = self.device.recorder()
        if wtype in BLOCK_TYPES:
            n = cdiv(texels.size, TEXEL_BYTES)
            gx, gy = split_groups(cdiv(n, 64))
            block, raw = BLOCK_TYPES[wtype]
            gap_at, gap = TEXEL_GAPS.get(wtype, (0, 0))
            constants = {"RAW": raw, "GAP_AT": gap_at, "GAP": gap, "BLOCKS": row_bytes // raw,
                         "ROWS": size // row_bytes, "TEXELS": n}
            self._step("texel_repack.wgsl", "repack", constants, [src, texels], fixed((gx, gy, 1))).record(recorder, 1)
        else:
            recorder.copy_to_texels(src, texels)
        self.device.submit(recorder)
        return texels

    def _weights(self, weights, wtype: int, n_in: int) -> tuple[object, dict]:
        """What binds a weight tensor of `wtype` in rows of n_in (a buffer, a `(buffer, offset, size)` range, or
        Texels), and the constants that go with it. Its texels for kernels that read weights so (made here from a
        buffer once, texels_from; the model's come as texels), with weights_texture.wgsl's W_ROWS where they hold
        blocks (block_at needs the rows); else the buffer padded to whole 16-byte words (_whole_vec4s)."""
        row_bytes = weight_nbytes(wtype, n_in)
        if isinstance(weights, Texels):
            if not self.weights_in_texels:
                raise ValueError(f"{self.variant} kernels read weights from buffers, not texels")
            texels = weights
        elif not self.weights_in_texels:
            return self._whole_vec4s(weights), {}
        else:
            texels = self._texels_of(weights, wtype, row_bytes)
        if wtype not in BLOCK_TYPES:
            return texels, {}
        return texels, {"W_ROWS": texels.size // texel_layout_bytes(wtype, row_bytes)}

    def _texels_of(self, weights, wtype: int, row_bytes: int) -> Texels:
        """A buffer's (or range's) tensor as texels, made once."""
        buffer, offset, size = weights if isinstance(weights, tuple) else (weights, 0, weights.size)
        key = ("texels", id(buffer), offset, size, wtype)
        if key not in self._weight_copies:
            whole = self._scratch(cdiv(size, 16) * 16, "weights for texels")  # a copy starts at a texel
            recorder = self.device.recorder()
            recorder.copy(buffer, offset, whole, 0, cdiv(size, 4) * 4)
            self.device.submit(recorder)
            texels = self.texels_from(whole, size, wtype, row_bytes)
            self._weight_copies[key] = (buffer, texels)  # holding `buffer` keeps its id from being reused
        return self._weight_copies[key][1]

    def _whole_vec4s(self, weights):
        """`weights`, or a copy padded to whole 16-byte words: shaders read them as array<vec4<u32>>,
        whose length is the binding's size // 16, and a GPU with bounds checks (NVIDIA's, not
        lavapipe's) clamps a read of the partial last word. Real tensors are multiples of 16 bytes."""
        buffer, offset, size = weights if isinstance(weights, tuple) else (weights, 0, weights.size)
        if size % 16 == 0:
            return weights
        key = (id(buffer), offset, size)
        if key not in self._weight_copies:
            padded = self._scratch(cdiv(size, 16) * 16, "padded weights")
            recorder = self.device.recorder()
            recorder.copy(buffer, offset, padded, 0, cdiv(size, 4) * 4)
            self.device.submit(recorder)
            self._weight_copies[key] = (buffer, padded)  # holding `buffer` keeps its id from being reused
        return self._weight_copies[key][1]
