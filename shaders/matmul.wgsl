// Matrix products with weights in their GGUF type, barrier-free: one invocation owns whole rows.
//
// Bindings:  0 params: StepParams (positions.wgsl, appended; matmul: n_tokens bounds the last token tile)
//            1 w: [N_OUT rows, N_IN] raw GGUF bytes (declared by quant.wgsl, appended to this module)
//            2 x: [T, N_IN] f32, read as vec4
//            3 y: [T, N_OUT] f32, or rows of Y_STRIDE with this product in columns Y_COL..
// Formula:   y[t, r] = sum_k W[r, k] * x[t, k]
//            ACCUMULATE: y[t, r] += sum_k ... (a residual add folded into the product)
//            GLU: W holds 2 * N_OUT rows, gate rows then up rows (stacked at load time), and
//            y[t, r] = act(gate[r] . x[t]) * (up[r] . x[t]) (activations.wgsl: SiLU, or GELU when
//            GELU): the feed-forward's three products in one dispatch
// Overrides: WTYPE, N_IN (see quant.wgsl), N_OUT, WG (invocations per workgroup), GLU, GELU, ACCUMULATE,
//            Y_STRIDE (0: N_OUT), Y_COL (0)
// Entry points; row groups g = wid.y * nwg.x + wid.x (folded over x and y past 65535 workgroups):
//   matvec  T = 1 (decode, the "scalar" variant): an invocation computes MV_ROWS consecutive rows
//           (GLU: MV_ROWS / 2 outputs from as many gate and up rows), so each x block it loads
//           serves them all.   grid (ceil(N_OUT / (MV_ROWS * WG)), 1), twice as many with GLU
//   matvec_rope  the same for one token's q | k | v, rotating q and k and storing k and v (below)
//   matmul  T > 1 (prefill, the "scalar" variant): an invocation computes MM_ROWS rows x TILE tokens in
//           registers, so each block is dequantised once for TILE tokens and each x block loaded
//           once for MM_ROWS rows.    grid (ceil(N_OUT / (MM_ROWS * WG)), ceil(T / TILE)) as (x*y, z),
//           twice as many row groups with GLU
// x blocks come from x_load: x_direct.wgsl's (an invocation loads its own), or matmul_lanes.wgsl's, whose
// entry points run these with a subgroup's lanes sharing the loads (and may fold the RMSNorm in: x_scale).
// Why: lavapipe runs a workgroup as loops over SIMD lanes, pays dearly to switch at a barrier and
// pays per load (it loads for each invocation in turn: loads are most of a product's time, and
// arithmetic little). So an x block serves 16 rows (x is a third of the loads at 8 rows), and each
// row keeps a KCache of the words its next blocks reuse (quant.wgsl: K-quant headers and shared quants,
// Q5_0's straddling words), read in order block by block. The row and token counts are unrolled
// by hand (a0..a15): indexing a local array by a loop counter made lavapipe ~1.5x slower. A row length
// that is not a multiple of 32 (F32/F16/BF16 only) ends in a partial block whose missing elements read
// as zero. Quantised blocks add m * sum(x) per half block (block_sum; see QuantParts). GLU results below f32's smallest normal are flushed to
// zero (activations.wgsl says why).

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

override N_OUT: u32;
override WG: u32 = 64u;
override GLU: bool = false;
override ACCUMULATE: bool = false;
override Y_STRIDE: u32 = 0u;
override Y_COL: u32 = 0u;

const MV_ROWS = 16u;
const MM_ROWS = 16u;
const TILE = 4u;

// Elements 32b..32b+31 of token t's activations; zeros past the row's end.
fn x_block(t: u32, b: u32) -> array<vec4<f32>, 8> {
    var xs: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let j = b * 8u + i;
        xs[i] = x[t * (N_IN / 4u) + j];
        if (N_IN % 32u != 0u) { xs[i] = select(vec4<f32>(0.0), xs[i], j < N_IN / 4u); }
    }
    return xs;
}

