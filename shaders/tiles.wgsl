// What matmul_tiled.wgsl (f32 tiles) and matmul_tiled_f16.wgsl (f16 tiles) share: the tile's shape, which
// weight row each tile row holds, what an invocation fetches of a block, and the stores of its sums.
// A workgroup of 128 takes TILE_ROWS weight rows x TILE_TOKENS tokens (wide f32 tiles twice the tokens with
// twice the invocations), a block of 32 columns a step; with GLU the tile's rows 0..63 are the gate rows of
// outputs r0.. and rows 64..127 their up rows.

const TILE_ROWS = 128u;
const TILE_TOKENS = 64u;
const PITCH = 9u;  // vec4s a tile row of weights: a block's 8 and one of padding

// The first output row of workgroup wid's tile (a GLU tile holds 64 outputs: their gate and up rows), among
// nwg workgroups whose (x, y) flatten as wid.y nwg.x + wid.x.
fn tile_first_output(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * select(TILE_ROWS, TILE_ROWS / 2u, GLU);
}

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

// x's values as f16 holds them at most (the f16 and matrix tiles' x): beyond its 65504, as large as it goes rather
// than infinite, whose products would poison every sum with infinities and NaN. An input past that range is one
// no norm has bounded (GLU's output, down's x, in models with outlier channels).
const F16_MAX = 65504.0;

fn f16_range(v: vec4<f32>) -> vec4<f32> { return clamp(v, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)); }

// What an invocation fetches of one block: a tile row's integers (its scales and offsets) and four vec4s of x,
// those of tokens x_base + apart i (x_base in vec4s, a token N_IN / 4 vec4s; apart 16, or 32 in wide tiles).
struct Fetched { p: IntParts, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32> }

fn fetch(w_row: u32, b: u32, x_base: u32, x_last: u32, apart: u32) -> Fetched {
    let o = 8u * b;
    let step = apart * (N_IN / 4u);
    return Fetched(int_parts(w_row, b), x[min(x_base, x_last) + o], x[min(x_base + step, x_last) + o],
                   x[min(x_base + 2u * step, x_last) + o], x[min(x_base + 3u * step, x_last) + o]);
}

// An invocation's sums into y: rows r + 16 k (k < 8) of tokens t + apart j (j < 4), a vec4 a row; with GLU the
// first four are the gate rows of outputs r + 16 k, the last four their up rows.
fn put_sums(r: u32, t: u32, apart: u32, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
            a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>) {
    if (GLU) {
        put_tokens(r, t, apart, glu4(a0, a4));
        put_tokens(r + 16u, t, apart, glu4(a1, a5));
        put_tokens(r + 32u, t, apart, glu4(a2, a6));
        put_tokens(r + 48u, t, apart, glu4(a3, a7));
        return;
    }
    put_tokens(r, t, apart, a0);
    put_tokens(r + 16u, t, apart, a1);
    put_tokens(r + 32u, t, apart, a2);
    put_tokens(r + 48u, t, apart, a3);
    put_tokens(r + 64u, t, apart, a4);
    put_tokens(r + 80u, t, apart, a5);
    put_tokens(r + 96u, t, apart, a6);
    put_tokens(r + 112u, t, apart, a7);
}

// Output row r of tokens t + apart j, j < 4 (those of them in the batch).
fn put_tokens(r: u32, t: u32, apart: u32, v: vec4<f32>) {
    if (r >= N_OUT) { return; }
    for (var j = 0u; j < 4u; j++) {
        let tj = t + apart * j;
        if (tj < params.n_tokens) { put(tj, r, v[j]); }
    }
}
