enable subgroups;
diagnostic(off, subgroup_uniformity);

// matmul.wgsl's scalar products with each x block loaded once for the lanes of a subgroup: the scalar
// variant's products on adapters with subgroups of 4 or more lanes. kernels.py appends matmul.wgsl and its
// libraries, whose bindings, overrides and helpers these are (this file takes x_direct.wgsl's place).
// Why: lavapipe loads from a buffer with one load for all lanes only when the address is the same for
// every lane and the load lies outside all control flow; a load in the block loop lies in it, so lavapipe
// loads lane by lane (it stores the vector, inserts one lane's value, reloads it: stalls that made x's
// loads about half of a product's time, perf and gdb on its JIT code, NOTES.md session 24). Every lane of
// a scalar product loads the same x block, so lane l loads one of its 8 vec4s (two with X_LANES 4) and
// subgroupBroadcast hands them round: one load instruction where there were eight.
// Overrides: X_LANES  8 or 4, at most the adapter's smallest subgroup (a larger subgroup is fine: lanes
//                     l and l + X_LANES load the same vec4), and N_IN as matmul.wgsl's
//            NORM, EPS  one token's products (matvec_lanes, matvec_rope_lanes) apply the RMSNorm before them:
//                     x (binding 2) is the residual stream, binding 4 the norm's weights (x again without NORM),
//                     y[r] = s * sum_k W[r, k] * (x[k] * norm_w[k]), s = 1 / sqrt(mean_k(x[k]^2) + EPS): a
//                     dispatch fewer a norm, the loads it takes shared as x's are
// Entry points: matvec_lanes, matvec_rope_lanes, matmul_lanes: matmul.wgsl's matvec, matvec_rope and
// matmul (whose *_at functions keep every invocation in the loop, so that all lanes take part). Its plain
// entry points are not for this module: they leave `lane` at 0.

override X_LANES: u32 = 8u;
override NORM: bool = false;
override EPS: f32 = 0.0;
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
var<private> lane: u32;

fn x_lane_vec(t: u32, j: u32) -> vec4<f32> {
    let v = x[t * (N_IN / 4u) + min(j, N_IN / 4u - 1u)];
    if (N_IN % 32u != 0u) { return select(vec4<f32>(0.0), v, j < N_IN / 4u); }
    return v;
}

// The 8 vec4s of a block from the lanes that loaded them: v from lanes 0..7, or (X_LANES 4) v and then w
// from lanes 0..3.
fn shared8(v: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
        subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}

fn shared4(v: vec4<f32>, w: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
        subgroupBroadcast(w, 0u), subgroupBroadcast(w, 1u), subgroupBroadcast(w, 2u), subgroupBroadcast(w, 3u));
}

// Token t's block b of x as it was stored.
fn x_stored(t: u32, b: u32) -> array<vec4<f32>, 8> {
    let j = b * 8u + lane % X_LANES;
    if (X_LANES == 4u) { return shared4(x_lane_vec(t, j), x_lane_vec(t, j + 4u)); }
    return shared8(x_lane_vec(t, j));
}

// Token t's block b of x as the products take it: times the norm's weights with NORM (x_scale gives the rest
// of the norm, applied to the sums).
fn x_load(t: u32, b: u32) -> array<vec4<f32>, 8> {
    var xs = x_stored(t, b);
    if (NORM) {
        let j = b * 8u + lane % X_LANES;
        let last = N_IN / 4u - 1u;
        var nw: array<vec4<f32>, 8>;
        if (X_LANES == 4u) {
            nw = shared4(norm_w[min(j, last)], norm_w[min(j + 4u, last)]);
        } else {
            nw = shared8(norm_w[min(j, last)]);
        }
        for (var i = 0u; i < 8u; i++) { xs[i] *= nw[i]; }
    }
    return xs;
}

// What the sums of token t's products are multiplied by: 1 / RMS of its x with NORM (every lane finds it
// from the shared blocks), else 1.
fn x_scale(t: u32) -> f32 {
    if (!NORM) { return 1.0; }
    var ss = vec4<f32>(0.0);
    for (var b = 0u; b < (N_IN + 31u) / 32u; b++) {
        let xs = x_stored(t, b);
        for (var i = 0u; i < 8u; i++) { ss += xs[i] * xs[i]; }
    }
    return inverseSqrt(dot(ss, vec4<f32>(1.0)) / f32(N_IN) + EPS);
}

@compute @workgroup_size(WG)
fn matvec_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sid: u32,
) {
    lane = sid;
    matvec_at(matvec_row(wid, nwg, lid));
}

@compute @workgroup_size(WG)
fn matvec_rope_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sid: u32,
) {
    lane = sid;
    matvec_rope_at(matvec_row(wid, nwg, lid));
}

@compute @workgroup_size(WG)
fn matmul_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sid: u32,
) {
    lane = sid;
    matmul_at(wid, nwg, lid);
}
