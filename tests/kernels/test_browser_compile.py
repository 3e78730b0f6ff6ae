"""Every pipeline Kernels builds also compiles in Chromium's WebGPU (Tint, on SwiftShader).

naga (wgpu-py) and Tint (the browser) accept slightly different WGSL: Tint requires
`enable subgroups;` and checks subgroup uniformity; naga rejects the former. A stand-in device
records what Kernels asks for, for both variants and every weight type; Chromium then compiles
each module with the same text, and a pipeline of each module's entry points for each weight type
with the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from engine import kernels as K
from engine import products
from engine.gpu import AdapterInfo

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--enable-unsafe-webgpu",
    "--enable-unsafe-swiftshader",
]


@dataclass
class FakeBuffer:
    size: int


class RecordingDevice:
    """Just enough of the seam for Kernels to build ops; remembers each pipeline it is asked for."""

    def __init__(self, workgroup_storage: int = 16384):
        self.info = AdapterInfo("test", "recorder", False, frozenset({"subgroups", "shader-f16"}), 1 << 30, 1 << 31,
                                max_workgroup_storage=workgroup_storage, subgroup_min_size=8)
        self.pipelines: dict[tuple, dict] = {}
        self.storage_texels = False  # (the browser's device: texels_sampled.wgsl)

    def create_buffer(self, size, role="storage", label=""):
        return FakeBuffer(size)

    def write_buffer(self, buffer, data, offset=0):
        pass

    def create_texels(self, size, label=""):
        return FakeBuffer(size)

    def create_pipeline(self, wgsl, entry_point, constants, checked=True):
        key = (entry_point, tuple(sorted(constants.items())), wgsl)  # (scalar kernels' modules read texels)
        self.pipelines[key] = {"code": wgsl, "entry": entry_point, "constants": dict(constants), "checked": checked}
        return key

    def create_bind_group(self, pipeline, buffers):
        return None

    def recorder(self):
        return self

    def copy(self, *args):
        pass

    def copy_to_texels(self, *args):
        pass

    def dispatch(self, *args):  # (texel_repack.wgsl's, as the scalar kernels' Q6_K and Q3_K weights are made)
        pass

    def submit(self, recorder):
        pass


def every_pipeline() -> list[dict]:
    pipelines = {}
    for workgroup_storage in (16384, 32768):  # WebGPU's default; what takes batches' products in tiles
        device = RecordingDevice(workgroup_storage)
        _build_every_op(device)
        pipelines.update(device.pipelines)
    b = FakeBuffer(1 << 16)
    for prompts in ("f16_prompts", "q8_prompts"):  # prompts' tiles in f16, and as integers
        k = K.Kernels(device, variant="subgroup", **{prompts: True})
        for wtype in sorted(K.DOT4_TYPES):
            k.matmul(b, wtype, 256, 7, b, b, 9)
        for glu in K.GLU_ACTIVATIONS:
            k.matmul(b, K.Q4_K, 256, 7, b, b, 9, glu=glu)
        k.matmul(b, K.Q4_0, 64, 7, b, FakeBuffer(64), 9, accumulate=True)
        k.matmul(b, K.Q4_0, 64, 7, b, b, 9, y_stride=12, y_col=4)
    for x_lanes in (0, 4):  # scalar products whose lanes load their own x, or share it four lanes apiece
        k = K.Kernels(device, variant="scalar", x_lanes=x_lanes)
        k.matmul(b, K.Q4_1, 64, 7, b, b, 9)
        k.matmul(b, K.F16, 36, 7, b, b, 9, glu="silu")
    pipelines.update(device.pipelines)
    # f32 products whose grid of wide tiles fills a large GPU, where workgroups hold those tiles
    roomy = RecordingDevice(products.WIDE_STORAGE)
    k = K.Kernels(roomy, variant="subgroup")
    wide_rows, tokens = products.TILE_ROWS * products.WIDE_MIN_WORKGROUPS, 2 * products.TILE_TOKENS
    for wtype in (K.Q4_0, K.Q4_K):  # (the kernel is the narrow tiles' with every type's decoder: int_parts' two
        k.matmul(b, wtype, 256, wide_rows, b, b, tokens)  # shapes suffice, and each pipeline costs SwiftShader time)
    for glu in K.GLU_ACTIVATIONS:
        k.matmul(b, K.Q4_K, 256, wide_rows // 2, b, b, tokens, glu=glu)
    k.matmul(b, K.Q4_0, 64, wide_rows, b, FakeBuffer(64), tokens, accumulate=True)
    k.matmul(b, K.Q4_0, 64, wide_rows, b, b, tokens, y_stride=wide_rows + 8, y_col=4)
    assert any(p["code"].startswith(K.load_shader("matmul_tiled_wide.wgsl")) for p in roomy.pipelines.values())
    pipelines.update(roomy.pipelines)
    return list(pipelines.values())


def _build_every_op(device: RecordingDevice) -> None:
    b = FakeBuffer(1 << 16)
    for variant in K.VARIANTS:
        for kv_f16 in (False, True):
            k = K.Kernels(device, variant=variant, kv_f16=kv_f16)
            for wtype in sorted(K.SUPPORTED_WEIGHT_TYPES):  # each type's decoder in every kernel
                n = 256 if K.BLOCK_TYPES.get(wtype, (1,))[0] == 256 else 64  # K-quants: superblocks of 256
                k.matmul(b, wtype, n, 7, b, b, 9)
                k.matmul(b, wtype, n, 7, b, FakeBuffer(64), 1, norm=(FakeBuffer(64), b, 1e-5))
                k.embed(b, wtype, n, b, b)
                if k.uses_dot4(wtype):  # batches of long rows: eight rows a subgroup
                    k.matmul(b, wtype, K.DOT4_BATCH8_ROW, 7, b, b, 9)
            if k.dot4:
                k.matmul(b, K.Q6_K, K.DOT4_BATCH8_ROW, 7, b, b, 9, glu="silu")
                for wtype in K.DOT4_TYPES:  # one token's gate_up quantising down's x
                    k.matmul(b, wtype, 256, 64, b, b, 9, glu="gelu", quantise_out=True)
            for wtype, n in ((K.Q4_1, 64), (K.Q6_K, 256), (K.F16, 64)):  # the fused modes: other stores, same decoders
                k.matmul(b, wtype, n, 7, b, b, 9, glu="silu")
                k.matmul(b, wtype, n, 7, b, b, 9, glu="gelu")
                k.matmul(b, wtype, n, 7, b, FakeBuffer(64), 9, accumulate=True)
                k.matmul(b, wtype, n, 7, b, b, 9, y_stride=12, y_col=4)
            k.matmul(b, K.F16, 36, 7, b, b, 9)  # a partial last block
            k.rmsnorm(b, b, FakeBuffer(64), 64, 1e-5)
            for glu in K.GLU_ACTIVATIONS:
                k.matmul(b, K.Q8_0, 64, 7, b, FakeBuffer(64), 1, glu=glu, norm=(FakeBuffer(64), b, 1e-5))
            k.rmsnorm(b, b, FakeBuffer(64), 7, 1e-5)
            k.rmsnorm(b, b, FakeBuffer(64), 64, 1e-5, accumulate=True)
            k.rmsnorm(b, b, FakeBuffer(64), 7, 1e-5, accumulate=True)
            k.rmsnorm_heads(b, b, 4, 16, 1e-6, row=160, col=64)
            k.embed(b, K.F16, 64, b, b, scale=8.0)
            k.embed(b, K.Q6_K, 256, b, b, first_row=16, n_rows=32)
            k.rope(b, 4, 16, 8, 10000.0, 0.5, True)
            k.rope(b, 4, 16, 16, 10000.0, 1.0, False, row=96)
            k.rope(b, 4, 16, 16, 10000.0, 1.0, True, mscale=1.19)
            k.store_kv(b, b, b, b, 32)
            k.store_kv(b, b, b, b, 32, src_row=160, k_col=96, v_col=128)
            k.attention(b, b, b, FakeBuffer(64), 6, 2, 16, 33, 4)
            k.attention(b, b, b, FakeBuffer(64), 6, 2, 16, 33, 4, q_row=160)
            k.attention(b, b, b, FakeBuffer(64), 6, 2, 16, 33, 4, scale=0.1, softcap=50.0, window=8)
            if k.dot4:  # one token's output quantised for o
                k.attention(b, b, b, FakeBuffer(64), 6, 2, 16, 33, 4, quantise_out=True)
            # q | k | v rotated and stored by their product: integer (dot4), f32-x subgroup and scalar products
            for wtype, n, n_rot, mscale in ((K.Q4_0, 64, 16, 1.0), (K.Q4_K, 256, 10, 1.19), (K.F16, 64, 16, 1.0)):
                rs = K.RopeStore(64, 32, 16, n_rot, k.rope_tables(n_rot, 10000.0, 1.0), b, b, mscale)
                k.matmul(b, wtype, n, 128, b, FakeBuffer(64), 9, norm=(FakeBuffer(64), b, 1e-5), rope_store=rs)
            for n in (64, 7):
                for act in K.GLU_ACTIVATIONS:
                    k.glu_mul(b, FakeBuffer(64), FakeBuffer(64), n, act)
                    k.glu_mul(b, FakeBuffer(64), b, n, act)
                k.softcap(b, n, 30.0)
                k.add(b, FakeBuffer(64), n)
                k.add_bias(b, FakeBuffer(64), n)
            k.argmax(b, FakeBuffer(64), 1000)
            k.penalize(b, 1000, 64)


# Each module once (the pipelines share 30 texts), its pipelines a few at a time: Dawn compiles
# createComputePipelineAsync's work on worker threads.
COMPILE_ALL = """async (pipelines) => {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return ["no WebGPU adapter"];
  const features = [...adapter.features].filter(f => f === "subgroups" || f === "shader-f16");
  // Without shader-f16 (SwiftShader), an f16 module is checked as f32: every rule but f16's own.
  const asF32 = (code) => code.replace(/^enable f16;/m, "").replace(/\\bf16\\b/g, "f32");
  const f16 = adapter.features.has("shader-f16");
  const requiredLimits = {maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize};
  const device = await adapter.requestDevice({requiredFeatures: features, requiredLimits});
  const problems = [];
  const modules = new Map();
  for (const p of pipelines) {
    if (modules.has(p.code)) continue;
    device.pushErrorScope("validation");
    const code = !f16 && p.code.startsWith("enable f16;") ? asF32(p.code) : p.code;
    const module = device.createShaderModule({code});
    const info = await module.getCompilationInfo();
    for (const m of info.messages) {
      if (m.type !== "info") problems.push(`${p.entry}: ${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`);
    }
    const error = await device.popErrorScope();
    if (error) problems.push(`${p.entry}: ${error.message}`);
    modules.set(p.code, module);
  }
  const compile = async (p) => {  // (an invalid pipeline rejects: no error scope, which several in flight would share)
    try {
      const compute = {module: modules.get(p.code), entryPoint: p.entry, constants: p.constants};
      await device.createComputePipelineAsync({layout: "auto", compute});
    } catch (e) { problems.push(`${p.entry}: ${e.message}`); }
  };
  for (let i = 0; i < pipelines.length; i += 4) {
    await Promise.all(pipelines.slice(i, i + 4).map(compile));
  }
  return problems;
}"""


def test_only_the_products_and_attention_give_up_naga_s_checks():
    """Kernels asks the device for an unchecked module (native Vulkan: no index clamps or loop counters) for the
    shaders of UNCHECKED_SHADERS alone, whose indices stay in range by construction; every other kernel keeps them."""
    shaders = Path(K.__file__).parent.parent / "shaders"
    sources = {path.name: path.read_text() for path in shaders.glob("*.wgsl")}
    unchecked = set()
    for pipeline in every_pipeline():
        file = max((name for name, text in sources.items() if pipeline["code"].startswith(text)), key=len)
        assert pipeline["checked"] == (file not in K.UNCHECKED_SHADERS), (file, pipeline["entry"])
        unchecked |= set() if pipeline["checked"] else {file}
    assert unchecked == set(K.UNCHECKED_SHADERS)  # each of them is some kernel's module


# WebGPU's default maxComputeInvocationsPerWorkgroup, which the engine asks no more of: the most a workgroup size
# override (WG, rmsnorm's ROW_WG) may be.
MAX_INVOCATIONS = 256


def one_of_each_kind(pipelines: list[dict]) -> list[dict]:
    """A pipeline for each (module, entry point, weight type). Tint checks a module whole, every branch whatever
    its overrides, so the pipelines that differ from one of these only in other constants (sizes, modes) would
    check nothing new; the one other thing creating them checks, their workgroups' size, the test below checks
    of every pipeline. (SwiftShader compiles a pipeline in ~1.6 s on two cores: all 498 took 13 min of the
    suite.)"""
    kinds: dict[tuple, dict] = {}
    for p in pipelines:
        kinds.setdefault((p["code"], p["entry"], p["constants"].get("WTYPE")), p)
    return list(kinds.values())


def test_workgroup_sizes_stay_within_webgpu_s_default():
    sizes = {p["constants"].get(name) for p in every_pipeline() for name in ("WG", "ROW_WG")} - {None}
    assert sizes and max(sizes) <= MAX_INVOCATIONS, sorted(sizes)


def test_every_module_and_kind_of_pipeline_compiles_in_chromium(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing")
    sync_api = pytest.importorskip("playwright.sync_api")
    pipelines = every_pipeline()
    kinds = one_of_each_kind(pipelines)
    assert {p["code"] for p in kinds} == {p["code"] for p in pipelines} and len(kinds) > 30
    page_file = tmp_path / "blank.html"  # WebGPU needs a secure context: file:// is one
    page_file.write_text("<html><body></body></html>")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            problems = page.evaluate(COMPILE_ALL, kinds)
        finally:
            browser.close()
    assert problems == [], "\n".join(problems)
