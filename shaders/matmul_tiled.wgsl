// Prompts' matrix products on GPUs, tiled in workgroup memory: a workgroup takes 128 weight rows x 64
// tokens, a block of 32 columns a step. Each block is decoded to f32 once for the 64 tokens and x's block
// loaded once for the 128 rows; then each of the 128 invocations multiplies 8 rows by 8 tokens out of
// workgroup memory (256 f32 multiply-adds for 16 vec4 loads; 256 invocations of 8 x 4 ran no faster in f32,
// 11 % slower in f16). x stays f32: no quantize_x, and f32's precision. Each eight columns' products are one
// chain of multiply-adds, which then joins the row's sum (mad8): 13 % faster at 8B than summing four products
// before the add, and closer to the scalar kernels (the default model's Q5_0 mix drifts 4.4e-5 of its largest
// logit from them, against 4.9e-5). One chain for all of a row's products gained 10 % but drifted 1.2e-4,
// near the 0.005 logits gap below which greedy tokens count as ties; chains over a whole block (32
// products, into per-block sums as the f16 tiles) were closer (1.4e-5) but 4 % slower: sixteen more registers.
// Every invocation fetches the next block (a row's integers, int_parts, and four vec4s of x) into registers
// before it multiplies the current one, so those loads are in flight during the multiply-adds. (Two tiles in
// turn, one barrier a block rather than two, cost the f16 kernel 22 %; f32's would not fit 32 KB.)
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
// Invocation i multiplies tile rows i % 16 + 16 k and tokens i / 16 + 8 j (k < 8, j < 8): the rows a
// quarter of a subgroup loads lie in different banks (a tile row is 9 vec4s, one of them padding), the
// tokens are two a subgroup (broadcast), and with GLU each invocation holds a gate row's sums and its up row's.
// Its sums a (tokens i / 16 + 16 j) and b (8 tokens on) are put_sums's two sets.

var<workgroup> tile_w: array<vec4<f32>, 1152>;  // TILE_ROWS x PITCH
var<workgroup> tile_x: array<vec4<f32>, 576>;  // TILE_TOKENS x PITCH

// Column vec4 k of tokens t, t + 16, t + 32, t + 48, as a matrix whose column c is x's column 4 k + c of them.
fn tokens4(t: u32, k: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(tile_x[t * PITCH + k], tile_x[(t + 16u) * PITCH + k],
                                 tile_x[(t + 32u) * PITCH + k], tile_x[(t + 48u) * PITCH + k]));
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
    // What this invocation stores each block: tile row lid, and vec4 lid % 8 of tokens lid / 8 + 16 i (i < 4)
    // (tokens past the batch repeat its last one: valid memory, results never stored)
    let w_row = tile_row(r0, lid);
    let w_at = lid * PITCH;
    let xt = lid / 8u;
    let x_base = (t0 + xt) * (N_IN / 4u) + lid % 8u;
    let x_last = (params.n_tokens - 1u) * (N_IN / 4u) + lid % 8u;
    let x_at = xt * PITCH + lid % 8u;
    let tr = lid % 16u;
    let tc = lid / 16u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    var f = fetch(w_row, 0u, x_base, x_last);
    for (var b = 0u; b < N_IN / 32u; b++) {
        let p = f.p;
        tile_w[w_at] = p.d.x * tile_bytes(p.lo.x) + p.m.x;
        tile_w[w_at + 1u] = p.d.x * tile_bytes(p.lo.y) + p.m.x;
        tile_w[w_at + 2u] = p.d.x * tile_bytes(p.lo.z) + p.m.x;
        tile_w[w_at + 3u] = p.d.x * tile_bytes(p.lo.w) + p.m.x;
        tile_w[w_at + 4u] = p.d.y * tile_bytes(p.hi.x) + p.m.y;
        tile_w[w_at + 5u] = p.d.y * tile_bytes(p.hi.y) + p.m.y;
        tile_w[w_at + 6u] = p.d.y * tile_bytes(p.hi.z) + p.m.y;
        tile_w[w_at + 7u] = p.d.y * tile_bytes(p.hi.w) + p.m.y;
        tile_x[x_at] = f.x0;
        tile_x[x_at + 16u * PITCH] = f.x1;
        tile_x[x_at + 32u * PITCH] = f.x2;
        tile_x[x_at + 48u * PITCH] = f.x3;
        workgroupBarrier();
        if (b + 1u < N_IN / 32u) { f = fetch(w_row, b + 1u, x_base, x_last); }
        for (var k = 0u; k < 8u; k += 2u) {  // two vec4s of columns at a time: eight products a sum
            let xa0 = tokens4(tc, k);
            let xa1 = tokens4(tc, k + 1u);
            let xb0 = tokens4(tc + 8u, k);
            let xb1 = tokens4(tc + 8u, k + 1u);
            var w0 = tile_w[tr * PITCH + k];
            var w1 = tile_w[tr * PITCH + k + 1u];
            a0 += mad8(xa0, xa1, w0, w1); b0 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[(tr + 16u) * PITCH + k]; w1 = tile_w[(tr + 16u) * PITCH + k + 1u];
            a1 += mad8(xa0, xa1, w0, w1); b1 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[(tr + 32u) * PITCH + k]; w1 = tile_w[(tr + 32u) * PITCH + k + 1u];
            a2 += mad8(xa0, xa1, w0, w1); b2 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[(tr + 48u) * PITCH + k]; w1 = tile_w[(tr + 48u) * PITCH + k + 1u];
            a3 += mad8(xa0, xa1, w0, w1); b3 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[(tr + 64u) * PITCH + k]; w1 = tile_w[(tr + 64u) * PITCH + k + 1u];
            a4 += mad8(xa0, xa1, w0, w1); b4 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[(tr + 80u) * PITCH + k]; w1 = tile_w[(tr + 80u) * PITCH + k + 1u];
            a5 += mad8(xa0, xa1, w0, w1); b5 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[(tr + 96u) * PITCH + k]; w1 = tile_w[(tr + 96u) * PITCH + k + 1u];
            a6 += mad8(xa0, xa1, w0, w1); b6 += mad8(xb0, xb1, w0, w1);
            w0 = tile_w[(tr + 112u) * PITCH + k]; w1 = tile_w[(tr + 112u) * PITCH + k + 1u];
            a7 += mad8(xa0, xa1, w0, w1); b7 += mad8(xb0, xb1, w0, w1);
        }
        workgroupBarrier();
    }
    put_sums(r0 + tr, t0 + tc, a0, a1, a2, a3, a4, a5, a6, a7);
    put_sums(r0 + tr, t0 + tc + 8u, b0, b1, b2, b3, b4, b5, b6, b7);
}
