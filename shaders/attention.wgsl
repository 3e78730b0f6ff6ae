// Causal grouped-query attention over the KV cache for CPU adapters: one dispatch, `attend`.
//
// Query t of the batch sits at position p = token_pos(t) of its sequence and sees that sequence's
// positions 0..p, cache rows base..base + p (base = token_base(t); positions.wgsl); query head h
// reads KV head h / GROUP (GROUP = N_HEADS / N_KV_HEADS). Scores live in a scratch S [T, N_HEADS,
// CTX] f32 owned by the op (CTX = max_ctx rounded up to 4, read as vec4: 4 positions a load).
// The caches are [rows, KV_DIM] (max_ctx rows a sequence) as f32 bits, or (KV_F16) f16 pairs packed in u32 (kv_cache.wgsl).
// Loads are what CPU adapters pay for, so an invocation takes up to 4 query heads of one KV group
// (a "chunk") and reuses each key or value row it loads for all of them.
//
// attend  0 params, 1 q [T, Q_ROW] f32 (query heads lead each row), 2 k_cache, 3 S, 4 v_cache,
//         5 out [T, N_HEADS * HEAD_DIM] f32. Grid (1, N_KV_HEADS * CHUNKS, T) (CHUNKS = ceil(GROUP / 4)):
//         a workgroup per (token, chunk), in two phases split by a storage barrier:
//         scores   S[t, h, s] = cap(q[t, h, :] . k[s, kvh, :] * SCALE) for visible s; -3e38 for the rest
//                  of the last 4 and for positions outside the window. Visible: s <= p, and p - s < WINDOW
//                  when WINDOW (sliding-window layers). cap(x) = SOFTCAP tanh(x / SOFTCAP) when SOFTCAP
//                  (Gemma 2), else x. Invocation i scores positions 4i..4i+3, then 4(i + WG)..
//         weighing out[t, h, d] = sum_{s <= p} e^(S[t, h, s] - m) v[s, kvh, d] / sum_{s <= p} e^(S[t, h, s] - m),
//                  m the row's largest score: an invocation per 8 dims, the softmax folded in.
//         Why one dispatch: a dispatch costs lavapipe 40-70 us of thread wake-ups on two cores whatever it
//         does, and at the contexts of a chat attention's work is far less (scores, softmax and weighted
//         sum as three dispatches took 6.6 ms of a ~50 ms token of SmolLM2-135M, this 1.9: NOTES.md, session 25).
// GPUs ("subgroup" variant) take attention_flash.wgsl instead, which extends this module: the scores of a
// query's part of the context in workgroup memory, no scratch S.
// Overrides: N_HEADS, N_KV_HEADS, HEAD_DIM (multiple of 8), CTX, KV_F16, WG,
//            Q_ROW (0: N_HEADS * HEAD_DIM; a multiple of 4), SCALE (0: 1 / sqrt(HEAD_DIM)),
//            SOFTCAP (0: none), WINDOW (0: none)
// activations.wgsl is appended (tanh for SOFTCAP).

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> scores_out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

override N_HEADS: u32;
override N_KV_HEADS: u32;
override HEAD_DIM: u32;
override CTX: u32;
override KV_F16: bool;
override WG: u32 = 64u;
override Q_ROW: u32 = 0u;
override SCALE: f32 = 0.0;
override SOFTCAP: f32 = 0.0;
override WINDOW: u32 = 0u;
const MASKED = -3.0e38;  // finite, so a running max that starts here never meets inf - inf

// A chunk of up to 4 query heads sharing KV head `kv`: its first head and how many it holds.
struct Chunk { kv: u32, h0: u32, n: u32 }

fn chunk(y: u32) -> Chunk {
    let group = N_HEADS / N_KV_HEADS;
    let chunks = (group + 3u) / 4u;
    let kv = y / chunks;
    let c = y % chunks;
    return Chunk(kv, kv * group + 4u * c, min(group - 4u * c, 4u));
}

// Cache elements e..e+7 (e a multiple of 8) as two vec4: one 16-byte load for f16, two for f32.
fn unpack8(lo: vec4<u32>, hi: vec4<u32>) -> array<vec4<f32>, 2> {
    if (KV_F16) {
        return array<vec4<f32>, 2>(
            vec4<f32>(unpack2x16float(lo.x), unpack2x16float(lo.y)),
            vec4<f32>(unpack2x16float(lo.z), unpack2x16float(lo.w)),
        );
    }
    return array<vec4<f32>, 2>(bitcast<vec4<f32>>(lo), bitcast<vec4<f32>>(hi));
}

fn k8(e: u32) -> array<vec4<f32>, 2> {
    if (KV_F16) { return unpack8(k_cache[e / 8u], vec4<u32>()); }
    return unpack8(k_cache[e / 4u], k_cache[e / 4u + 1u]);
}

