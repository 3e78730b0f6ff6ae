// The weights as texels (CPU adapters): quant.wgsl's w4(i), the tensor's bytes 16i .. 16i + 15, and w1(i),
// bytes 4i .. 4i + 3, from an rgba32uint texture TEXELS_A_ROW texels wide that holds them in order
// (gpu/__init__.py's TEXELS_A_ROW; Device.create_texels). w4 comes from texels_sampled.wgsl or
// texels_storage.wgsl, whichever the device loads faster (Device.storage_texels).
// Why texels: lavapipe loads from a storage buffer for each invocation in turn, each 32-bit part apart behind a
// bounds check, and fetches texels for all invocations at once: its batched products run 1.2-1.4x faster
// so (prefill +13-20 %; one token's products about the same), SwiftShader's 1.1-1.3x (Q6_K 2.9x)
// (benchmarks/NOTES.md).

const TEXELS_A_ROW = 4096u;

fn w1(i: u32) -> u32 { return w4(i >> 2u)[i & 3u]; }  // bytes 4i .. 4i + 3

// Blocks lie in tiles of ROW_TILE rows (weight_types.ROW_TILE; texel_repack.wgsl lays them out): a tile holds
// block 0 of each of its rows, then block 1 of each, and so on, so the rows that a workgroup of the scalar
// products reads together (MV_ROWS x WG = 128 on CPU adapters) lie in one stream through memory, block
// column by block column, where row by row they were 128 streams. Their one token's products ran 1.2-1.3x
// faster so on lavapipe (NOTES.md, session 24). The last tile holds the rows left (W_ROWS, the tensor's rows,
// which the kernel's pipeline is given). Floats keep rows whole: they never call block_at.
override W_ROWS: u32 = 0u;
const ROW_TILE = 128u;

// The first byte of block b of row `row` (a superblock for the K-quants and IQ4_XS).
fn block_at(row: u32, b: u32) -> u32 {
    let tile = row / ROW_TILE;
    let rows = min(ROW_TILE, W_ROWS - tile * ROW_TILE);
    return tile * ROW_TILE * row_bytes() + (b * rows + row % ROW_TILE) * block_bytes();
}

// A block's bytes as the uploader lays them out in texels (weight_types.TEXEL_GAPS, texel_repack.wgsl): Q6_K's,
// Q3_K's and Q2_K's superblocks padded at their end to whole texels, Q5_0's blocks as Q5_1's 24 bytes (d, 2 spare,
// qh, qs); the rest as GGUF stores them.
fn stored_block_bytes(gguf_bytes: u32) -> u32 {
    switch WTYPE {
        case Q6_K: { return 224u; }
        case Q3_K: { return 112u; }
        case Q2_K: { return 96u; }
        case Q5_0: { return 24u; }
        default: { return gguf_bytes; }
    }
}
