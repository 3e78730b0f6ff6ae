enable subgroups;
diagnostic(off, subgroup_uniformity);

// Activations as integers, for the packed dot products of matvec_dot4.wgsl. Each block of 32 is scaled
// to integers v, |v| <= VMAX (d = the block's largest |x| / VMAX), written as PLANES signed bytes,
// v = 256^2 p0 + 256 p1 + p2 (three planes; VMAX = 8355711 leaves p0 a signed byte), so a word of four
// weights meets a word of x in one dot4I8Packed a plane. Why not llama.cpp's one 8-bit plane: real
// models keep a few outlier channels hundreds of times the others, and a block holding one keeps only
// the bits left over for the rest; 23 bits leave products at f32's own rounding, so greedy tokens still
// follow the float64 reference. The extra planes cost the product kernel little: what it saves is
// converting weights to f32, not arithmetic on x.
// Bindings:  0 params, 1 x [T, N_IN] f32 (with NORM the residual stream), 2 norm_w [N_IN] (x again
//            without NORM), 3 xq [T, N_IN / 32, 2 PLANES] vec4<u32>, placed as x_blocks.wgsl says
//            (SPREAD): plane p's words of elements 0..15 are word 2p, of 16..31 word 2p + 1,
//            4 xs [T, N_IN / 32] vec4<f32>: (d, sum of elements 0..15, sum of 16..31, 0) of x itself (the
//            weights' offsets m multiply these)
// Formula:   NORM: x = x * norm_w / sqrt(mean(x^2) + EPS) first (the RMSNorm before a product, folded:
//            each workgroup sums the squares of the whole row itself, a few KB from cache)
// Overrides: N_IN (a multiple of 32), PLANES (2 or 3), NORM, EPS, SPREAD (x_blocks.wgsl, appended)
// Grid:      (ceil(N_IN / 4 / WG), 1, T): an invocation 4 elements, 8 a block, which meet in workgroup
//            memory for the block's largest |x| and sums. (An invocation a block, peeling 32 elements'
//            planes in a loop, took 10-12 us for one token on an H200, three times a dependent dispatch.)

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> norm_w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> xs: array<vec4<f32>>;

override N_IN: u32;
override NORM: bool = false;
override EPS: f32 = 1e-5;

override PLANES: u32 = 3u;

const WG = 256u;

// VMAX: the largest |v| whose top plane is a signed byte (127 (256^PLANES - 1) / 255).
fn vmax() -> f32 { return select(32639.0, 8355711.0, PLANES == 3u); }

var<workgroup> partial: array<f32, WG>;  // one sum of squares a subgroup (subgroups >= 1 lane)
var<workgroup> largest: array<f32, WG>;  // each invocation's largest |x| of its 4
var<workgroup> sums: array<f32, WG>;  // and their sum

@compute @workgroup_size(WG)
fn quantize_x(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let t = wid.z;
    if (t >= params.n_tokens) { return; }  // the same for the whole workgroup: barriers stay uniform
    let row = t * (N_IN / 4u);
    var scale = 1.0;
    if (NORM) {
        var ss = 0.0;
        for (var j = lid; j < N_IN / 4u; j += WG) { ss += dot(x[row + j], x[row + j]); }
        ss = subgroupAdd(ss);
        if (lane == 0u) { partial[lid / sg] = ss; }
        workgroupBarrier();
        var total = 0.0;
        for (var i = 0u; i < (WG + sg - 1u) / sg; i++) { total += partial[i]; }
        scale = inverseSqrt(total / f32(N_IN) + EPS);
    }
    let e = wid.x * WG + lid;  // this invocation's 4 elements: e % 8 of block e / 8
    let inside = e < N_IN / 4u;
    var v = vec4<f32>(0.0);
    if (inside) {
        v = x[row + e];
        if (NORM) { v *= scale * norm_w[e]; }
    }
    let a = abs(v);
    largest[lid] = max(max(a.x, a.y), max(a.z, a.w));
    sums[lid] = dot(v, vec4<f32>(1.0));
    workgroupBarrier();
    let first = lid & ~7u;  // the block's first invocation (WG is a multiple of 8)
    var m = 0.0;
    for (var i = 0u; i < 8u; i++) { m = max(m, largest[first + i]); }
    if (!inside) { return; }
    let b = e / 8u;
    let part = e % 8u;
    let inv = select(0.0, vmax() / m, m > 0.0);
    // (clamped: v * inv may round past the largest by f32's last bit)
    var q = clamp(vec4<i32>(round(v * inv)), vec4<i32>(-i32(vmax())), vec4<i32>(i32(vmax())));
    let half = part / 4u;
    for (var p = 0u; p < PLANES - 1u; p++) {  // peel off the low byte, signed: q = 256 h + byte
        let h = (q + vec4<i32>(128)) >> vec4<u32>(8u);
        xq[xq_index(t, 2u * (PLANES - 1u - p) + half, b)][part % 4u] = pack_bytes(q - h * 256);
        q = h;
    }
    xq[xq_index(t, half, b)][part % 4u] = pack_bytes(q);
    if (part == 0u) {
        let s0 = (sums[first] + sums[first + 1u]) + (sums[first + 2u] + sums[first + 3u]);
        let s1 = (sums[first + 4u] + sums[first + 5u]) + (sums[first + 6u] + sums[first + 7u]);
        xs[t * (N_IN / 32u) + b] = vec4<f32>(m / vmax(), s0, s1, 0.0);
    }
}

// Four signed bytes (-128..127) in one word, the first in the low byte.
fn pack_bytes(v: vec4<i32>) -> u32 {
    let u = bitcast<vec4<u32>>(v) & vec4<u32>(0xFFu);
    return u.x | (u.y << 8u) | (u.z << 16u) | (u.w << 24u);
}
