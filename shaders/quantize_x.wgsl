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
//            without NORM), 3 xq_out [T, N_IN / 32, 2 PLANES] vec4<u32>, placed as x_blocks.wgsl says
//            (SPREAD): plane p's words of elements 0..15 are word 2p, of 16..31 word 2p + 1,
//            4 xs_out [T, N_IN / 32] vec4<f32>: (d, sum of elements 0..15, sum of 16..31, 0) of x itself (the
//            weights' offsets m multiply these); with one plane (d of elements 0..15, their sum, the sum of
//            16..31, d of 16..31), the sums of x as quantised (x_quantize.wgsl says why)
// Formula:   NORM: x = x * norm_w / sqrt(mean(x^2) + EPS) first (the RMSNorm before a product, folded:
//            each workgroup sums the squares of the whole row itself, a few KB from cache)
// Overrides: N_IN (a multiple of 32), PLANES (2 or 3; 1 for matmul_tiled_dot4.wgsl's prompts), NORM, EPS,
//            SPREAD (x_blocks.wgsl, appended after x_quantize.wgsl, which does the quantising: quantize4)
// Grid:      (ceil(N_IN / 4 / WG), 1, T): an invocation 4 elements, 8 a block, which meet in workgroup
//            memory for the block's largest |x| and sums. (An invocation a block, peeling 32 elements'
//            planes in a loop, took 10-12 us for one token on an H200, three times a dependent dispatch.)

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> norm_w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> xq_out: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> xs_out: array<vec4<f32>>;

override N_IN: u32;
override NORM: bool = false;
override EPS: f32 = 1e-5;

override PLANES: u32 = 3u;

const WG = 256u;

var<workgroup> partial: array<f32, WG>;  // one sum of squares a subgroup (subgroups >= 1 lane)

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
    quantize4(N_IN / 32u, t, e, v, lid, inside);
}
