enable subgroups;
diagnostic(off, subgroup_uniformity);

// Matrix products on GPUs as packed integer dot products: the weights' quants stay the
// integers they are stored as (quant.wgsl's IntParts: masks and shifts, no conversion to f32) and meet
// x quantised by quantize_x.wgsl, four multiply-adds an instruction (dot4I8Packed). On an H200 the f32
// kernel (matmul_subgroup.wgsl) spent its time converting quants, about 1.2e12 weights/s whatever the
// type; this one reads at close to what a kernel that only loads the same bytes reaches (NOTES.md).
//
// An extension of matmul.wgsl: kernels.py appends matmul.wgsl, activations.wgsl, quant.wgsl and the
// type's weight library, so params, y, put, GLU and the IntParts decoders are theirs.
// Bindings:  0 params, 1 w32 the weights' GGUF bytes [N_OUT, N_IN] (2 * N_OUT rows with GLU),
//            2 xq, 4 xs: x [T, N_IN] as quantize_x.wgsl writes it (binding 2 is matmul.wgsl's x, unused
//            here), 3 y [T, N_OUT] f32 (ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
// Formula:   y[t, r] = sum_b xs[t, b].x (d.x (q_lo . x_lo) + d.y (q_hi . x_hi)) + m . xs[t, b].yz over
//            blocks b of 32, x_lo and x_hi the planes' integers; GLU: act(gate row r) * (up row N_OUT + r)
// Overrides: WTYPE (a type with int_parts), N_IN, N_OUT, WG, ROWS (outputs a workgroup), PLANES, TT
//            (tokens a subgroup takes: 1 for one token; batches decode each weight block once for TT)
// Entry points; g = wid.y * nwg.x + wid.x:
//   matvec_dot4        batches (and one token where rows are many): grid (ceil(N_OUT / ROWS) as (x, y),
//                      ceil(T / TT))
//   matvec_dot4_split  one token, one output a workgroup: grid (N_OUT as (x, y), 1)
// A subgroup owns one output (its gate and up rows with GLU), its lanes the row's blocks: an H200 read
// fastest so (1, 2 and 4 rows a subgroup: 1724, 1478 and 1590 GB/s at 14336 x 4096 in a lab kernel of one
// plane). Subgroup s of a workgroup takes outputs s, s + WG / sg, ... < ROWS, so any subgroup size gives
// the right answer.

@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> xs: array<vec4<f32>>;

override ROWS: u32 = 4u;
override PLANES: u32 = 3u;
override TT: u32 = 1u;
const MAX_TT = 8u;

fn dot16(q: vec4<u32>, x: vec4<u32>) -> i32 {
    return dot4I8Packed(q.x, x.x) + dot4I8Packed(q.y, x.y) + dot4I8Packed(q.z, x.z) + dot4I8Packed(q.w, x.w);
}

// Block b of token t's share of a row: the quants against each plane of x (the highest first), each
// half with its own scale.
fn block_dot(p: IntParts, t: u32, b: u32) -> f32 {
    let tb = t * (N_IN / 32u) + b;
    let at = 2u * PLANES * tb;
    var lo = 0.0;
    var hi = 0.0;
    for (var i = 0u; i < PLANES; i++) {
        lo = lo * 256.0 + f32(dot16(p.lo, xq[at + 2u * i]));
        hi = hi * 256.0 + f32(dot16(p.hi, xq[at + 2u * i + 1u]));
    }
    let s = xs[tb];
    return s.x * (p.d.x * lo + p.d.y * hi) + dot(p.m, s.yz);
}

@compute @workgroup_size(WG)
fn matvec_dot4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let t0 = wid.z * TT;
    if (t0 >= params.n_tokens) { return; }
    let nt = min(TT, params.n_tokens - t0);  // the same for the whole workgroup
    let g = wid.y * nwg.x + wid.x;
    for (var i = lid / sg; i < ROWS; i += max(WG / sg, 1u)) {
        let r = g * ROWS + i;
        if (r >= N_OUT) { break; }
        var acc: array<vec2<f32>, MAX_TT>;  // per token: row r (the gate's with GLU), the up row N_OUT + r
        for (var b = lane; b < N_IN / 32u; b += sg) {
            let p = int_parts(r, b);
            var up: IntParts;
            if (GLU) { up = int_parts(N_OUT + r, b); }
            for (var j = 0u; j < TT; j++) {
                if (j < nt) {
                    acc[j].x += block_dot(p, t0 + j, b);
                    if (GLU) { acc[j].y += block_dot(up, t0 + j, b); }
                }
            }
        }
        for (var j = 0u; j < TT; j++) {
            let total = subgroupAdd(acc[j]);
            if (lane == 0u && j < nt) { put(t0 + j, r, select(total.x, glu(total.x, total.y), GLU)); }
        }
    }
}

// One token's output g, the whole workgroup on its row: each invocation takes every WG-th block, the
// subgroups' sums meet in workgroup memory. A subgroup a row left a 4096-wide row 4 blocks a lane and,
// with 4096 rows, 131k invocations in all: too few loads in flight to fill an H200's HBM (the narrow
// products, qkv, o and down, read at 0.46-0.84 TB/s while gate_up, twice the rows, reached 1.5).
var<workgroup> partial: array<vec2<f32>, 256>;  // a subgroup's sums each (WG <= 256, subgroups >= 1 lane)

@compute @workgroup_size(WG)
fn matvec_dot4_split(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    _ = params.n_tokens;  // (one token; bound all the same, as binding 0 of every kernel)
    let r = wid.y * nwg.x + wid.x;
    if (r >= N_OUT) { return; }  // the same for the whole workgroup
    var acc = vec2<f32>(0.0);  // row r (the gate's with GLU), the up row N_OUT + r
    for (var b = lid; b < N_IN / 32u; b += WG) {
        acc.x += block_dot(int_parts(r, b), 0u, b);
        if (GLU) { acc.y += block_dot(int_parts(N_OUT + r, b), 0u, b); }
    }
    let sum = subgroupAdd(acc);
    if (lane == 0u) { partial[lid / sg] = sum; }
    workgroupBarrier();
    if (lid == 0u) {
        var total = vec2<f32>(0.0);
        for (var i = 0u; i < (WG + sg - 1u) / sg; i++) { total += partial[i]; }
        put(0u, r, select(total.x, glu(total.x, total.y), GLU));
    }
}
