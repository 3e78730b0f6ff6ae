// Attention on GPUs, in two dispatches ("flash-decoding"): each query's visible positions are split
// into parts (a query of a long prompt: one part), and a workgroup scores its part in workgroup memory,
// keeps a running softmax (max m, sum l) and sums the value rows it weighs; `attend_combine` rescales the
// parts to their common max and divides. attention.wgsl's path for one token took four dispatches and a scores buffer
// (H200, Llama 3 8B shape: 1.2 ms a token over the layers; this, 0.7).
//
// An extension of attention.wgsl (kernels.py appends it, with positions.wgsl and activations.wgsl): its
// overrides, q, k_cache, chunk(), unpack8(), k8(), q8() and cap() serve here as there; a token's query
// heads come in chunks of up to 4 that share a KV head, and read each key and value row once for all.
// Entry points:
//   attend_part     1 q, 2 k_cache, 3 v_rows (the value cache), 4 part_acc [rows, N_HEADS, HEAD_DIM] f32,
//                   5 part_ml [rows, N_HEADS] (m, l): token t's part i in row t * room + i (room below;
//                   rows = max(PARTS, T)). Grid (PARTS / T or 1, N_KV_HEADS * CHUNKS, T), WG = HEAD_DIM / 2:
//                   the part's positions in tiles of WG, an invocation a position's q . k for the chunk's
//                   heads, then an invocation per (query head, 8 dims) weighing the tile's value rows.
//   attend_combine  1 part_acc, 2 part_ml, 3 flash_out [T, N_HEADS * HEAD_DIM]. Grid
//                   (ceil(N_HEADS * HEAD_DIM / 4 / (WG / SLICES)), T): out = sum_i e^(m_i - M) acc_i /
//                   sum_i e^(m_i - M) l_i over the token's parts, M the largest m_i; SLICES invocations an output.
//   attend_combine_quantized  the same, and into 4 xq_out, 5 xs_out: out quantised for
//                   o's matvec_dot4 as quantize_x.wgsl would (x_quantize.wgsl's quantize4; N_IN = N_HEADS *
//                   HEAD_DIM, PLANES, SPREAD), which then needs no dispatch of its own: on an H200 that
//                   dispatch cost 6-9 us a layer, against 3.4 us for one that does nothing.
// Visible positions: lo..p for the query at p (token_pos), lo = p + 1 - WINDOW with a window, else 0.
// Overrides (beyond attention.wgsl's): PARTS (the scratch's rows), MIN_PART (positions a part at least);
// for attend_combine_quantized N_IN, PLANES, SPREAD (x_quantize.wgsl and x_blocks.wgsl are appended)

// attend_part
@group(0) @binding(3) var<storage, read> v_rows: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> part_acc: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;
// attend_combine
@group(0) @binding(1) var<storage, read> acc_in: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ml_in: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> flash_out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> xq_out: array<vec4<u32>>;  // attend_combine_quantized
@group(0) @binding(5) var<storage, read_write> xs_out: array<vec4<f32>>;

override PARTS: u32;
override MIN_PART: u32;
override SLICES: u32 = 1u;  // attend_combine's invocations an output (combined() below)
override N_IN: u32 = 32u;
override PLANES: u32 = 3u;
const MAX_HEAD_DIM = 256u;
var<workgroup> chunk_q: array<vec4<f32>, MAX_HEAD_DIM>;  // the chunk's 4 query heads (4 x HEAD_DIM / 4)
var<workgroup> tile_scores: array<f32, MAX_HEAD_DIM * 2u>;  // [head][position of the tile] (4 x WG)

// A token's parts: up to max(1, PARTS / T) (its share of the scratch), of at least MIN_PART positions
// each, so that a short context is not scattered over parts that hold a position or two.
struct Parts { n: u32, per: u32 }

fn room() -> u32 { return max(1u, PARTS / params.n_tokens); }

fn parts_of(visible: u32) -> Parts {
    let per = max(MIN_PART, (visible + room() - 1u) / room());
    return Parts((visible + per - 1u) / per, per);
}

// The first position query `last` sees: with a window, last + 1 - WINDOW.
fn first_visible(last: u32) -> u32 {
    if (WINDOW > 0u && last + 1u > WINDOW) { return last + 1u - WINDOW; }
    return 0u;
}

fn v_row8(e: u32) -> array<vec4<f32>, 2> {
    if (KV_F16) { return unpack8(v_rows[e / 8u], vec4<u32>()); }
    return unpack8(v_rows[e / 4u], v_rows[e / 4u + 1u]);
}