// Weight row of accumulator j of an invocation's n whose outputs start at row r: r + j, or with
// GLU gate rows r.. (j < n / 2) and up rows N_OUT + r.. (clamped to the matrix: never stored).
fn wrow(r: u32, j: u32, n: u32) -> u32 {
    if (!GLU) { return r + j; }
    let h = n / 2u;
    return min(r + j % h, N_OUT - 1u) + (j / h) * N_OUT;
}

fn clamp_row(row: u32) -> u32 { return min(row, select(N_OUT, 2u * N_OUT, GLU) - 1u); }

// Block b of a row: full blocks, or the zero-padded last one of an F32/F16/BF16 row.
fn weights(row: u32, b: u32) -> array<vec4<f32>, 8> {
    var q = dequant_block(clamp_row(row), b);
    if (N_IN % 32u != 0u) {
        for (var i = 0u; i < 8u; i++) { q[i] = select(vec4<f32>(0.0), q[i], b * 8u + i < N_IN / 4u); }
    }
    return q;
}

// The sums of a block of x that quantised blocks multiply by m (per token for a tile): elements 0..15
// and 16..31 apart when the halves have their own m (split_scales), else all 32 in the first.
fn block_sum(xs: array<vec4<f32>, 8>) -> vec2<f32> {
    if (!has_offset()) { return vec2<f32>(0.0); }
    let lo = (xs[0] + xs[1]) + (xs[2] + xs[3]);
    let hi = (xs[4] + xs[5]) + (xs[6] + xs[7]);
    if (split_scales()) { return vec2<f32>(dot(lo, vec4<f32>(1.0)), dot(hi, vec4<f32>(1.0))); }
    return vec2<f32>(dot(lo + hi, vec4<f32>(1.0)), 0.0);
}

fn tile_sum(xs: array<mat4x4<f32>, 8>) -> mat2x4<f32> {
    if (!has_offset()) { return mat2x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0)); }
    let lo = (xs[0] + xs[1]) + (xs[2] + xs[3]);
    let hi = (xs[4] + xs[5]) + (xs[6] + xs[7]);
    if (split_scales()) { return mat2x4<f32>(vec4<f32>(1.0) * lo, vec4<f32>(1.0) * hi); }
    return mat2x4<f32>(vec4<f32>(1.0) * (lo + hi), vec4<f32>(0.0));
}

// One row's block b against x's: d * (q . x) + m * sum(x) for quantised blocks (see QuantParts).
fn row_dot(row: u32, b: u32, xs: array<vec4<f32>, 8>, xsum: vec2<f32>, c: ptr<function, KCache>, fresh: bool) -> f32 {
    if (!is_float()) {
        let p = quant_parts(clamp_row(row), b, c, fresh);
        let q = p.q;
        let lo = dot(q[0], xs[0]) + dot(q[1], xs[1]) + dot(q[2], xs[2]) + dot(q[3], xs[3]);
        let hi = dot(q[4], xs[4]) + dot(q[5], xs[5]) + dot(q[6], xs[6]) + dot(q[7], xs[7]);
        if (split_scales()) { return dot(p.d, vec2<f32>(lo, hi)) + dot(p.m, xsum); }
        if (!has_offset()) { return p.d.x * (lo + hi); }
        return p.d.x * (lo + hi) + p.m.x * xsum.x;
    }
    let q = weights(row, b);
    return dot(q[0], xs[0]) + dot(q[1], xs[1]) + dot(q[2], xs[2]) + dot(q[3], xs[3])
        + dot(q[4], xs[4]) + dot(q[5], xs[5]) + dot(q[6], xs[6]) + dot(q[7], xs[7]);
}

