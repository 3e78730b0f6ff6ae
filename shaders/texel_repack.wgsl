// A tensor's GGUF bytes into texels as weights_texture.wgsl reads them, for CPU adapters' kernels: rows in
// tiles of ROW_TILE, block b of a tile's rows together (block_at says why), and a gap in every block of some
// types (weight_types.TEXEL_GAPS): Q6_K's 210-byte and Q3_K's 110-byte superblocks, which start at any even
// byte as GGUF stores them, padded at their end to whole texels (every field then starts a texel: 32 bytes are
// two fetches, not three and a realigning shift); Q5_0's 22-byte blocks as Q5_1's 24 (d, 2 spare bytes, qh, qs:
// two fetches a block, where a stream of realigned words cost 40-50 % more). Done here, on the device, because
// the weights go from the file to the GPU without passing through the host's memory (the browser's wasm heap).
// Bindings:  0 params (bound as in every kernel, unused), 1 src: the tensor's bytes, whole words (the
//            uploader's staging buffer), 2 dst: the texels, TEXELS_A_ROW a row
// Overrides: RAW (a block's bytes in GGUF, even), GAP_AT (where in it the gap goes, even), GAP (its bytes,
//            even; 0: none), BLOCKS (blocks a row), ROWS (the tensor's), TEXELS (to write)
// Grid:      (ceil(TEXELS / 64) as (x, y), 1): an invocation a texel, its 8 half-words each mapped on its own.

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32uint, write>;

override RAW: u32;
override GAP_AT: u32;
override GAP: u32;
override BLOCKS: u32;
override ROWS: u32;
override TEXELS: u32;

const TEXELS_A_ROW = 4096u;  // gpu/__init__.py's
const ROW_TILE = 128u;  // weight_types.py's and weights_texture.wgsl's
const WG = 64u;

// The half-word at byte `at` (even) of src; past its end, 0.
fn half_at(at: u32) -> u32 {
    let i = at >> 2u;
    if (i >= arrayLength(&src)) { return 0u; }
    return (src[i] >> (8u * (at & 2u))) & 0xFFFFu;
}

// The half-word at byte `at` (even) of the laid-out tensor: which row's block it lies in (weights_texture.wgsl's
// block_at backwards), then the block's bytes before the gap, zeros in it, the rest of the block after it.
fn laid_out(at: u32) -> u32 {
    let padded = RAW + GAP;
    let tile_bytes = ROW_TILE * BLOCKS * padded;
    let tile = at / tile_bytes;
    let rows = min(ROW_TILE, ROWS - min(ROWS, tile * ROW_TILE));
    if (rows == 0u) { return 0u; }  // past the tensor's end (its last texel's tail)
    let in_tile = at % tile_bytes;
    let b = in_tile / (rows * padded);
    let row = tile * ROW_TILE + (in_tile / padded) % rows;
    let first = (row * BLOCKS + b) * RAW;  // the block's first byte in src
    let k = in_tile % padded;
    if (k < GAP_AT) { return half_at(first + k); }
    if (k < GAP_AT + GAP) { return 0u; }
    return half_at(first + k - GAP);
}

@compute @workgroup_size(WG)
fn repack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    _ = params.n_tokens;
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= TEXELS) { return; }
    var texel = vec4<u32>(0u);
    for (var j = 0u; j < 4u; j++) {
        let at = 16u * i + 4u * j;
        texel[j] = laid_out(at) | (laid_out(at + 2u) << 16u);
    }
    textureStore(dst, vec2<u32>(i % TEXELS_A_ROW, i / TEXELS_A_ROW), texel);
}