// Dims e..e+7 of the chunk's 4 query heads (chunk_q) against the same dims of a key row, k.
fn q_dot(e: u32, k: array<vec4<f32>, 2>) -> vec4<f32> {
    var d = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let at = i * (HEAD_DIM / 4u) + e / 4u;
        d[i] = dot(chunk_q[at], k[0]) + dot(chunk_q[at + 1u], k[1]);
    }
    return d;
}

@compute @workgroup_size(WG)
fn attend_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;  // the same for the whole workgroup: every branch below on it, the chunk or the
    let part = wid.x;  // part's range is uniform, so the barriers are too
    if (t >= params.n_tokens) { return; }
    let last = token_pos(t);
    let lo = first_visible(last);
    let parts = parts_of(last + 1u - lo);
    if (part >= parts.n) { return; }
    let ch = chunk(wid.y);
    let a = lo + part * parts.per;
    let b = min(last + 1u, a + parts.per);
    let kv_dim = N_KV_HEADS * HEAD_DIM;
    let col = token_base(t) * kv_dim + ch.kv * HEAD_DIM;  // the sequence's row 0, this KV head
    let scale = select(SCALE, inverseSqrt(f32(HEAD_DIM)), SCALE == 0.0);
    for (var j = lid; j < HEAD_DIM; j += WG) {  // 4 heads x HEAD_DIM / 4 vec4s
        let i = j / (HEAD_DIM / 4u);
        let qv = q8(t, ch, i, 8u * ((j % (HEAD_DIM / 4u)) / 2u));
        chunk_q[j] = qv[j % 2u];
    }
    workgroupBarrier();
    let head = lid / (HEAD_DIM / 8u);  // this invocation's outputs: query head h0 + head, dims d..d+7
    let d = 8u * (lid % (HEAD_DIM / 8u));
    var m = MASKED;
    var l = 0.0;
    var acc = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var s0 = a; s0 < b; s0 += WG) {
        let s = s0 + lid;
        if (s < b) {
            var dots4 = vec4<f32>(0.0);  // the 4 heads' q . k
            let row = col + s * kv_dim;
            var e = 0u;
            // 32 dims' loads in flight before their sums: a loop of one load then its sums waited for the
            // memory once each 8 dims (H200, 8B shape, with eight value rows a step below: attention 23.9 ->
            // 19.8 us at depth 0, 42.7 -> 35.2 at 512)
            for (; e + 32u <= HEAD_DIM; e += 32u) {
                let k0 = k8(row + e);
                let k1 = k8(row + e + 8u);
                let k2 = k8(row + e + 16u);
                let k3 = k8(row + e + 24u);
                dots4 += (q_dot(e, k0) + q_dot(e + 8u, k1)) + (q_dot(e + 16u, k2) + q_dot(e + 24u, k3));
            }
            for (; e < HEAD_DIM; e += 8u) { dots4 += q_dot(e, k8(row + e)); }
            let capped = cap(dots4 * scale);
            for (var i = 0u; i < 4u; i++) { tile_scores[i * WG + lid] = capped[i]; }
        }
        workgroupBarrier();
        let n = min(WG, b - s0);
        var tile_max = MASKED;
        for (var i = 0u; i < n; i++) { tile_max = max(tile_max, tile_scores[head * WG + i]); }
        let m_new = max(m, tile_max);
        let rescale = exp(m - m_new);
        l *= rescale;
        acc[0] *= rescale;
        acc[1] *= rescale;
        var i = 0u;
        // eight, then four positions an iteration: their value rows' loads in flight together (four: decode at
        // depth 2048, H200: +4-7 %), then the rest one by one
        for (; i + 8u <= n; i += 8u) {
            let at = head * WG + i;
            let p = exp(vec4<f32>(tile_scores[at], tile_scores[at + 1u], tile_scores[at + 2u],
                                  tile_scores[at + 3u]) - m_new);
            let p2 = exp(vec4<f32>(tile_scores[at + 4u], tile_scores[at + 5u], tile_scores[at + 6u],
                                   tile_scores[at + 7u]) - m_new);
            let e = col + (s0 + i) * kv_dim + d;
            let v0 = v_row8(e);
            let v1 = v_row8(e + kv_dim);
            let v2 = v_row8(e + 2u * kv_dim);
            let v3 = v_row8(e + 3u * kv_dim);
            let v4 = v_row8(e + 4u * kv_dim);
            let v5 = v_row8(e + 5u * kv_dim);
            let v6 = v_row8(e + 6u * kv_dim);
            let v7 = v_row8(e + 7u * kv_dim);
            l += (p.x + p.y + p.z + p.w) + (p2.x + p2.y + p2.z + p2.w);
            acc[0] += (p.x * v0[0] + p.y * v1[0] + p.z * v2[0] + p.w * v3[0])
                + (p2.x * v4[0] + p2.y * v5[0] + p2.z * v6[0] + p2.w * v7[0]);
            acc[1] += (p.x * v0[1] + p.y * v1[1] + p.z * v2[1] + p.w * v3[1])
                + (p2.x * v4[1] + p2.y * v5[1] + p2.z * v6[1] + p2.w * v7[1]);
        }
        for (; i + 4u <= n; i += 4u) {
            let at = head * WG + i;
            let p = exp(vec4<f32>(tile_scores[at], tile_scores[at + 1u], tile_scores[at + 2u],
                                  tile_scores[at + 3u]) - m_new);
            let e = col + (s0 + i) * kv_dim + d;
            let v0 = v_row8(e);
            let v1 = v_row8(e + kv_dim);
            let v2 = v_row8(e + 2u * kv_dim);
            let v3 = v_row8(e + 3u * kv_dim);
            l += p.x + p.y + p.z + p.w;
            acc[0] += p.x * v0[0] + p.y * v1[0] + p.z * v2[0] + p.w * v3[0];
            acc[1] += p.x * v0[1] + p.y * v1[1] + p.z * v2[1] + p.w * v3[1];
        }
        for (; i < n; i++) {
            let p = exp(tile_scores[head * WG + i] - m_new);
            let v = v_row8(col + (s0 + i) * kv_dim + d);
            l += p;
            acc[0] += p * v[0];
            acc[1] += p * v[1];
        }
        m = m_new;
        workgroupBarrier();  // every invocation has read the tile's scores before the next tile's land
    }
    if (head < ch.n) {
        let h = (t * room() + part) * N_HEADS + ch.h0 + head;
        part_acc[(h * HEAD_DIM + d) / 4u] = acc[0];
        part_acc[(h * HEAD_DIM + d) / 4u + 1u] = acc[1];
        if (d == 0u) { part_ml[h] = vec2<f32>(m, l); }
    }
}

