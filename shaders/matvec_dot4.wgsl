enable subgroups;
diagnostic(off, subgroup_uniformity);

// One token's matrix product on GPUs as packed integer dot products: the weights' quants stay the
// integers they are stored as (quant.wgsl's IntParts: masks and shifts, no conversion to f32) and meet
// x quantised by quantize_x.wgsl, four multiply-adds an instruction (dot4I8Packed). On an H200 the f32
// kernel (matmul_subgroup.wgsl) spent its time converting quants, about 1.2e12 weights/s whatever the
// type; this one reads at close to what a kernel that only loads the same bytes reaches (NOTES.md).
//
// An extension of matmul.wgsl: kernels.py appends matmul.wgsl, activations.wgsl, quant.wgsl and the
// type's weight library, so params, y, put, GLU and the IntParts decoders are theirs.
// Bindings:  0 params, 1 w32 the weights' GGUF bytes [N_OUT, N_IN] (2 * N_OUT rows with GLU),
//            2 xq, 4 xs: x as quantize_x.wgsl writes it (binding 2 is matmul.wgsl's x, unused here),
//            3 y [N_OUT] f32 (ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
// Formula:   y[r] = sum_b xs[b].x (d.x (q_lo . (256 hi + lo)) + d.y (q_hi . ...)) + m . xs[b].yz
//            over blocks b of 32; GLU: act(gate row r) * (up row N_OUT + r)
// Overrides: WTYPE (a type with int_parts), N_IN, N_OUT, WG, ROWS (outputs a workgroup)
// Grid:      ceil(N_OUT / ROWS) workgroups as (x, y), g = wid.y * nwg.x + wid.x
// A subgroup owns one output (its gate and up rows with GLU), its lanes the row's blocks: an H200 read
// fastest so (1, 2 and 4 rows a subgroup: 1756, 1478 and 1590 GB/s at 14336 x 4096). Subgroup s of a
// workgroup takes outputs s, s + WG / sg, ... < ROWS, so any subgroup size gives the right answer.

@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> xs: array<vec4<f32>>;

override ROWS: u32 = 4u;
override PLANES: u32 = 2u;

fn dot16(q: vec4<u32>, x: vec4<u32>) -> i32 {
    return dot4I8Packed(q.x, x.x) + dot4I8Packed(q.y, x.y) + dot4I8Packed(q.z, x.z) + dot4I8Packed(q.w, x.w);
}

// Block b's share of a row: the quants against each plane of x (the highest first), each half with its
// own scale.
fn block_dot(p: IntParts, b: u32) -> f32 {
    let at = 2u * PLANES * b;
    var lo = 0.0;
    var hi = 0.0;
    for (var i = 0u; i < PLANES; i++) {
        lo = lo * 256.0 + f32(dot16(p.lo, xq[at + 2u * i]));
        hi = hi * 256.0 + f32(dot16(p.hi, xq[at + 2u * i + 1u]));
    }
    let s = xs[b];
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
    if (params.n_tokens == 0u) { return; }  // (every kernel binds params at 0; this one needs nothing else of it)
    let g = wid.y * nwg.x + wid.x;
    for (var i = lid / sg; i < ROWS; i += max(WG / sg, 1u)) {
        let r = g * ROWS + i;
        if (r >= N_OUT) { break; }
        var acc = vec2<f32>(0.0);  // row r (the gate's with GLU), and the up row N_OUT + r
        for (var b = lane; b < N_IN / 32u; b += sg) {
            acc.x += block_dot(int_parts(r, b), b);
            if (GLU) { acc.y += block_dot(int_parts(N_OUT + r, b), b); }
        }
        let total = subgroupAdd(acc);
        if (lane == 0u) { put(0u, r, select(total.x, glu(total.x, total.y), GLU)); }
    }
}