// Column c of each matrix is token c of the tile: q * X gives the 4 tokens' dot products at once.
fn row_tile(row: u32, b: u32, xs: array<mat4x4<f32>, 8>, xsum: mat2x4<f32>, c: ptr<function, KCache>) -> vec4<f32> {
    if (!is_float()) {
        let p = quant_parts(clamp_row(row), b, c, false);
        let q = p.q;
        let lo = q[0] * xs[0] + q[1] * xs[1] + q[2] * xs[2] + q[3] * xs[3];
        let hi = q[4] * xs[4] + q[5] * xs[5] + q[6] * xs[6] + q[7] * xs[7];
        if (split_scales()) { return p.d.x * lo + p.d.y * hi + p.m.x * xsum[0] + p.m.y * xsum[1]; }
        if (!has_offset()) { return p.d.x * (lo + hi); }
        return p.d.x * (lo + hi) + p.m.x * xsum[0];
    }
    let q = weights(row, b);
    return q[0] * xs[0] + q[1] * xs[1] + q[2] * xs[2] + q[3] * xs[3]
        + q[4] * xs[4] + q[5] * xs[5] + q[6] * xs[6] + q[7] * xs[7];
}

fn x_tile(t0: u32, nt: u32, b: u32) -> array<mat4x4<f32>, 8> {
    // Tokens past the batch repeat its last one: valid memory, results never stored.
    let a = x_load(t0, b);
    let c = x_load(t0 + min(1u, nt - 1u), b);
    let d = x_load(t0 + min(2u, nt - 1u), b);
    let e = x_load(t0 + min(3u, nt - 1u), b);
    var xs: array<mat4x4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { xs[i] = mat4x4<f32>(a[i], c[i], d[i], e[i]); }
    return xs;
}

// x_in_place of each token of a tile (a column of each matrix).
fn tile_in_place(xs: array<mat4x4<f32>, 8>) -> array<mat4x4<f32>, 8> {
    if (!QUANTS_IN_PLACE) { return xs; }
    var out = xs;
    for (var i = 0u; i < 8u; i++) {
        for (var t = 0u; t < 4u; t++) { out[i][t] *= in_place_x(); }
    }
    return out;
}

fn put(t: u32, row: u32, v: f32) {
    let i = t * select(Y_STRIDE, N_OUT, Y_STRIDE == 0u) + Y_COL + row;
    if (ACCUMULATE) { y[i] += v; } else { y[i] = v; }
}

fn store1(row: u32, v: f32) {
    if (row < N_OUT) { put(0u, row, v); }
}

fn store_tile(row: u32, t0: u32, nt: u32, v: vec4<f32>) {
    if (row >= N_OUT) { return; }
    for (var c = 0u; c < nt; c++) { put(t0 + c, row, v[c]); }
}