// Parts combined so far: the largest m (the sums are rescaled to it as it grows), the sum of l and of the parts'
// sums, each weighed by e^(m_i - top).
struct Folded { top: f32, l: f32, total: vec4<f32> }

// f with four more parts: their m and l (component k part k's) and their sums.
fn fold4(f: Folded, m: vec4<f32>, l: vec4<f32>, acc: array<vec4<f32>, 4>) -> Folded {
    let top = max(f.top, max(max(m.x, m.y), max(m.z, m.w)));
    let keep = exp(f.top - top);
    let w = exp(m - top);
    return Folded(top, f.l * keep + dot(w, l),
                  f.total * keep + ((w.x * acc[0] + w.y * acc[1]) + (w.z * acc[2] + w.w * acc[3])));
}

// Token t's dims 4i .. 4i + 3 of its head, folded from the head's parts s, s + SLICES, s + 2 SLICES, ..
fn folded(t: u32, i: u32, s: u32) -> Folded {
    let n = N_HEADS * HEAD_DIM / 4u;
    let h = i / (HEAD_DIM / 4u);
    let last = token_pos(t);
    let parts = parts_of(last + 1u - first_visible(last)).n;
    let mine = select(0u, (parts - s + SLICES - 1u) / SLICES, s < parts);  // this slice's parts
    let row = t * room() + s;  // (its part k is row + k SLICES)
    let a0 = row * N_HEADS + h;
    let e0 = row * n + i;
    let da = SLICES * N_HEADS;
    let de = SLICES * n;
    var f = Folded(MASKED, 0.0, vec4<f32>(0.0));
    var k = 0u;
    // Eight parts an iteration, all their loads issued before any of their sums, in one pass: two passes of a
    // load an iteration waited for memory twice a part (H200, 8B shape at depth 2048: the combine 34.0 -> 16.4 us
    // with four parts an iteration), and eight rather than four wait once per eight (135M shape, depth 2048: +4 %)
    for (; k + 8u <= mine; k += 8u) {
        let a = a0 + k * da;
        let e = e0 + k * de;
        var ml: array<vec2<f32>, 8>;
        var acc: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            ml[j] = ml_in[a + j * da];
            acc[j] = acc_in[e + j * de];
        }
        f = fold4(f, vec4<f32>(ml[0].x, ml[1].x, ml[2].x, ml[3].x), vec4<f32>(ml[0].y, ml[1].y, ml[2].y, ml[3].y),
                  array<vec4<f32>, 4>(acc[0], acc[1], acc[2], acc[3]));
        f = fold4(f, vec4<f32>(ml[4].x, ml[5].x, ml[6].x, ml[7].x), vec4<f32>(ml[4].y, ml[5].y, ml[6].y, ml[7].y),
                  array<vec4<f32>, 4>(acc[4], acc[5], acc[6], acc[7]));
    }
    if (k + 4u <= mine) {  // (at most once after the eights)
        let a = a0 + k * da;
        let e = e0 + k * de;
        let ml0 = ml_in[a];
        let ml1 = ml_in[a + da];
        let ml2 = ml_in[a + 2u * da];
        let ml3 = ml_in[a + 3u * da];
        let acc = array<vec4<f32>, 4>(acc_in[e], acc_in[e + de], acc_in[e + 2u * de], acc_in[e + 3u * de]);
        f = fold4(f, vec4<f32>(ml0.x, ml1.x, ml2.x, ml3.x), vec4<f32>(ml0.y, ml1.y, ml2.y, ml3.y), acc);
        k += 4u;
    }
    for (; k < mine; k++) {
        f = fold1(f, ml_in[a0 + k * da], acc_in[e0 + k * de]);
    }
    return f;
}

