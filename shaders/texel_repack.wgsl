// A tensor's GGUF bytes into texels with each superblock padded to whole texels, for CPU adapters' kernels
// (weights_texture.wgsl, weight_types.TEXEL_PADDED): Q6_K's 210-byte and Q3_K's 110-byte superblocks start at
// any even byte as GGUF stores them, so every 32 bytes a kernel reads were three texels and a realigning
// shift; padded to 224 and 112 bytes, every field starts a texel. Done here, on the device, because the
// weights go from the file to the GPU without passing through the host's memory (the browser's wasm heap).
// Bindings:  0 params (bound as in every kernel, unused), 1 src: the tensor's bytes, whole words (the
//            uploader's staging buffer), 2 dst: the texels, TEXELS_A_ROW a row
// Overrides: RAW (a superblock's bytes in GGUF, even), PADDED (in texels: a multiple of 16), TEXELS (to write)
// Grid:      (ceil(TEXELS / 64) as (x, y), 1): an invocation a texel; bytes past a superblock's RAW are zeros.

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32uint, write>;

override RAW: u32;
override PADDED: u32;
override TEXELS: u32;

const TEXELS_A_ROW = 4096u;  // gpu/__init__.py's
const WG = 64u;

// The 4 bytes from byte `at` (even) of src; past its end, zeros.
fn word_at(at: u32) -> u32 {
    let i = at >> 2u;
    let n = arrayLength(&src);
    let a = select(0u, src[min(i, n - 1u)], i < n);
    if ((at & 2u) == 0u) { return a; }
    let b = select(0u, src[min(i + 1u, n - 1u)], i + 1u < n);
    return (a >> 16u) | (b << 16u);
}

@compute @workgroup_size(WG)
fn repack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    _ = params.n_tokens;
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= TEXELS) { return; }
    let per = PADDED / 16u;  // texels a superblock
    let start = (i / per) * RAW;  // the superblock's first byte in src
    let k = 16u * (i % per);  // this texel's first byte in it
    var texel = vec4<u32>(0u);
    for (var j = 0u; j < 4u; j++) {
        let at = k + 4u * j;
        if (at < RAW) {  // RAW is even: a word of it is whole or its first half
            texel[j] = word_at(start + at) & select(0xFFFFu, 0xFFFFFFFFu, at + 4u <= RAW);
        }
    }
    textureStore(dst, vec2<u32>(i % TEXELS_A_ROW, i / TEXELS_A_ROW), texel);
}
