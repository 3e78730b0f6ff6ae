// The weights as a storage buffer (GPUs): quant.wgsl's w4(i), the tensor's bytes 16i .. 16i + 15, and w1(i),
// bytes 4i .. 4i + 3 (a 4-byte load: indexing w4's value by a computed component cost Q6_K's one-token
// products 22 % on an H200).
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;

fn w4(i: u32) -> vec4<u32> { return w[i]; }
fn w1(i: u32) -> u32 { return w[i >> 2u][i & 3u]; }

// Blocks lie in a buffer as the GGUF stores them (weights_texture.wgsl lays them out otherwise): row by row.
fn stored_block_bytes(gguf_bytes: u32) -> u32 { return gguf_bytes; }

// The first byte of block b of row `row` (a superblock for the K-quants and IQ4_XS).
fn block_at(row: u32, b: u32) -> u32 { return row * row_bytes() + b * block_bytes(); }
