enable subgroups;
diagnostic(off, subgroup_uniformity);

// Matrix products on GPUs as packed integer dot products: the weights' quants stay the
// integers they are stored as (quant.wgsl's IntParts: masks and shifts, no conversion to f32) and meet
// x quantised by quantize_x.wgsl, four multiply-adds an instruction (dot4I8Packed). On an H200 the f32
// kernel (matmul_subgroup.wgsl) spent its time converting quants, about 1.2e12 weights/s whatever the
// type; this one reads at close to what a kernel that only loads the same bytes reaches (NOTES.md).
//
// An extension of matmul.wgsl: kernels.py appends matmul.wgsl, activations.wgsl, quant.wgsl, the type's
// weight library and x_blocks.wgsl, so params, y, put, GLU, the IntParts decoders and xq_index are theirs.
// Bindings:  0 params, 1 w32 the weights' GGUF bytes [N_OUT, N_IN] (2 * N_OUT rows with GLU),
//            2 xq, 4 xs: x [T, N_IN] as quantize_x.wgsl writes it (binding 2 is matmul.wgsl's x, unused
//            here), 3 y [T, N_OUT] f32 (ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
// Formula:   y[t, r] = sum_b xs[t, b].x (d.x (q_lo . x_lo) + d.y (q_hi . x_hi)) + m . xs[t, b].yz over
//            blocks b of 32, x_lo and x_hi the planes' integers; GLU: act(gate row r) * (up row N_OUT + r)
// Overrides: WTYPE (a type with int_parts), N_IN, N_OUT, WG, PLANES, SPREAD (quantize_x's); for batches
//            ROWS (outputs a workgroup) and TT (tokens a subgroup takes: each weight block decoded once for them);
//            for matvec_dot4_rope those its comment names
// Entry points; g = wid.y * nwg.x + wid.x:
//   matvec_dot4        one token: a workgroup outputs 4g .. 4g + 3, its invocations the rows' blocks;
//                      grid (ceil(N_OUT / 4) as (x, y), 1)
//   matvec_dot4_rope   the same for q | k | v, rotating q and k and storing k and v in their caches (below)
//   matvec_dot4_few    a few tokens (streams decoding together): one token's layout, TT tokens a workgroup;
//                      grid (ceil(N_OUT / 4) as (x, y), ceil(T / TT)); matvec_dot4_few_rope rotates and stores
//   matvec_dot4_batch  a batch: a subgroup four outputs, its lanes the rows' blocks, TT tokens;
//                      grid (ceil(N_OUT / ROWS) as (x, y), ceil(T / TT)). Subgroup s of a workgroup takes
//                      outputs 4s .. 4s + 3, then 4(s + WG / sg).. < ROWS: right for any subgroup size.
//   matvec_dot4_batch8 the same with eight outputs a subgroup (8s .. 8s + 7, ...), for long rows
//   matvec_dot4_glu_quantized  one token's GLU product whose output is the next product's x: a workgroup
//                      32 outputs (32g ..), which it also quantises into 5 xq_out, 6 xs_out (below);
//                      grid (N_OUT / 32 as (x, y), 1)

@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> xs: array<vec4<f32>>;

override ROWS: u32 = 8u;
override PLANES: u32 = 3u;
override TT: u32 = 1u;
// The per-token sums' room: products.py's DOT4_TT (8, with 4 used, cost 2-3 % of prefill on an H200).
const MAX_TT = 4u;
// matvec_dot4_few's: products.py's DOT4_FEW_TT at most.
const MAX_FEW = 8u;

// Four rows' quants against one plane of x's block: each half's integer sums, as f32.
fn plane4(p0: IntParts, p1: IntParts, p2: IntParts, p3: IntParts, x_lo: vec4<u32>, x_hi: vec4<u32>)
    -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(f32(dot16(p0.lo, x_lo)), f32(dot16(p1.lo, x_lo)), f32(dot16(p2.lo, x_lo)), f32(dot16(p3.lo, x_lo))),
        vec4<f32>(f32(dot16(p0.hi, x_hi)), f32(dot16(p1.hi, x_hi)), f32(dot16(p2.hi, x_hi)), f32(dot16(p3.hi, x_hi))),
    );
}

