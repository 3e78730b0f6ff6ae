// Prompts' matrix products on GPUs, tiled in workgroup memory: a workgroup takes 128 weight rows x 64
// tokens, a block of 32 columns a step. Each block is decoded to f32 once for the 64 tokens and x's block
// loaded once for the 128 rows; then every invocation multiplies 8 rows by 4 tokens out of workgroup memory
// (128 f32 multiply-adds for 12 vec4 loads). x stays f32: no quantize_x, and f32's precision.
// Every invocation fetches the next block (half a row's integers, int_parts, and two vec4s of x) into
// registers before it multiplies the current one, so those loads are in flight during the multiply-adds.
//
// matmul_tiled_f16.wgsl is the same product in f16 where the adapter has shader-f16.
//
// An extension of matmul.wgsl: kernels.py appends tiles.wgsl, matmul.wgsl, activations.wgsl, quant.wgsl and the
// type's weight library, so params, x, y, put, glu4, clamp_row, share_tables and int_parts are theirs.
// Bindings:  0 params, 1 w the weights' GGUF bytes [N_OUT, N_IN] (2 * N_OUT rows with GLU), 2 x [T, N_IN] f32,
//            3 y [T, N_OUT] f32 (ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
// Formula:   y[t, r] = sum_k W[r, k] x[t, k]; GLU: act(gate row r . x) * (up row N_OUT + r . x)
// Overrides: WTYPE (a type with int_parts), N_IN, N_OUT, GLU, GELU, ACCUMULATE, Y_STRIDE, Y_COL
// Grid:      (ceil(N_OUT / 128) as (x, y), ceil(T / 64)); with GLU ceil(N_OUT / 64) row groups, the tile's
//            rows 0..63 the gate rows of outputs r0.. and rows 64..127 their up rows.
// Invocation i multiplies tile rows i % 16 + 16 k and tokens i / 16 + 16 j (k < 8, j < 4): the rows a
// quarter of a subgroup loads lie in different banks (a tile row is 9 vec4s, one of them padding), the
// tokens are two a subgroup (broadcast), and with GLU each invocation holds a gate row's sums and its up row's.

var<workgroup> tile_w: array<vec4<f32>, 1152>;  // TILE_ROWS x PITCH
var<workgroup> tile_x: array<vec4<f32>, 576>;  // TILE_TOKENS x PITCH

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
    put_sums(r0 + tr, t0 + tc, a0, a1, a2, a3, a4, a5, a6, a7);
}
