enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
// Each subgroup's matrix loads start at its own rows: uniform in the subgroup (the subgroup of 32 is lid / 32
// where the feature is offered: its pipelines run full subgroups of exactly 32), not across the workgroup.
diagnostic(off, chromium.subgroup_matrix_uniformity);

// matmul_tiled_f16.wgsl's product on subgroup matrices (tensor cores; Chromium's
// chromium-experimental-subgroup-matrix with its f16 x f16 -> f32 16x16x16 configuration): the tile's weights
// and x go into workgroup memory as f16 as there, but the multiply-adds are 16x16x16 matrix products summed in
// f32 by the hardware. So x and the weights keep f16's 11 bits (x held within f16's range: tiles.wgsl's
// f16_range), every sum f32's: closer than the f16 tiles (whose block sums are f16, and can overflow).
//
// Bindings, formula, overrides and grid: matmul_tiled.wgsl's (tiles.wgsl and its libraries appended), with
// N_IN a multiple of STAGE (Kernels chooses these tiles only then).
// A workgroup's four subgroups share a stage of STAGE columns (two blocks) of TILE_ROWS weight rows and
// TILE_TOKENS tokens: 32 matrix products a subgroup between two barriers (a stage of one block gave 16 and
// waited on its barriers, NOTES.md session 21). Subgroup s owns 32 tile rows x the 64 tokens, eight 16x16 sums:
// rows 32 s.. (with GLU: gate rows 16 s.. and their up rows 64 + 16 s.., so GLU's pairs stay in the subgroup).
// Each invocation decodes one tile row's two blocks and stores half a block of x for one token each stage,
// having fetched them into registers during the previous stage's products.

const STAGE = 64u;
// f16s a row of tile_wm and tile_xm: a stage and 8 of padding (rows stay 16-byte aligned, as matrix loads
// want, and the 16 rows of one load start in different banks).
const MP = 72u;

var<workgroup> tile_wm: array<f16, 9216>;  // TILE_ROWS x MP
var<workgroup> tile_xm: array<f16, 4608>;  // TILE_TOKENS x MP: token t's columns at t MP
var<workgroup> sums_out: array<f32, 1024>;  // a 16x16 matrix of sums a subgroup, on its way to y

// A stage's data in one invocation's registers: its tile row's two blocks, and half a block of x (eight vec4s).
struct Stage {
    p0: IntParts, p1: IntParts,
    x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
    x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>,
}

fn fetch_stage(w_row: u32, s: u32, x_at: u32) -> Stage {
    let o = x_at + 16u * s;
    return Stage(int_parts(w_row, 2u * s), int_parts(w_row, 2u * s + 1u),
                 x[o], x[o + 1u], x[o + 2u], x[o + 3u], x[o + 4u], x[o + 5u], x[o + 6u], x[o + 7u]);
}

fn put_w4(at: u32, v: vec4<f32>) {
    let h = vec4<f16>(v);
    tile_wm[at] = h.x; tile_wm[at + 1u] = h.y; tile_wm[at + 2u] = h.z; tile_wm[at + 3u] = h.w;
}

fn put_x4(at: u32, v: vec4<f32>) {
    let h = vec4<f16>(f16_range(v));
    tile_xm[at] = h.x; tile_xm[at + 1u] = h.y; tile_xm[at + 2u] = h.z; tile_xm[at + 3u] = h.w;
}

// A block's 32 weights (columns 0..15 lo, 16..31 hi) from tile_wm[at].
fn put_block(at: u32, p: IntParts) {
    put_w4(at, p.d.x * tile_bytes(p.lo.x) + p.m.x);
    put_w4(at + 4u, p.d.x * tile_bytes(p.lo.y) + p.m.x);
    put_w4(at + 8u, p.d.x * tile_bytes(p.lo.z) + p.m.x);
    put_w4(at + 12u, p.d.x * tile_bytes(p.lo.w) + p.m.x);
    put_w4(at + 16u, p.d.y * tile_bytes(p.hi.x) + p.m.y);
    put_w4(at + 20u, p.d.y * tile_bytes(p.hi.y) + p.m.y);
    put_w4(at + 24u, p.d.y * tile_bytes(p.hi.z) + p.m.y);
    put_w4(at + 28u, p.d.y * tile_bytes(p.hi.w) + p.m.y);
}

fn put_stage(f: Stage, w_at: u32, x_at: u32) {
    put_block(w_at, f.p0);
    put_block(w_at + 32u, f.p1);
    put_x4(x_at, f.x0); put_x4(x_at + 4u, f.x1); put_x4(x_at + 8u, f.x2); put_x4(x_at + 12u, f.x3);
    put_x4(x_at + 16u, f.x4); put_x4(x_at + 20u, f.x5); put_x4(x_at + 24u, f.x6); put_x4(x_at + 28u, f.x7);
}

// Token block tb's columns k.. k + 15 of x as a right operand: x's tile holds token t's column c at t MP + c,
// so the matrix (a token's columns are its column) is column-major there.
fn x_matrix(tb: u32, k: u32) -> subgroup_matrix_right<f16, 16, 16> {
    return subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&tile_xm, 16u * tb * MP + k, true, MP);
}

