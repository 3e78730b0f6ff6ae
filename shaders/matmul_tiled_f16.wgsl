enable f16;

// matmul_tiled.wgsl's product with f16 tiles and multiply-adds, for adapters with shader-f16: each block's
// weights and x are f16 in workgroup memory (half the bytes to load), a block's 32 products are summed in f16
// (two multiply-adds an instruction on GPUs that pair them) and every block's sums are added into f32. So x and
// the weights keep f16's 11 bits, the sums f32's range: a logit moves ~1e-3 of its size, as llama.cpp's f16
// products move it. |x| above f16's 65504 would become infinite: activations after a norm stay far below.
//
// Bindings, formula, overrides, grid and which rows and tokens an invocation owns: matmul_tiled.wgsl's
// (tiles.wgsl and its libraries appended).
// Tile x is [column][token]: a vec4 holds one column of an invocation's four tokens (t, t + 16, t + 32, t + 48),
// so each product is x's matrix times a weight vec4 (four multiply-adds of a token vec4 by one weight, what
// pairs of f16 lanes do with one broadcast operand); a column is X_PITCH vec4s (one of padding, so the stores of
// eight columns a quarter subgroup makes fall in different banks).

const X_PITCH = 17u;

var<workgroup> tile_w: array<vec4<f16>, 1152>;  // TILE_ROWS x PITCH
var<workgroup> tile_xt: array<vec4<f16>, 544>;  // 32 columns x X_PITCH

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
    // What this invocation stores each block: half (hi) of tile row lid % 128, and columns 4 (lid % 8) .. + 3
    // of tokens xt0 = lid / 8 and xt0 + 32 (token t is component t / 16 of vec4 t % 16 of a column)
    let row = lid % TILE_ROWS;
    let hi = lid >= TILE_ROWS;
    let w_row = tile_row(r0, row);
    let w_at = row * PITCH + select(0u, 4u, hi);
    let xt0 = lid / 8u;
    let x_base0 = min(t0 + xt0, nt - 1u) * (N_IN / 4u) + lid % 8u;
    let x_base1 = min(t0 + xt0 + 32u, nt - 1u) * (N_IN / 4u) + lid % 8u;
    let x_at = 4u * (lid % 8u) * X_PITCH + xt0 % 16u;
    let x_j = xt0 / 16u;
    let tr = lid % 16u;
    let tc = lid / 16u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var f = fetch(w_row, hi, 0u, x_base0, x_base1);
    for (var b = 0u; b < N_IN / 32u; b++) {
        tile_w[w_at] = vec4<f16>(f.d * tile_bytes(f.q.x) + f.m);
        tile_w[w_at + 1u] = vec4<f16>(f.d * tile_bytes(f.q.y) + f.m);
        tile_w[w_at + 2u] = vec4<f16>(f.d * tile_bytes(f.q.z) + f.m);
        tile_w[w_at + 3u] = vec4<f16>(f.d * tile_bytes(f.q.w) + f.m);
        let x0 = vec4<f16>(f.x0);
        let x1 = vec4<f16>(f.x1);
        tile_xt[x_at][x_j] = x0.x;
        tile_xt[x_at + X_PITCH][x_j] = x0.y;
        tile_xt[x_at + 2u * X_PITCH][x_j] = x0.z;
        tile_xt[x_at + 3u * X_PITCH][x_j] = x0.w;
        tile_xt[x_at][x_j + 2u] = x1.x;
        tile_xt[x_at + X_PITCH][x_j + 2u] = x1.y;
        tile_xt[x_at + 2u * X_PITCH][x_j + 2u] = x1.z;
        tile_xt[x_at + 3u * X_PITCH][x_j + 2u] = x1.w;
        workgroupBarrier();
        if (b + 1u < N_IN / 32u) { f = fetch(w_row, hi, b + 1u, x_base0, x_base1); }
        var s0 = vec4<f16>(0.0); var s1 = vec4<f16>(0.0); var s2 = vec4<f16>(0.0); var s3 = vec4<f16>(0.0);
        var s4 = vec4<f16>(0.0); var s5 = vec4<f16>(0.0); var s6 = vec4<f16>(0.0); var s7 = vec4<f16>(0.0);
        for (var k = 0u; k < 8u; k++) {
            let c = 4u * k * X_PITCH + tc;
            let xs = mat4x4<f16>(tile_xt[c], tile_xt[c + X_PITCH], tile_xt[c + 2u * X_PITCH],
                                 tile_xt[c + 3u * X_PITCH]);
            s0 += xs * tile_w[tr * PITCH + k];
            s1 += xs * tile_w[(tr + 16u) * PITCH + k];
            s2 += xs * tile_w[(tr + 32u) * PITCH + k];
            s3 += xs * tile_w[(tr + 48u) * PITCH + k];
            s4 += xs * tile_w[(tr + 64u) * PITCH + k];
            s5 += xs * tile_w[(tr + 80u) * PITCH + k];
            s6 += xs * tile_w[(tr + 96u) * PITCH + k];
            s7 += xs * tile_w[(tr + 112u) * PITCH + k];
        }
        a0 += vec4<f32>(s0); a1 += vec4<f32>(s1); a2 += vec4<f32>(s2); a3 += vec4<f32>(s3);
        a4 += vec4<f32>(s4); a5 += vec4<f32>(s5); a6 += vec4<f32>(s6); a7 += vec4<f32>(s7);
        workgroupBarrier();
    }
    put_sums(r0 + tr, t0 + tc, a0, a1, a2, a3, a4, a5, a6, a7);
}
