enable subgroups;
diagnostic(off, subgroup_uniformity);

// Matrix products, the "subgroup" variant for GPUs: a subgroup per 4 rows of one token, its lanes
// split the rows' blocks and subgroupAdd sums them (no workgroup memory, no barrier). A batch is a
// grid row of workgroups per token: each reads the weights again, from L2 after the first (a layer's
// weights are a few MB). On an H100 this prefilled 5.8x faster than matmul.wgsl's register tiles,
// which give too few invocations to fill a GPU (1197 -> 6891 tok/s, 128-token prompt).
//
// An extension of matmul.wgsl: kernels.py appends matmul.wgsl and quant.wgsl to this file, so the
// bindings, overrides and helpers (x_block, row_dot, store1) are theirs.
// Bindings:  0 params, 1 w [N_OUT, N_IN] GGUF bytes, 2 x [T, N_IN] f32, 3 y [T, N_OUT] f32
// Formula:   y[t, r] = sum_k W[r, k] * x[t, k]; lane l of a subgroup takes blocks l, l + sg, ... of its
//            RPS rows, loading each x block once for them all (GLU: RPS / 2 gate and as many up rows give
//            RPS / 2 outputs;
//            ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
//            NORM: x is the residual stream and the RMSNorm before the product is folded in:
//            y[r] = s * sum_k W[r, k] * (x[k] * norm_w[k]), s = 1 / sqrt(mean_k(x[k]^2) + EPS), one
//            dispatch fewer a norm (each subgroup finds s itself: x is short and in cache; binding 4 is
//            the norm's weights, or x again when NORM is off)
// Overrides: WTYPE, N_IN, N_OUT, WG (invocations per workgroup), ROWS (rows per workgroup, a
//            multiple of RPS), RPS (rows a subgroup owns: 4, or 8 for batches, where loading each x
//            block once for 8 rows pays), NORM, EPS
// Grid:      (ceil(N_OUT / ROWS) as gx*gy, T), twice as many with GLU; g = wid.y * nwg.x + wid.x,
//            token t = wid.z. matvec_subgroup_rope: one token's q | k | v, rotating q and k and storing k
//            and v in their caches as well (below), grid (ceil(N_OUT / ROWS) as gx*gy, 1)
// Subgroup s of a workgroup is taken to be invocations s*sg .. s*sg + sg-1 (as drivers lay them
// out); it takes rows RPS s.., RPS (s + n_sg).. < ROWS, so any subgroup size gives the right answer:
// with WG = 128 and ROWS = 4 RPS, subgroups of 32 own RPS rows each.

override ROWS: u32 = 16u;
override RPS: u32 = 4u;  // rows a subgroup owns: 4 or 8 (each x block a lane loads serves them all)
override NORM: bool = false;
override EPS: f32 = 1e-5;

@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;

// x's block b, times the norm's weights when NORM (zeros past the row's end stay zeros).
fn normed_block(t: u32, b: u32) -> array<vec4<f32>, 8> {
    var xs = x_block(t, b);
    if (NORM) {
        for (var i = 0u; i < 8u; i++) { xs[i] *= norm_w[min(b * 8u + i, N_IN / 4u - 1u)]; }
    }
    return xs;
}

// 1 / RMS of token t's x with NORM (each subgroup finds it itself), else 1.
fn norm_scale(t: u32, lane: u32, sg: u32) -> f32 {
    if (!NORM) { return 1.0; }
    var ss = 0.0;
    for (var j = lane; j < N_IN / 4u; j += sg) { ss += dot(x[t * (N_IN / 4u) + j], x[t * (N_IN / 4u) + j]); }
    return inverseSqrt(subgroupAdd(ss) / f32(N_IN) + EPS);
}