// Four rows' sums over the planes (lo, hi: of each half), scaled: s is x's block's (scale, sums of its halves).
fn scaled4(p0: IntParts, p1: IntParts, p2: IntParts, p3: IntParts, lo: vec4<f32>, hi: vec4<f32>, s: vec4<f32>)
    -> vec4<f32> {
    return s.x * (vec4<f32>(p0.d.x, p1.d.x, p2.d.x, p3.d.x) * lo + vec4<f32>(p0.d.y, p1.d.y, p2.d.y, p3.d.y) * hi)
        + vec4<f32>(dot(p0.m, s.yz), dot(p1.m, s.yz), dot(p2.m, s.yz), dot(p3.m, s.yz));
}

// Block b of token t against four rows' blocks, from one load of x's block: the quants against each plane
// of x (the highest first), each half of the block with its own scale.
fn block_dot4(p0: IntParts, p1: IntParts, p2: IntParts, p3: IntParts, t: u32, b: u32) -> vec4<f32> {
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var i = 0u; i < PLANES; i++) {
        let d = plane4(p0, p1, p2, p3, xq[xq_index(t, 2u * i, b)], xq[xq_index(t, 2u * i + 1u, b)]);
        lo = lo * 256.0 + d[0];
        hi = hi * 256.0 + d[1];
    }
    return scaled4(p0, p1, p2, p3, lo, hi, xs[t * (N_IN / 32u) + b]);
}

// The same for eight rows' blocks (rows 0..3 and 4..7), from one load of x's block.
fn block_dot8(p: array<IntParts, 8>, t: u32, b: u32) -> array<vec4<f32>, 2> {
    var lo0 = vec4<f32>(0.0); var hi0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0); var hi1 = vec4<f32>(0.0);
    for (var i = 0u; i < PLANES; i++) {
        let x_lo = xq[xq_index(t, 2u * i, b)];
        let x_hi = xq[xq_index(t, 2u * i + 1u, b)];
        let d0 = plane4(p[0], p[1], p[2], p[3], x_lo, x_hi);
        let d1 = plane4(p[4], p[5], p[6], p[7], x_lo, x_hi);
        lo0 = lo0 * 256.0 + d0[0];
        hi0 = hi0 * 256.0 + d0[1];
        lo1 = lo1 * 256.0 + d1[0];
        hi1 = hi1 * 256.0 + d1[1];
    }
    let s = xs[t * (N_IN / 32u) + b];
    return array<vec4<f32>, 2>(scaled4(p[0], p[1], p[2], p[3], lo0, hi0, s),
                               scaled4(p[4], p[5], p[6], p[7], lo1, hi1, s));
}

fn parts8(r: u32, b: u32) -> array<IntParts, 8> {
    let last = select(N_OUT - 1u, 2u * N_OUT - 1u, r >= N_OUT);  // past the matrix: its last row again, never stored
    return array<IntParts, 8>(int_parts(r, b), int_parts(min(r + 1u, last), b), int_parts(min(r + 2u, last), b),
                              int_parts(min(r + 3u, last), b), int_parts(min(r + 4u, last), b),
                              int_parts(min(r + 5u, last), b), int_parts(min(r + 6u, last), b),
                              int_parts(min(r + 7u, last), b));
}

