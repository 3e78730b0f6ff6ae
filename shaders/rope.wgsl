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

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = N_ROT / 2u;
    let i = gid.x;
    let t = gid.y;
    if (i >= half || t >= params.n_tokens) { return; }
    let sc = rotation(t, i);
    let base = t * select(ROW, N_HEADS * HEAD_DIM, ROW == 0u) + gid.z * HEAD_DIM;
    let i0 = base + select(2u * i, i, NEOX);
    let i1 = base + select(2u * i + 1u, i + half, NEOX);
    let turned = rotate(x[i0], x[i1], sc);
    x[i0] = turned.x;
    x[i1] = turned.y;
}