// f with one more part's (m, l) and sums.
fn fold1(f: Folded, ml: vec2<f32>, acc: vec4<f32>) -> Folded {
    let top = max(f.top, ml.x);
    let keep = exp(f.top - top);
    let w = exp(ml.x - top);
    return Folded(top, f.l * keep + w * ml.y, f.total * keep + w * acc);
}

// A workgroup's outputs: WG / SLICES of them (the invocation's, lid % outs), each folded by SLICES invocations
// (lid / outs the slice). One token's context at depth 2048 is 65 parts: folded by one invocation, nine waits on
// memory in a chain; by eight, two.
var<workgroup> slice_folds: array<vec4<f32>, 256>;  // (slice s, output o) at s outs + o: total
var<workgroup> slice_ml: array<vec2<f32>, 256>;  // and (top, l)

// Output `i`'s combination (valid in slice 0's invocations, lid < outs): f is this invocation's fold of its
// slice. A workgroup barrier where SLICES > 1: every invocation calls it.
fn combined(f: Folded, lid: u32) -> vec4<f32> {
    if (SLICES == 1u) { return f.total / f.l; }
    slice_folds[lid] = f.total;
    slice_ml[lid] = vec2<f32>(f.top, f.l);
    workgroupBarrier();
    let outs = WG / SLICES;
    var all = f;
    if (lid < outs) {
        for (var s = 1u; s < SLICES; s++) { all = fold1(all, slice_ml[s * outs + lid], slice_folds[s * outs + lid]); }
    }
    return all.total / all.l;
}

// Output i (the invocation's: lid % (WG / SLICES)) of token t, valid in slice 0's invocations; every invocation
// calls it (combined's barrier), those past the outputs (i >= n) with an empty fold.
fn combined_output(t: u32, i: u32, lid: u32) -> vec4<f32> {
    var f = Folded(MASKED, 1.0, vec4<f32>(0.0));
    if (i < N_HEADS * HEAD_DIM / 4u) { f = folded(t, i, lid / (WG / SLICES)); }
    return combined(f, lid);
}

@compute @workgroup_size(WG)
fn attend_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let outs = WG / SLICES;
    let i = wid.x * outs + lid % outs;  // 4 dims of one head
    let t = wid.y;  // (the workgroup's own: combined's barrier stays in uniform control flow)
    let n = N_HEADS * HEAD_DIM / 4u;
    if (t >= params.n_tokens) { return; }
    let out = combined_output(t, i, lid);
    if (i < n && lid < outs) { flash_out[t * n + i] = out; }
}

@compute @workgroup_size(WG)
fn attend_combine_quantized(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let outs = WG / SLICES;
    let i = wid.x * outs + lid % outs;
    let t = wid.y;
    let n = N_HEADS * HEAD_DIM / 4u;
    if (t >= params.n_tokens) { return; }
    let out = combined_output(t, i, lid);
    let mine = i < n && lid < outs;  // slice 0's invocations hold the outputs, lanes 8b .. 8b + 7 block b's
    if (mine) { flash_out[t * n + i] = out; }
    quantize4(N_IN / 32u, t, i, select(vec4<f32>(0.0), out, mine), lid, mine);
}