// A batch, eight outputs a subgroup (rows r .. r + 7, and their up rows with GLU): each x block a lane loads
// serves the eight rows. Long rows gain (H200, prefill: 8B +6 %); rows of 2048, 2 blocks a lane, lost 5-7 %
// (fewer invocations resident, each with more registers).
@compute @workgroup_size(WG)
fn matvec_dot4_batch8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    share_tables(lid, WG);
    let t0 = wid.z * TT;
    if (t0 >= params.n_tokens) { return; }
    let nt = min(TT, params.n_tokens - t0);
    let g = wid.y * nwg.x + wid.x;
    for (var i = lid / sg; 8u * i < ROWS; i += max(WG / sg, 1u)) {
        let r = g * ROWS + 8u * i;
        if (r >= N_OUT) { break; }
        var gate = array<vec4<f32>, 2 * MAX_TT>();  // per token: rows r .. r + 3, r + 4 .. r + 7
        var up = array<vec4<f32>, 2 * MAX_TT>();
        for (var b = lane; b < N_IN / 32u; b += sg) {
            let p = parts8(r, b);
            for (var j = 0u; j < TT; j++) {
                if (j < nt) {
                    let d = block_dot8(p, t0 + j, b);
                    gate[2u * j] += d[0];
                    gate[2u * j + 1u] += d[1];
                }
            }
            if (GLU) {
                let u = parts8(N_OUT + r, b);
                for (var j = 0u; j < TT; j++) {
                    if (j < nt) {
                        let d = block_dot8(u, t0 + j, b);
                        up[2u * j] += d[0];
                        up[2u * j + 1u] += d[1];
                    }
                }
            }
        }
        for (var j = 0u; j < 2u * TT; j++) {
            let a = subgroupAdd(gate[j]);
            let u = subgroupAdd(up[j]);
            let rr = r + 4u * (j % 2u);
            if (lane == 0u && j / 2u < nt) {
                for (var k = 0u; k < 4u; k++) {
                    if (rr + k < N_OUT) { put(t0 + j / 2u, rr + k, select(a[k], glu(a[k], u[k]), GLU)); }
                }
            }
        }
    }
}

// A batch, four outputs a subgroup (rows r .. r + 3, and their up rows with GLU): each x block a lane
// loads serves the four rows. x, not the weights, is most of what a batch loads: a token's x block is 3
// planes, 112 bytes, a Q4_0 weight block 18. (H200, prefill of 512 tokens, from one output a subgroup: two
// gave 8B 520 -> 756 tok/s, 1B 3232 -> 4278; four, with 4 tokens a subgroup instead of 8, 749 -> 833 and
// 4342 -> 4807.) The loops are written out for the rows: the same kernel over arrays of rows ran at 0.5x.
@compute @workgroup_size(WG)
fn matvec_dot4_batch(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    share_tables(lid, WG);
    let t0 = wid.z * TT;
    if (t0 >= params.n_tokens) { return; }
    let nt = min(TT, params.n_tokens - t0);
    let g = wid.y * nwg.x + wid.x;
    for (var i = lid / sg; 4u * i < ROWS; i += max(WG / sg, 1u)) {
        let r = g * ROWS + 4u * i;
        if (r >= N_OUT) { break; }
        let r1 = min(r + 1u, N_OUT - 1u);
        let r2 = min(r + 2u, N_OUT - 1u);
        let r3 = min(r + 3u, N_OUT - 1u);
        // Zeroed by their initialisers: naga, wgpu's WGSL compiler, zeroes a variable declared in a loop without
        // one only on the loop's first pass (subgroups of 64 lanes take two passes of 16 rows)
        var gate = array<vec4<f32>, MAX_TT>();  // per token: rows r .. r + 3 (their gates with GLU)
        var up = array<vec4<f32>, MAX_TT>();  // with GLU: their up rows
        for (var b = lane; b < N_IN / 32u; b += sg) {
            let p0 = int_parts(r, b);
            let p1 = int_parts(r1, b);
            let p2 = int_parts(r2, b);
            let p3 = int_parts(r3, b);
            for (var j = 0u; j < TT; j++) {
                if (j < nt) { gate[j] += block_dot4(p0, p1, p2, p3, t0 + j, b); }
            }
            if (GLU) {
                let u0 = int_parts(N_OUT + r, b);
                let u1 = int_parts(N_OUT + r1, b);
                let u2 = int_parts(N_OUT + r2, b);
                let u3 = int_parts(N_OUT + r3, b);
                for (var j = 0u; j < TT; j++) {
                    if (j < nt) { up[j] += block_dot4(u0, u1, u2, u3, t0 + j, b); }
                }
            }
        }
        for (var j = 0u; j < TT; j++) {
            let a = subgroupAdd(gate[j]);
            let u = subgroupAdd(up[j]);
            if (lane == 0u && j < nt) {
                for (var k = 0u; k < 4u; k++) {
                    if (r + k < N_OUT) { put(t0 + j, r + k, select(a[k], glu(a[k], u[k]), GLU)); }
                }
            }
        }
    }
}

