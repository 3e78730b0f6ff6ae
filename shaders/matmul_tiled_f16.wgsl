enable f16;

// matmul_tiled.wgsl's product with f16 tiles and multiply-adds, for adapters with shader-f16: each block's
// weights and x are f16 in workgroup memory (half the bytes to load), a block's 32 products are summed in f16
// (two multiply-adds an instruction on GPUs that pair them) and every block's sums are added into f32. So x and
// the weights keep f16's 11 bits, the sums f32's range: a logit moves ~1e-3 of its size, as llama.cpp's f16
// products move it. |x| above f16's 65504 is held at it (tiles.wgsl's f16_range), and a block's f16 sums of 32
// such products can still overflow: only where x is far beyond what a norm leaves (the matrix tiles sum in f32).
//
// Bindings, formula, overrides, grid and which rows and tokens an invocation owns: matmul_tiled.wgsl's
// (tiles.wgsl and its libraries appended).
// Tile x is [column][token]: a vec4 holds one column of an invocation's four tokens (t, t + 16, t + 32, t + 48),
// so each product is x's matrix times a weight vec4 (four multiply-adds of a token vec4 by one weight, what
// pairs of f16 lanes do with one broadcast operand); a column is X_PITCH vec4s (one of padding, so the stores of
// eight columns a quarter subgroup makes fall in different banks).

const X_PITCH = 17u;

// a + xs w as a chain of multiply-adds (xs's columns: one column of x for four tokens): written out, since the
// product and then its sum cost an add more for every four multiply-adds (+13 % at 8B). A block's sums start at
// zero, so the chain stays 32 products long.
fn mad4h(a: vec4<f16>, xs: mat4x4<f16>, w: vec4<f16>) -> vec4<f16> {
    return fma(xs[3], vec4<f16>(w.w), fma(xs[2], vec4<f16>(w.z), fma(xs[1], vec4<f16>(w.y),
               fma(xs[0], vec4<f16>(w.x), a))));
}