fn v8(e: u32) -> array<vec4<f32>, 2> {
    if (KV_F16) { return unpack8(v_cache[e / 8u], vec4<u32>()); }
    return unpack8(v_cache[e / 4u], v_cache[e / 4u + 1u]);
}

// Query head h0 + i of token t, dims d..d+7; heads past the chunk repeat its last (never stored).
fn q8(t: u32, ch: Chunk, i: u32, d: u32) -> array<vec4<f32>, 2> {
    let o = (t * select(Q_ROW, N_HEADS * HEAD_DIM, Q_ROW == 0u) + (ch.h0 + min(i, ch.n - 1u)) * HEAD_DIM + d) / 4u;
    return array<vec4<f32>, 2>(q[o], q[o + 1u]);
}

// Scores of one query head (dims d..d+7) against 4 key rows.
fn dots(qv: array<vec4<f32>, 2>, k0: array<vec4<f32>, 2>, k1: array<vec4<f32>, 2>,
        k2: array<vec4<f32>, 2>, k3: array<vec4<f32>, 2>) -> vec4<f32> {
    return vec4<f32>(
        dot(qv[0], k0[0]) + dot(qv[1], k0[1]), dot(qv[0], k1[0]) + dot(qv[1], k1[1]),
        dot(qv[0], k2[0]) + dot(qv[1], k2[1]), dot(qv[0], k3[0]) + dot(qv[1], k3[1]),
    );
}

fn cap(x: vec4<f32>) -> vec4<f32> {
    if (SOFTCAP > 0.0) { return capped4(x, SOFTCAP); }
    return x;
}

// Token t's chunk's scores of position groups first, first + stride, .. (4 positions each) into S.
fn score_groups(t: u32, ch: Chunk, first: u32, stride: u32) {
    let last = token_pos(t);
    let col = token_base(t) * N_KV_HEADS * HEAD_DIM + ch.kv * HEAD_DIM;  // the sequence's row 0, this head
    let kv_dim = N_KV_HEADS * HEAD_DIM;
    let scale = select(SCALE, inverseSqrt(f32(HEAD_DIM)), SCALE == 0.0);
    for (var g = first; 4u * g <= last; g += stride) {
        let s = 4u * g;
        // Positions past `last` re-read row `last` (written, finite) and are masked below.
        let e0 = min(s, last) * kv_dim + col;
        let e1 = min(s + 1u, last) * kv_dim + col;
        let e2 = min(s + 2u, last) * kv_dim + col;
        let e3 = min(s + 3u, last) * kv_dim + col;
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        for (var d = 0u; d < HEAD_DIM; d += 8u) {
            let k0 = k8(e0 + d);
            let k1 = k8(e1 + d);
            let k2 = k8(e2 + d);
            let k3 = k8(e3 + d);
            a0 += dots(q8(t, ch, 0u, d), k0, k1, k2, k3);
            if (ch.n > 1u) { a1 += dots(q8(t, ch, 1u, d), k0, k1, k2, k3); }
            if (ch.n > 2u) { a2 += dots(q8(t, ch, 2u, d), k0, k1, k2, k3); }
            if (ch.n > 3u) { a3 += dots(q8(t, ch, 3u, d), k0, k1, k2, k3); }
        }
        let ss = vec4<u32>(s, s + 1u, s + 2u, s + 3u);
        var visible = ss <= vec4<u32>(last);
        if (WINDOW > 0u) { visible = visible & (ss + vec4<u32>(WINDOW) > vec4<u32>(last)); }
        let row = (t * N_HEADS + ch.h0) * (CTX / 4u) + g;
        scores_out[row] = select(vec4<f32>(MASKED), cap(a0 * scale), visible);
        if (ch.n > 1u) { scores_out[row + CTX / 4u] = select(vec4<f32>(MASKED), cap(a1 * scale), visible); }
        if (ch.n > 2u) { scores_out[row + 2u * CTX / 4u] = select(vec4<f32>(MASKED), cap(a2 * scale), visible); }
        if (ch.n > 3u) { scores_out[row + 3u * CTX / 4u] = select(vec4<f32>(MASKED), cap(a3 * scale), visible); }
    }
}

fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

// The largest score of each of the chunk's heads over groups 0..groups - 1 of S from `row` on.
fn row_maxima(ch: Chunk, row: u32, groups: u32) -> vec4<f32> {
    var m = vec4<f32>(MASKED);
    for (var g = 0u; g < groups; g++) {
        m.x = max(m.x, max4(scores_out[row + g]));
        if (ch.n > 1u) { m.y = max(m.y, max4(scores_out[row + CTX / 4u + g])); }
        if (ch.n > 2u) { m.z = max(m.z, max4(scores_out[row + 2u * CTX / 4u + g])); }
        if (ch.n > 3u) { m.w = max(m.w, max4(scores_out[row + 3u * CTX / 4u + g])); }
    }
    return m;
}