// One token, outputs 4g .. 4g + 3: the whole workgroup on the four rows, each invocation every WG-th block
// of each (each x block it loads dotted with all four), the subgroups' sums met in workgroup memory. A
// subgroup a row left a 4096-wide row 4 blocks a lane and, with 4096 rows, 131k invocations in all: too few
// loads in flight for an H200's HBM; a workgroup a row fixed that, and more rows a workgroup share x's loads
// (H200 decode, against one row a workgroup: 8B Q4_0 ~200 -> 244 tok/s; NOTES.md).
var<workgroup> partial: array<vec4<f32>, 256>;  // a subgroup's sums each (WG <= 256, subgroups >= 1 lane)
var<workgroup> partial_up: array<vec4<f32>, 256>;  // with GLU: of the up rows

// Outputs r .. r + 3 of one token's product (their GLU with GLU), in invocation 0 of the workgroup (the
// whole workgroup calls it: a barrier).
fn four_outputs(r: u32, lid: u32, lane: u32, sg: u32) -> vec4<f32> {
    let r1 = min(r + 1u, N_OUT - 1u);  // past the matrix: its last row again, never stored
    let r2 = min(r + 2u, N_OUT - 1u);
    let r3 = min(r + 3u, N_OUT - 1u);
    var acc = vec4<f32>(0.0);  // rows r .. r + 3 (their gates with GLU)
    var acc_up = vec4<f32>(0.0);  // with GLU: their up rows
    for (var b = lid; b < N_IN / 32u; b += WG) {
        acc += block_dot4(int_parts(r, b), int_parts(r1, b), int_parts(r2, b), int_parts(r3, b), 0u, b);
        if (GLU) {
            acc_up += block_dot4(int_parts(N_OUT + r, b), int_parts(N_OUT + r1, b), int_parts(N_OUT + r2, b),
                                 int_parts(N_OUT + r3, b), 0u, b);
        }
    }
    let sum = subgroupAdd(acc);
    let sum_up = subgroupAdd(acc_up);
    if (lane == 0u) {
        partial[lid / sg] = sum;
        partial_up[lid / sg] = sum_up;
    }
    workgroupBarrier();
    var total = vec4<f32>(0.0);
    var total_up = vec4<f32>(0.0);
    if (lid == 0u) {
        for (var i = 0u; i < (WG + sg - 1u) / sg; i++) {
            total += partial[i];
            total_up += partial_up[i];
        }
    }
    return select(total, glu4(total, total_up), GLU);
}

@compute @workgroup_size(WG)
fn matvec_dot4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    _ = params.n_tokens;  // (one token; bound all the same, as binding 0 of every kernel)
    share_tables(lid, WG);
    let r = 4u * (wid.y * nwg.x + wid.x);
    if (r >= N_OUT) { return; }  // the same for the whole workgroup
    let out = four_outputs(r, lid, lane, sg);
    if (lid == 0u) {
        for (var k = 0u; k < 4u; k++) {
            if (r + k < N_OUT) { put(0u, r + k, out[k]); }
        }
    }
}