var<workgroup> tile_w: array<vec4<f16>, 1152>;  // TILE_ROWS x PITCH
var<workgroup> tile_xt: array<vec4<f16>, 544>;  // 32 columns x X_PITCH

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
    // What this invocation stores each block: tile row lid, and columns 4 (lid % 8) .. + 3 of tokens
    // lid / 8 + 16 i (i < 4): vec4 lid / 8 of each of those columns
    let w_row = tile_row(r0, lid);
    let w_at = lid * PITCH;
    let xt = lid / 8u;
    let x_base = (t0 + xt) * (N_IN / 4u) + lid % 8u;
    let x_last = (params.n_tokens - 1u) * (N_IN / 4u) + lid % 8u;
    let x_at = 4u * (lid % 8u) * X_PITCH + xt;
    let tr = lid % 16u;
    let tc = lid / 16u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    var f = fetch(w_row, 0u, x_base, x_last, 16u);
    for (var b = 0u; b < N_IN / 32u; b++) {
        let p = f.p;
        tile_w[w_at] = vec4<f16>(p.d.x * tile_bytes(p.lo.x) + p.m.x);
        tile_w[w_at + 1u] = vec4<f16>(p.d.x * tile_bytes(p.lo.y) + p.m.x);
        tile_w[w_at + 2u] = vec4<f16>(p.d.x * tile_bytes(p.lo.z) + p.m.x);
        tile_w[w_at + 3u] = vec4<f16>(p.d.x * tile_bytes(p.lo.w) + p.m.x);
        tile_w[w_at + 4u] = vec4<f16>(p.d.y * tile_bytes(p.hi.x) + p.m.y);
        tile_w[w_at + 5u] = vec4<f16>(p.d.y * tile_bytes(p.hi.y) + p.m.y);
        tile_w[w_at + 6u] = vec4<f16>(p.d.y * tile_bytes(p.hi.z) + p.m.y);
        tile_w[w_at + 7u] = vec4<f16>(p.d.y * tile_bytes(p.hi.w) + p.m.y);
        let xs = transpose(mat4x4<f16>(mat4x4<f32>(f16_range(f.x0), f16_range(f.x1), f16_range(f.x2),
                                                   f16_range(f.x3))));  // [column] = its 4 tokens
        tile_xt[x_at] = xs[0];
        tile_xt[x_at + X_PITCH] = xs[1];
        tile_xt[x_at + 2u * X_PITCH] = xs[2];
        tile_xt[x_at + 3u * X_PITCH] = xs[3];
        workgroupBarrier();
        if (b + 1u < N_IN / 32u) { f = fetch(w_row, b + 1u, x_base, x_last, 16u); }
        var s0 = vec4<f16>(0.0); var s1 = vec4<f16>(0.0); var s2 = vec4<f16>(0.0); var s3 = vec4<f16>(0.0);
        var s4 = vec4<f16>(0.0); var s5 = vec4<f16>(0.0); var s6 = vec4<f16>(0.0); var s7 = vec4<f16>(0.0);
        var u0 = vec4<f16>(0.0); var u1 = vec4<f16>(0.0); var u2 = vec4<f16>(0.0); var u3 = vec4<f16>(0.0);
        var u4 = vec4<f16>(0.0); var u5 = vec4<f16>(0.0); var u6 = vec4<f16>(0.0); var u7 = vec4<f16>(0.0);
        for (var k = 0u; k < 8u; k++) {
            let c = 4u * k * X_PITCH + tc;
            let xa = mat4x4<f16>(tile_xt[c], tile_xt[c + X_PITCH], tile_xt[c + 2u * X_PITCH],
                                 tile_xt[c + 3u * X_PITCH]);
            let xb = mat4x4<f16>(tile_xt[c + 8u], tile_xt[c + X_PITCH + 8u], tile_xt[c + 2u * X_PITCH + 8u],
                                 tile_xt[c + 3u * X_PITCH + 8u]);
            var w = tile_w[tr * PITCH + k]; s0 = mad4h(s0, xa, w); u0 = mad4h(u0, xb, w);
            w = tile_w[(tr + 16u) * PITCH + k]; s1 = mad4h(s1, xa, w); u1 = mad4h(u1, xb, w);
            w = tile_w[(tr + 32u) * PITCH + k]; s2 = mad4h(s2, xa, w); u2 = mad4h(u2, xb, w);
            w = tile_w[(tr + 48u) * PITCH + k]; s3 = mad4h(s3, xa, w); u3 = mad4h(u3, xb, w);
            w = tile_w[(tr + 64u) * PITCH + k]; s4 = mad4h(s4, xa, w); u4 = mad4h(u4, xb, w);
            w = tile_w[(tr + 80u) * PITCH + k]; s5 = mad4h(s5, xa, w); u5 = mad4h(u5, xb, w);
            w = tile_w[(tr + 96u) * PITCH + k]; s6 = mad4h(s6, xa, w); u6 = mad4h(u6, xb, w);
            w = tile_w[(tr + 112u) * PITCH + k]; s7 = mad4h(s7, xa, w); u7 = mad4h(u7, xb, w);
        }
        a0 += vec4<f32>(s0); a1 += vec4<f32>(s1); a2 += vec4<f32>(s2); a3 += vec4<f32>(s3);
        a4 += vec4<f32>(s4); a5 += vec4<f32>(s5); a6 += vec4<f32>(s6); a7 += vec4<f32>(s7);
        b0 += vec4<f32>(u0); b1 += vec4<f32>(u1); b2 += vec4<f32>(u2); b3 += vec4<f32>(u3);
        b4 += vec4<f32>(u4); b5 += vec4<f32>(u5); b6 += vec4<f32>(u6); b7 += vec4<f32>(u7);
        workgroupBarrier();
    }
    put_sums(r0 + tr, t0 + tc, 16u, a0, a1, a2, a3, a4, a5, a6, a7);
    put_sums(r0 + tr, t0 + tc + 8u, 16u, b0, b1, b2, b3, b4, b5, b6, b7);
}
