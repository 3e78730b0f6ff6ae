// The weights as texels (CPU adapters): quant.wgsl's w4(i), the tensor's bytes 16i .. 16i + 15, from an
// rgba32uint texture TEXELS_A_ROW texels wide that holds them in order (gpu/__init__.py's TEXELS_A_ROW;
// Device.create_texels).
// Why: lavapipe loads a storage buffer for each invocation in turn, each 32-bit part apart, behind a
// bounds check, and a texel fetch for all of them at once: its matrix-vector products read weights
// 1.4-1.7x faster so, SwiftShader's 1.1-1.3x (Q6_K 2.9x) (benchmarks/NOTES.md).
@group(0) @binding(1) var w_texels: texture_2d<u32>;

const TEXELS_A_ROW = 4096u;

fn w4(i: u32) -> vec4<u32> { return textureLoad(w_texels, vec2<u32>(i % TEXELS_A_ROW, i / TEXELS_A_ROW), 0); }