// The MV_ROWS sums of the invocation whose rows start at r (GLU: gate rows r.. in the first two, up rows
// in the last two), each x block loaded once for them all.
fn matvec_sums(r: u32) -> array<vec4<f32>, 4> {
    var a0 = 0.0; var a1 = 0.0; var a2 = 0.0; var a3 = 0.0;
    var a4 = 0.0; var a5 = 0.0; var a6 = 0.0; var a7 = 0.0;
    var a8 = 0.0; var a9 = 0.0; var a10 = 0.0; var a11 = 0.0;
    var a12 = 0.0; var a13 = 0.0; var a14 = 0.0; var a15 = 0.0;
    var c0: KCache; var c1: KCache; var c2: KCache; var c3: KCache;
    var c4: KCache; var c5: KCache; var c6: KCache; var c7: KCache;
    var c8: KCache; var c9: KCache; var c10: KCache; var c11: KCache;
    var c12: KCache; var c13: KCache; var c14: KCache; var c15: KCache;
    let s = x_scale(0u);
    for (var b = 0u; b < (N_IN + 31u) / 32u; b++) {
        let x_block = x_load(0u, b);
        let xsum = block_sum(x_block);
        let xs = x_in_place(x_block);
        a0 += row_dot(wrow(r, 0u, MV_ROWS), b, xs, xsum, &c0, false);
        a1 += row_dot(wrow(r, 1u, MV_ROWS), b, xs, xsum, &c1, false);
        a2 += row_dot(wrow(r, 2u, MV_ROWS), b, xs, xsum, &c2, false);
        a3 += row_dot(wrow(r, 3u, MV_ROWS), b, xs, xsum, &c3, false);
        a4 += row_dot(wrow(r, 4u, MV_ROWS), b, xs, xsum, &c4, false);
        a5 += row_dot(wrow(r, 5u, MV_ROWS), b, xs, xsum, &c5, false);
        a6 += row_dot(wrow(r, 6u, MV_ROWS), b, xs, xsum, &c6, false);
        a7 += row_dot(wrow(r, 7u, MV_ROWS), b, xs, xsum, &c7, false);
        a8 += row_dot(wrow(r, 8u, MV_ROWS), b, xs, xsum, &c8, false);
        a9 += row_dot(wrow(r, 9u, MV_ROWS), b, xs, xsum, &c9, false);
        a10 += row_dot(wrow(r, 10u, MV_ROWS), b, xs, xsum, &c10, false);
        a11 += row_dot(wrow(r, 11u, MV_ROWS), b, xs, xsum, &c11, false);
        a12 += row_dot(wrow(r, 12u, MV_ROWS), b, xs, xsum, &c12, false);
        a13 += row_dot(wrow(r, 13u, MV_ROWS), b, xs, xsum, &c13, false);
        a14 += row_dot(wrow(r, 14u, MV_ROWS), b, xs, xsum, &c14, false);
        a15 += row_dot(wrow(r, 15u, MV_ROWS), b, xs, xsum, &c15, false);
    }
    return array<vec4<f32>, 4>(s * vec4<f32>(a0, a1, a2, a3), s * vec4<f32>(a4, a5, a6, a7),
                               s * vec4<f32>(a8, a9, a10, a11), s * vec4<f32>(a12, a13, a14, a15));
}

fn store4(row: u32, v: vec4<f32>) {
    store1(row, v.x); store1(row + 1u, v.y); store1(row + 2u, v.z); store1(row + 3u, v.w);
}

// The first row of the invocation's MV_ROWS (GLU: of its MV_ROWS / 2 outputs).
fn matvec_row(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return ((wid.y * nwg.x + wid.x) * WG + lid) * select(MV_ROWS, MV_ROWS / 2u, GLU);
}

@compute @workgroup_size(WG)
fn matvec(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    matvec_at(matvec_row(wid, nwg, lid));
}

// The entry points' work, for matmul_lanes.wgsl's too. Every invocation that has a token computes sums, one
// whose rows lie past N_OUT those of clamped rows (clamp_row), and stores only its own: matmul_lanes.wgsl's
// lanes load x for each other.
fn matvec_at(r: u32) {
    if (params.n_tokens == 0u) { return; }
    let a = matvec_sums(r);
    if (GLU) {
        store4(r, glu4(a[0], a[2]));
        store4(r + 4u, glu4(a[1], a[3]));
        return;
    }
    store4(r, a[0]);
    store4(r + 4u, a[1]);
    store4(r + 8u, a[2]);
    store4(r + 12u, a[3]);
}

// matvec_rope: one token's q | k | v product that rotates q's and k's heads and stores keys and values in
// the caches itself (rope_store.wgsl: its bindings 5 to 8 and overrides; HEAD_DIM a multiple of MV_ROWS, so
// that an invocation's rows lie in one head).
@compute @workgroup_size(WG)
fn matvec_rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    matvec_rope_at(matvec_row(wid, nwg, lid));
}

fn matvec_rope_at(r: u32) {
    if (params.n_tokens == 0u) { return; }
    let a = matvec_sums(r);
    if (r >= N_OUT) { return; }
    rope_store4(0u, r, a[0]);
    rope_store4(0u, r + 4u, a[1]);
    rope_store4(0u, r + 8u, a[2]);
    rope_store4(0u, r + 12u, a[3]);
}

@compute @workgroup_size(WG)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    matmul_at(wid, nwg, lid);
}