// matvec_dot4_rope: one token's q | k | v product (N_OUT = Q_DIM + 2 KV_DIM) that rotates q's and k's heads
// and stores keys and values in the caches itself (rope_store.wgsl: its bindings 5 to 8 and overrides).
@compute @workgroup_size(WG)
fn matvec_dot4_rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    share_tables(lid, WG);
    let r = 4u * (wid.y * nwg.x + wid.x);
    if (r >= N_OUT) { return; }
    let out = four_outputs(r, lid, lane, sg);
    if (lid == 0u) { rope_store4(0u, r, out); }
}

// A few tokens (streams decoding together: a token each), outputs r .. r + 3 of tokens t0 .. t0 + nt - 1: one
// token's layout (the workgroup on the four rows, its invocations the blocks), each block of the rows
// decoded once for several tokens. Returns token t0 + lid's four (their GLU with GLU) in invocations lid < nt
// (the whole workgroup calls it: a barrier). matvec_dot4_batch's subgroup of four rows left the narrow
// products (o, down) too few loads in flight for a few tokens (NOTES.md).
// The sums come in parts: the tokens in GROUPS groups (token t in group t % GROUPS), and with GLU each group's
// gate rows and up rows apart. An invocation keeps one part's sums at a time (fewer registers: more
// invocations resident); with SPLIT and at least a subgroup a part, the subgroups share the parts out (more
// invocations on the rows), else every invocation takes every part, one after the other.
override SPLIT: bool = false;
override GROUPS: u32 = 1u;
// Per part, subgroup and token of the part: 2 TT a subgroup (GROUPS dividing TT), 32 subgroups (WG <= 128, sg >= 4)
var<workgroup> few_partial: array<vec4<f32>, 512>;

fn few_outputs(r: u32, t0: u32, nt: u32, lid: u32, lane: u32, sg: u32) -> vec4<f32> {
    let n_parts = select(1u, 2u, GLU) * GROUPS;  // part p: group p % GROUPS, of the up rows from GROUPS on
    let n_sg = (WG + sg - 1u) / sg;
    let s = lid / sg;
    let spread = SPLIT && n_sg >= n_parts;
    let per = select(n_sg, n_sg / n_parts, spread);  // subgroups on each part
    let mine = select(0u, s / per, spread);
    let first = lid - mine * per * sg;
    let stride = select(WG, per * sg, spread);
    let per_part = (TT + GROUPS - 1u) / GROUPS;  // tokens a part
    var acc: array<vec4<f32>, MAX_FEW>;
    for (var p = mine; p < select(n_parts, mine + 1u, spread); p++) {
        let up = p >= GROUPS;
        let g = p % GROUPS;
        let last = select(N_OUT - 1u, 2u * N_OUT - 1u, up);  // past the matrix: its last row again, never stored
        let r0 = select(r, N_OUT + r, up);
        let r1 = min(r0 + 1u, last);
        let r2 = min(r0 + 2u, last);
        let r3 = min(r0 + 3u, last);
        // (zeroed here, declared outside: naga zeroes a variable declared in a loop only on its first pass)
        for (var j = 0u; j < per_part; j++) { acc[j] = vec4<f32>(0.0); }
        for (var b = first; b < N_IN / 32u; b += stride) {
            let p0 = int_parts(r0, b);
            let p1 = int_parts(r1, b);
            let p2 = int_parts(r2, b);
            let p3 = int_parts(r3, b);
            for (var j = 0u; j < per_part; j++) {
                let t = GROUPS * j + g;
                if (t < nt) { acc[j] += block_dot4(p0, p1, p2, p3, t0 + t, b); }
            }
        }
        for (var j = 0u; j < per_part; j++) {
            let a = subgroupAdd(acc[j]);
            if (lane == 0u) { few_partial[(p * n_sg + s) * per_part + j] = a; }
        }
    }
    workgroupBarrier();
    // Token lid's sums: of the subgroups that took its group's parts
    var total = vec4<f32>(0.0);
    var total_up = vec4<f32>(0.0);
    if (lid < nt) {
        let j = lid / GROUPS;
        for (var p = lid % GROUPS; p < n_parts; p += GROUPS) {
            let lo = select(0u, p * per, spread);
            var sum = vec4<f32>(0.0);
            for (var i = lo; i < lo + per; i++) { sum += few_partial[(p * n_sg + i) * per_part + j]; }
            if (p >= GROUPS) { total_up = sum; } else { total = sum; }
        }
    }
    return select(total, glu4(total, total_up), GLU);
}

