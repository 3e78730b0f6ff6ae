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
// Grid:      (ceil(N_OUT / ROWS) workgroups as (x, y), ceil(T / TT)), g = wid.y * nwg.x + wid.x
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
