// Prompts' f32 tiles, wide: matmul_tiled.wgsl's kernel (tiles_f32.wgsl) on 128 tokens a tile, 256 invocations,
// two of them a tile row's block (its low and its high 16 columns). 32 KB of workgroup memory (tiles_f32.wgsl's
// swizzled rows need no padding), and only products whose grid still fills a large GPU (products.py's
// WIDE_MIN_WORKGROUPS). matmul_tiled.wgsl says what they gain.

const TOKEN_GROUPS = 2u;
var<workgroup> tile_x: array<vec4<f32>, 1024>;  // 2 TILE_TOKENS x 8