// e^(s - m), flushed to 0 below f32's normal range: masked entries underflow to 0, and so do
// subnormals, on purpose: CPU adapters keep them, and each one would slow the FMAs that meet it ~100-fold.
fn prob(s: vec4<f32>, m: f32) -> vec4<f32> {
    let p = exp(s - m);
    return select(p, vec4<f32>(0.0), p < vec4<f32>(SMALLEST_NORMAL));
}

// Adds 4 positions' value rows (dims d..d+7), weighted by p, to acc, and p's sum to l.
fn weigh(acc: ptr<function, array<vec4<f32>, 2>>, l: ptr<function, f32>, p: vec4<f32>, v0: array<vec4<f32>, 2>,
         v1: array<vec4<f32>, 2>, v2: array<vec4<f32>, 2>, v3: array<vec4<f32>, 2>) {
    (*acc)[0] += p.x * v0[0] + p.y * v1[0] + p.z * v2[0] + p.w * v3[0];
    (*acc)[1] += p.x * v0[1] + p.y * v1[1] + p.z * v2[1] + p.w * v3[1];
    *l += dot(p, vec4<f32>(1.0));
}

// out's dims d..d+7 of the chunk's heads for token t: the value rows weighted by softmax(S), its maxima m.
fn weigh_rows(t: u32, ch: Chunk, d: u32, m: vec4<f32>) {
    let last = token_pos(t);
    let kv_dim = N_KV_HEADS * HEAD_DIM;
    let col = token_base(t) * kv_dim + ch.kv * HEAD_DIM + d;
    let row = (t * N_HEADS + ch.h0) * (CTX / 4u);  // head h0 + i's scores start i * CTX / 4 later
    var a0: array<vec4<f32>, 2>;  // four variables: passing &a[i] of one array aborted the process on lavapipe
    var a1: array<vec4<f32>, 2>;
    var a2: array<vec4<f32>, 2>;
    var a3: array<vec4<f32>, 2>;
    var l0 = 0.0;
    var l1 = 0.0;
    var l2 = 0.0;
    var l3 = 0.0;
    for (var g = 0u; g <= last / 4u; g++) {
        // Probabilities past `last` are zero; their positions re-read row `last`.
        let s = 4u * g;
        let v0 = v8(min(s, last) * kv_dim + col);
        let v1 = v8(min(s + 1u, last) * kv_dim + col);
        let v2 = v8(min(s + 2u, last) * kv_dim + col);
        let v3 = v8(min(s + 3u, last) * kv_dim + col);
        weigh(&a0, &l0, prob(scores_out[row + g], m.x), v0, v1, v2, v3);
        if (ch.n > 1u) { weigh(&a1, &l1, prob(scores_out[row + CTX / 4u + g], m.y), v0, v1, v2, v3); }
        if (ch.n > 2u) { weigh(&a2, &l2, prob(scores_out[row + 2u * CTX / 4u + g], m.z), v0, v1, v2, v3); }
        if (ch.n > 3u) { weigh(&a3, &l3, prob(scores_out[row + 3u * CTX / 4u + g], m.w), v0, v1, v2, v3); }
    }
    let o = ((t * N_HEADS + ch.h0) * HEAD_DIM + d) / 4u;  // head h0 + i's output is i * HEAD_DIM / 4 later
    out[o] = a0[0] / l0;
    out[o + 1u] = a0[1] / l0;
    if (ch.n > 1u) { out[o + HEAD_DIM / 4u] = a1[0] / l1; out[o + HEAD_DIM / 4u + 1u] = a1[1] / l1; }
    if (ch.n > 2u) { out[o + HEAD_DIM / 2u] = a2[0] / l2; out[o + HEAD_DIM / 2u + 1u] = a2[1] / l2; }
    if (ch.n > 3u) { out[o + 3u * HEAD_DIM / 4u] = a3[0] / l3; out[o + 3u * HEAD_DIM / 4u + 1u] = a3[1] / l3; }
}

@compute @workgroup_size(WG)
fn attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    if (t >= params.n_tokens) { return; }
    let ch = chunk(wid.y);
    score_groups(t, ch, lid, WG);
    storageBarrier();  // every score of the rows before any is read
    let m = row_maxima(ch, (t * N_HEADS + ch.h0) * (CTX / 4u), token_pos(t) / 4u + 1u);
    for (var d = 8u * lid; d < HEAD_DIM; d += 8u * WG) { weigh_rows(t, ch, d, m); }
}
