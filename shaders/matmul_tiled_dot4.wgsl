// Prompts' products in tiles as packed integer dot products: matmul_tiled.wgsl's tiles (128 weight rows x 64
// tokens a workgroup, a block of 32 columns a step), where the weights stay the integers they are stored as
// (quant.wgsl's IntParts, no decoding) and x is one plane of signed bytes (quantize_x.wgsl with PLANES 1), so
// four multiply-adds are one dot4I8Packed. An H200 runs those at 1.55x its f32 multiply-adds (naga's f16 ones
// run at f32's rate): q8 prompts (Kernels' q8_prompts). x keeps 8 bits, as llama.cpp's q8_1 for its prompts
// keeps them, but with a scale for each half block rather than each block: an outlier channel then costs 15
// neighbours their bits, not 31 (the default model's KL divergence from f32 prompts on text 3.9e-3 -> 2.1e-3,
// for 7 % of an H200's 8B prefill: NOTES.md, session 30). Each half's integer sums are scaled into f32 sums.
//
// An extension of matmul.wgsl: kernels.py appends tiles.wgsl, matmul.wgsl, activations.wgsl, quant.wgsl, the
// type's weight library and x_blocks.wgsl, so params, y, put, glu4, clamp_row, share_tables, int_parts,
// xq_index and dot16 are theirs.
// Bindings:  0 params, 1 w the weights' GGUF bytes [N_OUT, N_IN] (2 * N_OUT rows with GLU), 2 xq, 4 xs: x
//            [T, N_IN] as quantize_x.wgsl writes it with PLANES 1, not SPREAD (binding 2 is matmul.wgsl's x,
//            unused here), 3 y [T, N_OUT] f32 (ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
// Formula:   matvec_dot4.wgsl's, one plane, with xs[t, b].x scaling x_lo's sums and xs[t, b].w x_hi's
// Overrides: WTYPE (a type with int_parts), N_IN, N_OUT, GLU, GELU, ACCUMULATE, Y_STRIDE, Y_COL; PLANES (1);
//            TWO_SCALES: the type's halves of a block have scales of their own (Q2_K, Q3_K, Q6_K)
// Grid:      matmul_tiled.wgsl's. Invocation i takes tile rows i % 16 + 16 k and tokens i / 16 + 8 j, as there.
// Each block, an invocation holds four of its tokens' x (both halves: 32 registers; broadcast loads, a subgroup
// reads two tokens) while each of its eight rows is loaded and meets them, then the other four tokens: 72 loads
// from workgroup memory for 512 dot4I8Packed. Loading x for every row and token instead (152 loads, few
// registers) ran at 0.46x of this (H200, 8B prefill 1656 against 3586 tok/s; NOTES.md, session 27).

@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> xs: array<vec4<f32>>;

override PLANES: u32 = 1u;
override TWO_SCALES: bool = false;

const Q_PITCH = 3u;  // vec4s a tile row: the block's low and high halves' quants, then (d, m) as bits
var<workgroup> tile_q: array<vec4<u32>, 384>;  // TILE_ROWS x Q_PITCH
var<workgroup> tile_xq: array<vec4<u32>, 192>;  // TILE_TOKENS x 3: x's halves, then (scale, sums) as bits

// x's scales and sums (quantize_x's xs) of four tokens: the tile's t, t + 16, t + 32 and t + 48; d and dh
// the scales of the block's low and high halves.
struct TokenScales { d: vec4<f32>, lo: vec4<f32>, hi: vec4<f32>, dh: vec4<f32> }

fn token_scales(t: u32) -> TokenScales {
    let s0 = bitcast<vec4<f32>>(tile_xq[3u * t + 2u]);
    let s1 = bitcast<vec4<f32>>(tile_xq[3u * (t + 16u) + 2u]);
    let s2 = bitcast<vec4<f32>>(tile_xq[3u * (t + 32u) + 2u]);
    let s3 = bitcast<vec4<f32>>(tile_xq[3u * (t + 48u) + 2u]);
    return TokenScales(vec4<f32>(s0.x, s1.x, s2.x, s3.x), vec4<f32>(s0.y, s1.y, s2.y, s3.y),
                       vec4<f32>(s0.z, s1.z, s2.z, s3.z), vec4<f32>(s0.w, s1.w, s2.w, s3.w));
}

// Four tokens' x (t + 16 j) of this block, low and high halves: held while the invocation's rows meet them.
struct XTokens { l0: vec4<u32>, l1: vec4<u32>, l2: vec4<u32>, l3: vec4<u32>,
                 h0: vec4<u32>, h1: vec4<u32>, h2: vec4<u32>, h3: vec4<u32> }

