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
// Entry points: matvec_lanes, matvec_rope_lanes, matmul_lanes: matmul.wgsl's matvec, matvec_rope and
// matmul (whose *_at functions keep every invocation in the loop, so that all lanes take part). Its plain
// entry points are not for this module: they leave `lane` at 0.

override X_LANES: u32 = 8u;
var<private> lane: u32;

fn x_lane_vec(t: u32, j: u32) -> vec4<f32> {
    let v = x[t * (N_IN / 4u) + min(j, N_IN / 4u - 1u)];
    if (N_IN % 32u != 0u) { return select(vec4<f32>(0.0), v, j < N_IN / 4u); }
    return v;
}

fn x_load(t: u32, b: u32) -> array<vec4<f32>, 8> {
    let j = b * 8u + lane % X_LANES;
    let v = x_lane_vec(t, j);
    if (X_LANES == 4u) {
        let w = x_lane_vec(t, j + 4u);
        return array<vec4<f32>, 8>(
            subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
            subgroupBroadcast(w, 0u), subgroupBroadcast(w, 1u), subgroupBroadcast(w, 2u), subgroupBroadcast(w, 3u));
    }
    return array<vec4<f32>, 8>(
        subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
        subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
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
