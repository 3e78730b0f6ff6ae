// Rotary position embedding, in place on the query or key rows.
//
// Bindings:  0 params: StepParams (positions.wgsl: row t has position token_pos(t))
//            1 x: [T, ROW] f32 whose first N_HEADS * HEAD_DIM columns are rotated in place (the model
//              rotates q's and k's heads together: they lead each row of its [T, q | k | v] buffer)
//            2 inv_freq: [N_ROT / 2] f32, freq_scale * theta^(-2i / N_ROT) (made in float64 on the host)
//            3 factors: [N_ROT / 2] f32, llama3's rope_freqs (ones when the model has none)
// Formula:   angle = token_pos(t) * inv_freq[i] / factors[i]; the pair (a, b) of rotation i becomes
//            (a cos - b sin, a sin + b cos) * MSCALE (LongRoPE's attention factor; 1 elsewhere). Pairs are (2i, 2i+1), or (i, i + N_ROT/2) when NEOX;
//            dims N_ROT.. of each head stay as they are.
// Overrides: N_HEADS, HEAD_DIM, N_ROT, NEOX, ROW (0: N_HEADS * HEAD_DIM), WG, MSCALE
// Grid:      (ceil(N_ROT / 2 / WG), T, N_HEADS): one invocation per rotation i of a token's head. (One
//            invocation looping over the heads took 16 us for Llama 3 8B's 40 on an H200: each head's
//            loads waited for the stores before them, which the compiler cannot move past.)

@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read> factors: array<f32>;

override N_HEADS: u32;
override HEAD_DIM: u32;
override N_ROT: u32;
override NEOX: bool;
override ROW: u32 = 0u;
override WG: u32 = 64u;
override MSCALE: f32 = 1.0;

// (sin a, cos a) to ~1e-7 for any a >= 0 a position can make. Built-in sin and cos may be far
// worse: Vulkan allows 2^-11 absolute error in [-pi, pi] and nothing outside it, and SwiftShader
// (Chromium's CPU WebGPU) was off by 1.5e-4. So: a = q * pi/2 + y with |y| <= pi/4 (pi/2 split in
// two, 1.5703125 exactly + the rest, so q * 1.5703125 is exact), then Taylor series on y.
fn sin_cos(a: f32) -> vec2<f32> {
    let q = round(a * 0.6366197723675814);
    let y = (a - q * 1.5703125) - q * 4.8382679489661923e-4;
    let y2 = y * y;
    let s = y * (1.0 - y2 / 6.0 * (1.0 - y2 / 20.0 * (1.0 - y2 / 42.0 * (1.0 - y2 / 72.0))));
    let c = 1.0 - y2 / 2.0 * (1.0 - y2 / 12.0 * (1.0 - y2 / 30.0 * (1.0 - y2 / 56.0)));
    switch u32(i32(q) & 3) {  // the quadrant
        case 0u: { return vec2<f32>(s, c); }
        case 1u: { return vec2<f32>(c, -s); }
        case 2u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = N_ROT / 2u;
    let i = gid.x;
    let t = gid.y;
    if (i >= half || t >= params.n_tokens) { return; }
    let sc = sin_cos(f32(token_pos(t)) * (inv_freq[i] / factors[i]));
    let s = sc.x * MSCALE;
    let c = sc.y * MSCALE;
    let base = t * select(ROW, N_HEADS * HEAD_DIM, ROW == 0u) + gid.z * HEAD_DIM;
    let i0 = base + select(2u * i, i, NEOX);
    let i1 = base + select(2u * i + 1u, i + half, NEOX);
    let a = x[i0];
    let b = x[i1];
    x[i0] = a * c - b * s;
    x[i1] = a * s + b * c;
}