fn x_tokens(t: u32) -> XTokens {
    let a = 3u * t;
    return XTokens(tile_xq[a], tile_xq[a + 48u], tile_xq[a + 96u], tile_xq[a + 144u],
                   tile_xq[a + 1u], tile_xq[a + 49u], tile_xq[a + 97u], tile_xq[a + 145u]);
}

// Tile row i's block against those four tokens: each sum scaled as matvec_dot4.wgsl's scaled4.
fn row_x(i: u32, x: XTokens, s: TokenScales) -> vec4<f32> {
    let lo = tile_q[Q_PITCH * i];
    let hi = tile_q[Q_PITCH * i + 1u];
    let dm = bitcast<vec4<f32>>(tile_q[Q_PITCH * i + 2u]);
    let ilo = vec4<i32>(dot16(lo, x.l0), dot16(lo, x.l1), dot16(lo, x.l2), dot16(lo, x.l3));
    let ihi = vec4<i32>(dot16(hi, x.h0), dot16(hi, x.h1), dot16(hi, x.h2), dot16(hi, x.h3));
    if (TWO_SCALES) {
        return (dm.x * s.d) * vec4<f32>(ilo) + (dm.y * s.dh) * vec4<f32>(ihi) + dm.z * s.lo + dm.w * s.hi;
    }
    return dm.x * (s.d * vec4<f32>(ilo) + s.dh * vec4<f32>(ihi)) + dm.z * (s.lo + s.hi);  // (d.x = d.y, m.x = m.y)
}

// What invocation lid stores of x's block b: vec4s lid and lid + 128 of the tile's 192 (token v / 3, part
// v % 3), from token t0 + v / 3 (past the batch its last: valid memory, results never stored).
fn x_part(v: u32, t0: u32, b: u32) -> vec4<u32> {
    let t = min(t0 + v / 3u, params.n_tokens - 1u);
    let part = v % 3u;
    if (part == 2u) { return bitcast<vec4<u32>>(xs[t * (N_IN / 32u) + b]); }
    return xq[xq_index(t, part, b)];
}

@compute @workgroup_size(128)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    share_tables(lid, 128u);
    let r0 = tile_first_output(wid, nwg);
    let t0 = wid.z * TILE_TOKENS;
    if (r0 >= N_OUT || t0 >= params.n_tokens) { return; }  // the same for the whole workgroup
    let w_row = tile_row(r0, lid);
    let second = lid + 128u < 192u;  // invocations 0..63 store two of x's vec4s, the rest one
    let v1 = min(lid + 128u, 191u);
    let tr = lid % 16u;
    let tc = lid / 16u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    var p = int_parts(w_row, 0u);
    var x0 = x_part(lid, t0, 0u);
    var x1 = x_part(v1, t0, 0u);
    for (var b = 0u; b < N_IN / 32u; b++) {
        tile_q[Q_PITCH * lid] = p.lo;
        tile_q[Q_PITCH * lid + 1u] = p.hi;
        tile_q[Q_PITCH * lid + 2u] = bitcast<vec4<u32>>(vec4<f32>(p.d, p.m));
        tile_xq[lid] = x0;
        if (second) { tile_xq[lid + 128u] = x1; }
        workgroupBarrier();
        if (b + 1u < N_IN / 32u) {  // the next block's loads in flight during the products
            p = int_parts(w_row, b + 1u);
            x0 = x_part(lid, t0, b + 1u);
            x1 = x_part(v1, t0, b + 1u);
        }
        var xt = x_tokens(tc);
        var s = token_scales(tc);
        a0 += row_x(tr, xt, s); a1 += row_x(tr + 16u, xt, s); a2 += row_x(tr + 32u, xt, s);
        a3 += row_x(tr + 48u, xt, s); a4 += row_x(tr + 64u, xt, s); a5 += row_x(tr + 80u, xt, s);
        a6 += row_x(tr + 96u, xt, s); a7 += row_x(tr + 112u, xt, s);
        xt = x_tokens(tc + 8u);
        s = token_scales(tc + 8u);
        b0 += row_x(tr, xt, s); b1 += row_x(tr + 16u, xt, s); b2 += row_x(tr + 32u, xt, s);
        b3 += row_x(tr + 48u, xt, s); b4 += row_x(tr + 64u, xt, s); b5 += row_x(tr + 80u, xt, s);
        b6 += row_x(tr + 96u, xt, s); b7 += row_x(tr + 112u, xt, s);
        workgroupBarrier();
    }
    put_sums(r0 + tr, t0 + tc, 16u, a0, a1, a2, a3, a4, a5, a6, a7);
    put_sums(r0 + tr, t0 + tc + 8u, 16u, b0, b1, b2, b3, b4, b5, b6, b7);
}