// Token t's sums of the subgroup's RPS rows from output row r (rows 4..7 in the second with RPS 8; GLU:
// gate rows, then up rows), times scale, in every lane.
fn subgroup_sums(t: u32, r: u32, lane: u32, sg: u32, scale: f32) -> array<vec4<f32>, 2> {
    var acc = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);  // rows 4..7 (RPS 8)
    for (var b = lane; b < (N_IN + 31u) / 32u; b += sg) {
        let xs = normed_block(t, b);
        let xsum = block_sum(xs);
        var c: KCache;  // unused between blocks: a lane's blocks are not consecutive
        acc += vec4<f32>(row_dot(wrow(r, 0u, RPS), b, xs, xsum, &c, true), row_dot(wrow(r, 1u, RPS), b, xs, xsum, &c, true),
                         row_dot(wrow(r, 2u, RPS), b, xs, xsum, &c, true), row_dot(wrow(r, 3u, RPS), b, xs, xsum, &c, true));
        if (RPS == 8u) {
            acc2 += vec4<f32>(row_dot(wrow(r, 4u, 8u), b, xs, xsum, &c, true), row_dot(wrow(r, 5u, 8u), b, xs, xsum, &c, true),
                              row_dot(wrow(r, 6u, 8u), b, xs, xsum, &c, true), row_dot(wrow(r, 7u, 8u), b, xs, xsum, &c, true));
        }
    }
    return array<vec4<f32>, 2>(subgroupAdd(acc) * scale, subgroupAdd(acc2) * scale);
}

@compute @workgroup_size(WG)
fn matvec_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let t = wid.z;  // the token: the same for the whole workgroup
    if (t >= params.n_tokens) { return; }
    let scale = norm_scale(t, lane, sg);
    let g = wid.y * nwg.x + wid.x;
    for (var i = RPS * (lid / sg); i < ROWS; i += RPS * max(WG / sg, 1u)) {
        let r = select(g * ROWS + i, (g * ROWS + i) / 2u, GLU);  // the first output row
        if (r >= N_OUT) { break; }
        let sums = subgroup_sums(t, r, lane, sg, scale);
        let total = sums[0];
        let total2 = sums[1];
        if (lane != 0u) { continue; }
        if (GLU && RPS == 8u) {  // gate rows r..r+3 in total, up rows in total2
            let o = glu4(total, total2);
            store_at(t, r, o.x);
            store_at(t, r + 1u, o.y);
            store_at(t, r + 2u, o.z);
            store_at(t, r + 3u, o.w);
        } else if (GLU) {
            let o = glu4(total.xyxy, total.zwzw);
            store_at(t, r, o.x);
            store_at(t, r + 1u, o.y);
        } else {
            store_at(t, r, total.x);
            store_at(t, r + 1u, total.y);
            store_at(t, r + 2u, total.z);
            store_at(t, r + 3u, total.w);
            if (RPS == 8u) {
                store_at(t, r + 4u, total2.x);
                store_at(t, r + 5u, total2.y);
                store_at(t, r + 6u, total2.z);
                store_at(t, r + 7u, total2.w);
            }
        }
    }
}

// matvec_subgroup_rope: one token's q | k | v product (RPS 4, no GLU) that rotates q's and k's heads and
// stores keys and values in the caches itself (rope_store.wgsl: its bindings 5 to 8 and overrides).
@compute @workgroup_size(WG)
fn matvec_subgroup_rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    if (params.n_tokens == 0u) { return; }
    let scale = norm_scale(0u, lane, sg);
    let g = wid.y * nwg.x + wid.x;
    for (var i = 4u * (lid / sg); i < ROWS; i += 4u * max(WG / sg, 1u)) {
        let r = g * ROWS + i;
        if (r >= N_OUT) { break; }
        let total = subgroup_sums(0u, r, lane, sg, scale)[0];
        if (lane == 0u) { rope_store4(0u, r, total); }
    }
}

fn store_at(t: u32, row: u32, v: f32) {
    if (row < N_OUT) { put(t, row, v); }
}