fn matmul_at(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let r = ((wid.y * nwg.x + wid.x) * WG + lid) * select(MM_ROWS, MM_ROWS / 2u, GLU);
    let t0 = wid.z * TILE;
    if (t0 >= params.n_tokens) { return; }
    let nt = min(params.n_tokens - t0, TILE);
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0); var a9 = vec4<f32>(0.0); var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0); var a13 = vec4<f32>(0.0); var a14 = vec4<f32>(0.0); var a15 = vec4<f32>(0.0);
    var c0: KCache; var c1: KCache; var c2: KCache; var c3: KCache;  // K-quant words each row reuses
    var c4: KCache; var c5: KCache; var c6: KCache; var c7: KCache;
    var c8: KCache; var c9: KCache; var c10: KCache; var c11: KCache;
    var c12: KCache; var c13: KCache; var c14: KCache; var c15: KCache;
    for (var b = 0u; b < (N_IN + 31u) / 32u; b++) {
        let x_block = x_tile(t0, nt, b);
        let xsum = tile_sum(x_block);
        let xs = tile_in_place(x_block);
        a0 += row_tile(wrow(r, 0u, MM_ROWS), b, xs, xsum, &c0);
        a1 += row_tile(wrow(r, 1u, MM_ROWS), b, xs, xsum, &c1);
        a2 += row_tile(wrow(r, 2u, MM_ROWS), b, xs, xsum, &c2);
        a3 += row_tile(wrow(r, 3u, MM_ROWS), b, xs, xsum, &c3);
        a4 += row_tile(wrow(r, 4u, MM_ROWS), b, xs, xsum, &c4);
        a5 += row_tile(wrow(r, 5u, MM_ROWS), b, xs, xsum, &c5);
        a6 += row_tile(wrow(r, 6u, MM_ROWS), b, xs, xsum, &c6);
        a7 += row_tile(wrow(r, 7u, MM_ROWS), b, xs, xsum, &c7);
        a8 += row_tile(wrow(r, 8u, MM_ROWS), b, xs, xsum, &c8);
        a9 += row_tile(wrow(r, 9u, MM_ROWS), b, xs, xsum, &c9);
        a10 += row_tile(wrow(r, 10u, MM_ROWS), b, xs, xsum, &c10);
        a11 += row_tile(wrow(r, 11u, MM_ROWS), b, xs, xsum, &c11);
        a12 += row_tile(wrow(r, 12u, MM_ROWS), b, xs, xsum, &c12);
        a13 += row_tile(wrow(r, 13u, MM_ROWS), b, xs, xsum, &c13);
        a14 += row_tile(wrow(r, 14u, MM_ROWS), b, xs, xsum, &c14);
        a15 += row_tile(wrow(r, 15u, MM_ROWS), b, xs, xsum, &c15);
    }
    if (GLU) {
        store_tile(r, t0, nt, glu4(a0, a8)); store_tile(r + 1u, t0, nt, glu4(a1, a9));
        store_tile(r + 2u, t0, nt, glu4(a2, a10)); store_tile(r + 3u, t0, nt, glu4(a3, a11));
        store_tile(r + 4u, t0, nt, glu4(a4, a12)); store_tile(r + 5u, t0, nt, glu4(a5, a13));
        store_tile(r + 6u, t0, nt, glu4(a6, a14)); store_tile(r + 7u, t0, nt, glu4(a7, a15));
        return;
    }
    store_tile(r, t0, nt, a0); store_tile(r + 1u, t0, nt, a1);
    store_tile(r + 2u, t0, nt, a2); store_tile(r + 3u, t0, nt, a3);
    store_tile(r + 4u, t0, nt, a4); store_tile(r + 5u, t0, nt, a5);
    store_tile(r + 6u, t0, nt, a6); store_tile(r + 7u, t0, nt, a7);
    store_tile(r + 8u, t0, nt, a8); store_tile(r + 9u, t0, nt, a9);
    store_tile(r + 10u, t0, nt, a10); store_tile(r + 11u, t0, nt, a11);
    store_tile(r + 12u, t0, nt, a12); store_tile(r + 13u, t0, nt, a13);
    store_tile(r + 14u, t0, nt, a14); store_tile(r + 15u, t0, nt, a15);
}
