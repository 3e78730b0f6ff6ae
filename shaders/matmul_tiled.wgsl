// Prompts' matrix products on GPUs, tiled in workgroup memory: a workgroup takes 128 weight rows x 64
// tokens, a block of 32 columns a step. Each block is decoded to f32 once for the 64 tokens and x's block
// loaded once for the 128 rows; then every invocation multiplies 8 rows by 4 tokens out of workgroup memory
// (128 f32 multiply-adds for 12 vec4 loads). x stays f32: no quantize_x, and f32's precision.
// Every invocation fetches the next block (half a row's integers, int_parts, and two vec4s of x) into
// registers before it multiplies the current one, so those loads are in flight during the multiply-adds.
//
// An extension of matmul.wgsl: kernels.py appends matmul.wgsl, activations.wgsl, quant.wgsl and the type's
// weight library, so params, x, y, put, glu4, clamp_row, share_tables and int_parts are theirs.
// Bindings:  0 params, 1 w the weights' GGUF bytes [N_OUT, N_IN] (2 * N_OUT rows with GLU), 2 x [T, N_IN] f32,
//            3 y [T, N_OUT] f32 (ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
// Formula:   y[t, r] = sum_k W[r, k] x[t, k]; GLU: act(gate row r . x) * (up row N_OUT + r . x)
// Overrides: WTYPE (a type with int_parts), N_IN, N_OUT, GLU, GELU, ACCUMULATE, Y_STRIDE, Y_COL
// Grid:      (ceil(N_OUT / 128) as (x, y), ceil(T / 64)); with GLU ceil(N_OUT / 64) row groups, the tile's
//            rows 0..63 the gate rows of outputs r0.. and rows 64..127 their up rows.
// Invocation i multiplies tile rows i % 16 + 16 k and tokens i / 16 + 16 j (k < 8, j < 4): the rows a
// quarter of a subgroup loads lie in different banks (a tile row is 9 vec4s, one of them padding), the
// tokens are two a subgroup (broadcast), and with GLU each invocation holds a gate row's sums and its up row's.

const TILE_ROWS = 128u;
const TILE_TOKENS = 64u;
const PITCH = 9u;  // vec4s a tile row: a block's 8 and one of padding

var<workgroup> tile_w: array<vec4<f32>, 1152>;  // TILE_ROWS x PITCH
var<workgroup> tile_x: array<vec4<f32>, 576>;  // TILE_TOKENS x PITCH

// The weight row that tile row i holds for the outputs from r0.
fn tile_row(r0: u32, i: u32) -> u32 {
    if (GLU) { return clamp_row(select(N_OUT + r0 + i - 64u, r0 + i, i < 64u)); }
    return clamp_row(r0 + i);
}

// Four signed bytes as f32.
fn tile_bytes(q: u32) -> vec4<f32> {
    let v = bitcast<i32>(q);
    return vec4<f32>(vec4<i32>(v << 24u, v << 16u, v << 8u, v) >> vec4<u32>(24u));
}

// What an invocation fetches of one block: half a tile row's integers (its scale and offset) and two vec4s of x.
struct Fetched { q: vec4<u32>, d: f32, m: f32, x0: vec4<f32>, x1: vec4<f32> }

fn fetch(w_row: u32, hi: bool, b: u32, x_base0: u32, x_base1: u32) -> Fetched {
    let p = int_parts(w_row, b);
    return Fetched(select(p.lo, p.hi, hi), select(p.d.x, p.d.y, hi), select(p.m.x, p.m.y, hi),
                   x[x_base0 + 8u * b], x[x_base1 + 8u * b]);
}

