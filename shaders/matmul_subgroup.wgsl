enable subgroups;
diagnostic(off, subgroup_uniformity);

// Matrix products, the "subgroup" variant for GPUs: a subgroup per row, lanes split its blocks.
//
// An extension of matmul.wgsl: kernels.py appends matmul.wgsl and quant.wgsl to this file, so the
// bindings, overrides and helpers (x_block, weights, row_tile, x_tile, store_tile) are theirs.
// Bindings:  0 params, 1 w [N_OUT, N_IN] GGUF bytes, 2 x [T, N_IN] f32, 3 y [T, N_OUT] f32
// Formula:   y[t, r] = sum_k W[r, k] * x[t, k]; lane l of a row's subgroup takes blocks l, l + sg, ...
//            and subgroupAdd sums the lanes (no workgroup memory, no barrier)
// Overrides: WTYPE, N_IN, N_OUT, WG (invocations per workgroup), ROWS (rows per workgroup)
// Entry points; g = wid.y * nwg.x + wid.x:
//   matvec_subgroup  T = 1                     grid (ceil(N_OUT / ROWS) as gx*gy, 1)
//   matmul_subgroup  T > 1, TILE tokens a pass  grid (ceil(N_OUT / ROWS) as gx*gy, ceil(T / TILE))
// Subgroup s of a workgroup is taken to be invocations s*sg .. s*sg + sg-1 (as every driver lays
// them out); its rows are s, s + n_sg, ... < ROWS, so any subgroup size gives the right answer:
// with WG = 32 * ROWS, subgroups of 32 own one row each.

override ROWS: u32 = 4u;

@compute @workgroup_size(WG)
fn matvec_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    if (params.n_tokens == 0u) { return; }
    let g = wid.y * nwg.x + wid.x;
    for (var i = lid / sg; i < ROWS; i += max(WG / sg, 1u)) {
        let row = g * ROWS + i;
        if (row >= N_OUT) { break; }
        var acc = 0.0;
        for (var b = lane; b < (N_IN + 31u) / 32u; b += sg) {
            let q = weights(row, b);
            let xs = x_block(0u, b);
            acc += dot(q[0], xs[0]) + dot(q[1], xs[1]) + dot(q[2], xs[2]) + dot(q[3], xs[3])
                + dot(q[4], xs[4]) + dot(q[5], xs[5]) + dot(q[6], xs[6]) + dot(q[7], xs[7]);
        }
        let total = subgroupAdd(acc);
        if (lane == 0u) { y[row] = total; }
    }
}

@compute @workgroup_size(WG)
fn matmul_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let t0 = wid.z * TILE;
    if (t0 >= params.n_tokens) { return; }
    let nt = min(params.n_tokens - t0, TILE);
    let g = wid.y * nwg.x + wid.x;
    for (var i = lid / sg; i < ROWS; i += max(WG / sg, 1u)) {
        let row = g * ROWS + i;
        if (row >= N_OUT) { break; }
        var acc = vec4<f32>(0.0);
        for (var b = lane; b < (N_IN + 31u) / 32u; b += sg) {
            acc += row_tile(row, b, x_tile(t0, nt, b));
        }
        let total = subgroupAdd(acc);
        if (lane == 0u) { store_tile(row, t0, nt, total); }
    }
}
