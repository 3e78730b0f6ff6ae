// The f32 tiles' kernel, matmul_tiled.wgsl's (which describes it) and matmul_tiled_wide.wgsl's: the including
// module declares TOKEN_GROUPS (1, or 2 for wide tiles) and tile_x (TILE_TOKENS TOKEN_GROUPS x 8 vec4s).
// (They are not overrides: naga 29 panics on a workgroup array sized by one in this module.)

const APART = 16u * TOKEN_GROUPS;  // tokens between the four an invocation fetches, and between its sums' four

var<workgroup> tile_w: array<vec4<f32>, 1024>;  // TILE_ROWS x 8

// Where vec4 c of a tile row (or of a token's x) r lies: its eight vec4s in an order of its own (c ^ r % 8), so
// that the same vec4 of eight neighbouring rows lies in eight different banks without padding a row (the wide
// tiles fill 32 KB so): the quarter of a subgroup that loads it, and the eighth of a row's block that each of a
// quarter stores, go at full width.
fn swizzled(r: u32, c: u32) -> u32 { return r * 8u + (c ^ (r & 7u)); }

// Column vec4 c (swizzled for t) of tokens t + APART j (j < 4, which share t's order), as a matrix whose column i
// is x's column 4 c + i of them.
fn tokens4(t: u32, c: u32) -> mat4x4<f32> {
    let s = APART * 8u;
    let at = t * 8u + c;
    return transpose(mat4x4<f32>(tile_x[at], tile_x[at + s], tile_x[at + 2u * s], tile_x[at + 3u * s]));
}

// Vec4s c .. c + 3 of tile row r's weights: a half block's quants q (four a word), scaled by d and offset by m.
fn put_weights(r: u32, c: u32, q: vec4<u32>, d: f32, m: f32) {
    tile_w[swizzled(r, c)] = d * tile_bytes(q.x) + m;
    tile_w[swizzled(r, c + 1u)] = d * tile_bytes(q.y) + m;
    tile_w[swizzled(r, c + 2u)] = d * tile_bytes(q.z) + m;
    tile_w[swizzled(r, c + 3u)] = d * tile_bytes(q.w) + m;
}

// The products of eight columns (xs0 and xs1 by w0 and w1) for four tokens: one chain of multiply-adds from the
// first product, which then joins the row's sum (one add per eight, where a dot product a vec4 cost one per four).
fn mad8(xs0: mat4x4<f32>, xs1: mat4x4<f32>, w0: vec4<f32>, w1: vec4<f32>) -> vec4<f32> {
    var s = xs0[0] * w0.x;
    s = fma(xs0[1], vec4<f32>(w0.y), s);
    s = fma(xs0[2], vec4<f32>(w0.z), s);
    s = fma(xs0[3], vec4<f32>(w0.w), s);
    s = fma(xs1[0], vec4<f32>(w1.x), s);
    s = fma(xs1[1], vec4<f32>(w1.y), s);
    s = fma(xs1[2], vec4<f32>(w1.z), s);
    return fma(xs1[3], vec4<f32>(w1.w), s);
}

@compute @workgroup_size(128u * TOKEN_GROUPS)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    share_tables(lid, 128u * TOKEN_GROUPS);
    let r0 = tile_first_output(wid, nwg);
    let t0 = wid.z * TILE_TOKENS * TOKEN_GROUPS;
    if (r0 >= N_OUT || t0 >= params.n_tokens) { return; }  // the same for the whole workgroup
    // What this invocation stores each block: tile row lid % 128 (in wide tiles its low half of columns, or its
    // high half from invocation 128 on), and vec4 lid % 8 of tokens lid / 8 + APART i (i < 4) (tokens
    // past the batch repeat its last one: valid memory, results never stored)
    let w_row = tile_row(r0, lid % 128u);
    let high = lid >= 128u;
    let w_r = lid % 128u;
    let xt = lid / 8u;
    let x_base = (t0 + xt) * (N_IN / 4u) + lid % 8u;
    let x_last = (params.n_tokens - 1u) * (N_IN / 4u) + lid % 8u;
    let x_at = swizzled(xt, lid % 8u);  // (tokens APART apart share the order)
    let tr = lid % 16u;
    let tc = lid / 16u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    var f = fetch(w_row, 0u, x_base, x_last, APART);
    for (var b = 0u; b < N_IN / 32u; b++) {
        let p = f.p;
        if (TOKEN_GROUPS == 1u) {
            put_weights(w_r, 0u, p.lo, p.d.x, p.m.x);
            put_weights(w_r, 4u, p.hi, p.d.y, p.m.y);
        } else {
            let q = select(p.lo, p.hi, high);
            put_weights(w_r, select(0u, 4u, high), q, select(p.d.x, p.d.y, high), select(p.m.x, p.m.y, high));
        }
        let apart = APART * 8u;
        tile_x[x_at] = f.x0;
        tile_x[x_at + apart] = f.x1;
        tile_x[x_at + 2u * apart] = f.x2;
        tile_x[x_at + 3u * apart] = f.x3;
        workgroupBarrier();
        if (b + 1u < N_IN / 32u) { f = fetch(w_row, b + 1u, x_base, x_last, APART); }
        for (var k = 0u; k < 8u; k += 2u) {  // two vec4s of columns at a time: eight products a sum
            let c0 = k ^ (tc & 7u);  // (tokens tc and tc + APART / 2 share the order)
            let c1 = (k + 1u) ^ (tc & 7u);
            let xa0 = tokens4(tc, c0);
            let xa1 = tokens4(tc, c1);
            let xb0 = tokens4(tc + APART / 2u, c0);
            let xb1 = tokens4(tc + APART / 2u, c1);
            let w0_at = tr * 8u + (k ^ (tr & 7u));  // (rows tr + 16 i share the order)
            let w1_at = tr * 8u + ((k + 1u) ^ (tr & 7u));
            var w0 = tile_w[w0_at];
            var w1 = tile_w[w1_at];
            a0 += mad8(xa0, xa1, w0, w1); b0 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[w0_at + 128u]; w1 = tile_w[w1_at + 128u];
            a1 += mad8(xa0, xa1, w0, w1); b1 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[w0_at + 256u]; w1 = tile_w[w1_at + 256u];
            a2 += mad8(xa0, xa1, w0, w1); b2 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[w0_at + 384u]; w1 = tile_w[w1_at + 384u];
            a3 += mad8(xa0, xa1, w0, w1); b3 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[w0_at + 512u]; w1 = tile_w[w1_at + 512u];
            a4 += mad8(xa0, xa1, w0, w1); b4 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[w0_at + 640u]; w1 = tile_w[w1_at + 640u];
            a5 += mad8(xa0, xa1, w0, w1); b5 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[w0_at + 768u]; w1 = tile_w[w1_at + 768u];
            a6 += mad8(xa0, xa1, w0, w1); b6 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[w0_at + 896u]; w1 = tile_w[w1_at + 896u];
            a7 += mad8(xa0, xa1, w0, w1); b7 += mad8(xb0, xb1, w0, w1);
        }
        workgroupBarrier();
    }
    put_sums(r0 + tr, t0 + tc, APART, a0, a1, a2, a3, a4, a5, a6, a7);
    put_sums(r0 + tr, t0 + tc + APART / 2u, APART, b0, b1, b2, b3, b4, b5, b6, b7);
}