@compute @workgroup_size(256)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    share_tables(lid, 256u);
    let r0 = (wid.y * nwg.x + wid.x) * select(TILE_ROWS, TILE_ROWS / 2u, GLU);
    let t0 = wid.z * TILE_TOKENS;
    if (r0 >= N_OUT || t0 >= params.n_tokens) { return; }  // the same for the whole workgroup
    let nt = params.n_tokens;
    // What this invocation stores each block: half (hi) of tile row lid % 128, and vec4s lid and lid + 256 of
    // the 64 tokens' x blocks (tokens past the batch repeat its last one: valid memory, results never stored)
    let row = lid % TILE_ROWS;
    let hi = lid >= TILE_ROWS;
    let w_row = tile_row(r0, row);
    let w_at = row * PITCH + select(0u, 4u, hi);
    let xt0 = lid / 8u;
    let xt1 = xt0 + 32u;
    let x_base0 = min(t0 + xt0, nt - 1u) * (N_IN / 4u) + lid % 8u;
    let x_base1 = min(t0 + xt1, nt - 1u) * (N_IN / 4u) + lid % 8u;
    let tr = lid % 16u;
    let tc = lid / 16u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var f = fetch(w_row, hi, 0u, x_base0, x_base1);
    for (var b = 0u; b < N_IN / 32u; b++) {
        tile_w[w_at] = f.d * tile_bytes(f.q.x) + f.m;
        tile_w[w_at + 1u] = f.d * tile_bytes(f.q.y) + f.m;
        tile_w[w_at + 2u] = f.d * tile_bytes(f.q.z) + f.m;
        tile_w[w_at + 3u] = f.d * tile_bytes(f.q.w) + f.m;
        tile_x[xt0 * PITCH + lid % 8u] = f.x0;
        tile_x[xt1 * PITCH + lid % 8u] = f.x1;
        workgroupBarrier();
        if (b + 1u < N_IN / 32u) { f = fetch(w_row, hi, b + 1u, x_base0, x_base1); }
        for (var k = 0u; k < 8u; k++) {
            let xs = mat4x4<f32>(tile_x[tc * PITCH + k], tile_x[(tc + 16u) * PITCH + k],
                                 tile_x[(tc + 32u) * PITCH + k], tile_x[(tc + 48u) * PITCH + k]);
            a0 += tile_w[tr * PITCH + k] * xs;
            a1 += tile_w[(tr + 16u) * PITCH + k] * xs;
            a2 += tile_w[(tr + 32u) * PITCH + k] * xs;
            a3 += tile_w[(tr + 48u) * PITCH + k] * xs;
            a4 += tile_w[(tr + 64u) * PITCH + k] * xs;
            a5 += tile_w[(tr + 80u) * PITCH + k] * xs;
            a6 += tile_w[(tr + 96u) * PITCH + k] * xs;
            a7 += tile_w[(tr + 112u) * PITCH + k] * xs;
        }
        workgroupBarrier();
    }
    if (GLU) {
        put_tokens(r0 + tr, t0 + tc, glu4(a0, a4));
        put_tokens(r0 + tr + 16u, t0 + tc, glu4(a1, a5));
        put_tokens(r0 + tr + 32u, t0 + tc, glu4(a2, a6));
        put_tokens(r0 + tr + 48u, t0 + tc, glu4(a3, a7));
        return;
    }
    put_tokens(r0 + tr, t0 + tc, a0);
    put_tokens(r0 + tr + 16u, t0 + tc, a1);
    put_tokens(r0 + tr + 32u, t0 + tc, a2);
    put_tokens(r0 + tr + 48u, t0 + tc, a3);
    put_tokens(r0 + tr + 64u, t0 + tc, a4);
    put_tokens(r0 + tr + 80u, t0 + tc, a5);
    put_tokens(r0 + tr + 96u, t0 + tc, a6);
    put_tokens(r0 + tr + 112u, t0 + tc, a7);
}

// Output row r of tokens t, t + 16, t + 32 and t + 48 (those of them in the batch).
fn put_tokens(r: u32, t: u32, v: vec4<f32>) {
    if (r >= N_OUT) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (t + 16u * j < params.n_tokens) { put(t + 16u * j, r, v[j]); }
    }
}