// The subgroup's 16x16 sums m (tile rows x tokens) as one lane's eight: row lane % 16, tokens 2 j + lane / 16.
// Every invocation of the workgroup calls it together (its barriers).
fn lane_sums(m: subgroup_matrix_result<f32, 16, 16>, sg: u32, lane: u32) -> array<f32, 8> {
    subgroupMatrixStore(&sums_out, 256u * sg, m, true, 16u);  // [row, token] at 16 token + row
    workgroupBarrier();
    var v: array<f32, 8>;
    for (var j = 0u; j < 8u; j++) { v[j] = sums_out[256u * sg + 16u * (2u * j + lane / 16u) + lane % 16u]; }
    workgroupBarrier();
    return v;
}

// Sums v (lane_sums's) of output row r for tokens t + 2 j, those of them in the batch.
fn put_lane(r: u32, t: u32, v: array<f32, 8>) {
    if (r >= N_OUT) { return; }
    for (var j = 0u; j < 8u; j++) {
        if (t + 2u * j < params.n_tokens) { put(t + 2u * j, r, v[j]); }
    }
}

// Token block tb's sums of the subgroup's two row blocks (a and b) into y.
fn put_block_sums(a: subgroup_matrix_result<f32, 16, 16>, b: subgroup_matrix_result<f32, 16, 16>,
                  r0: u32, t0: u32, sg: u32, lane: u32, tb: u32) {
    let va = lane_sums(a, sg, lane);
    let vb = lane_sums(b, sg, lane);
    let t = t0 + 16u * tb + lane / 16u;
    if (GLU) {
        var g: array<f32, 8>;
        for (var j = 0u; j < 8u; j++) { g[j] = glu(va[j], vb[j]); }
        put_lane(r0 + 16u * sg + lane % 16u, t, g);
        return;
    }
    put_lane(r0 + 32u * sg + lane % 16u, t, va);
    put_lane(r0 + 32u * sg + 16u + lane % 16u, t, vb);
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
    // What this invocation stores each stage: tile row lid, and half lid % 2 of token lid / 2's columns
    // (tokens past the batch repeat its last one: valid memory, results never stored)
    let w_row = tile_row(r0, lid);
    let w_at = lid * MP;
    let xt = lid / 2u;
    let x_src = min(t0 + xt, params.n_tokens - 1u) * (N_IN / 4u) + 8u * (lid % 2u);
    let x_at = xt * MP + 32u * (lid % 2u);
    // The subgroup's two row blocks: GLU's gate rows and their up rows, or two adjacent blocks.
    let sg = lid / 32u;
    let row_a = select(32u * sg, 16u * sg, GLU);
    let row_b = select(32u * sg + 16u, 64u + 16u * sg, GLU);
    var a0 = subgroup_matrix_result<f32, 16, 16>(); var a1 = subgroup_matrix_result<f32, 16, 16>();
    var a2 = subgroup_matrix_result<f32, 16, 16>(); var a3 = subgroup_matrix_result<f32, 16, 16>();
    var b0 = subgroup_matrix_result<f32, 16, 16>(); var b1 = subgroup_matrix_result<f32, 16, 16>();
    var b2 = subgroup_matrix_result<f32, 16, 16>(); var b3 = subgroup_matrix_result<f32, 16, 16>();
    var f = fetch_stage(w_row, 0u, x_src);
    for (var s = 0u; s < N_IN / STAGE; s++) {
        put_stage(f, w_at, x_at);
        workgroupBarrier();
        if (s + 1u < N_IN / STAGE) { f = fetch_stage(w_row, s + 1u, x_src); }
        for (var k = 0u; k < STAGE; k += 16u) {
            let wa = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&tile_wm, row_a * MP + k, false, MP);
            let wb = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&tile_wm, row_b * MP + k, false, MP);
            let x0 = x_matrix(0u, k);
            let x1 = x_matrix(1u, k);
            let x2 = x_matrix(2u, k);
            let x3 = x_matrix(3u, k);
            a0 = subgroupMatrixMultiplyAccumulate(wa, x0, a0); b0 = subgroupMatrixMultiplyAccumulate(wb, x0, b0);
            a1 = subgroupMatrixMultiplyAccumulate(wa, x1, a1); b1 = subgroupMatrixMultiplyAccumulate(wb, x1, b1);
            a2 = subgroupMatrixMultiplyAccumulate(wa, x2, a2); b2 = subgroupMatrixMultiplyAccumulate(wb, x2, b2);
            a3 = subgroupMatrixMultiplyAccumulate(wa, x3, a3); b3 = subgroupMatrixMultiplyAccumulate(wb, x3, b3);
        }
        workgroupBarrier();
    }
    let lane = lid % 32u;
    put_block_sums(a0, b0, r0, t0, sg, lane, 0u);
    put_block_sums(a1, b1, r0, t0, sg, lane, 1u);
    put_block_sums(a2, b2, r0, t0, sg, lane, 2u);
    put_block_sums(a3, b3, r0, t0, sg, lane, 3u);
}