@compute @workgroup_size(WG)
fn matvec_dot4_few(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    share_tables(lid, WG);
    let t0 = wid.z * TT;
    let r = 4u * (wid.y * nwg.x + wid.x);
    if (r >= N_OUT || t0 >= params.n_tokens) { return; }  // the same for the whole workgroup
    let nt = min(TT, params.n_tokens - t0);
    let out = few_outputs(r, t0, nt, lid, lane, sg);
    if (lid < nt) {
        for (var k = 0u; k < 4u; k++) {
            if (r + k < N_OUT) { put(t0 + lid, r + k, out[k]); }
        }
    }
}

// matvec_dot4_few_rope: a few tokens' q | k | v, each rotated and stored as matvec_dot4_rope does one token's.
@compute @workgroup_size(WG)
fn matvec_dot4_few_rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    share_tables(lid, WG);
    let t0 = wid.z * TT;
    let r = 4u * (wid.y * nwg.x + wid.x);
    if (r >= N_OUT || t0 >= params.n_tokens) { return; }
    let nt = min(TT, params.n_tokens - t0);
    let out = few_outputs(r, t0, nt, lid, lane, sg);
    if (lid < nt) { rope_store4(t0 + lid, r, out); }
}

// matvec_dot4_glu_quantized: one token's GLU product (gate_up), its outputs also quantised as the next
// product's x (down's: x_quantize.wgsl's quantize4 into xq_out, xs_out, SPREAD as that product reads them), so
// that product needs no quantize_x dispatch of its own. A block of that x is 32 outputs, so a workgroup owns 32:
// its subgroups four each (matvec_dot4_batch's layout for one token), their lanes the rows' blocks; the 32
// meet in workgroup memory. N_OUT is a multiple of 32 (the next product's blocks).
@group(0) @binding(5) var<storage, read_write> xq_out: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read_write> xs_out: array<vec4<f32>>;
var<workgroup> glu_block: array<vec4<f32>, 8>;

@compute @workgroup_size(WG)
fn matvec_dot4_glu_quantized(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    _ = params.n_tokens;  // (one token)
    share_tables(lid, WG);
    let r0 = 32u * (wid.y * nwg.x + wid.x);
    if (r0 >= N_OUT) { return; }  // the same for the whole workgroup
    for (var i = lid / sg; i < 8u; i += max(WG / sg, 1u)) {
        let r = r0 + 4u * i;
        var gate = vec4<f32>(0.0);
        var up = vec4<f32>(0.0);
        for (var b = lane; b < N_IN / 32u; b += sg) {
            gate += block_dot4(int_parts(r, b), int_parts(r + 1u, b), int_parts(r + 2u, b), int_parts(r + 3u, b), 0u, b);
            up += block_dot4(int_parts(N_OUT + r, b), int_parts(N_OUT + r + 1u, b), int_parts(N_OUT + r + 2u, b),
                             int_parts(N_OUT + r + 3u, b), 0u, b);
        }
        let a = subgroupAdd(gate);
        let u = subgroupAdd(up);
        if (lane == 0u) {
            let v = glu4(a, u);
            glu_block[i] = v;
            for (var k = 0u; k < 4u; k++) { put(0u, r + k, v[k]); }
        }
    }
    workgroupBarrier();
    let inside = lid < 8u;
    quantize4(N_OUT / 32u, 0u, r0 / 4u + lid, glu_block[min(lid, 7u)], lid, inside);
}
