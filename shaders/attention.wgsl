// Causal grouped-query attention over the KV cache: three barrier-free dispatches.
//
// Query t of the batch sits at position p = params.pos + t and sees cache rows 0..p; query head h
// reads KV head h / (N_HEADS / N_KV_HEADS). Scores live in a scratch S [T, N_HEADS, CTX] f32 owned
// by the op (CTX = max_ctx rounded up to 4, read as vec4: 4 positions a load).
// The caches are [max_ctx, KV_DIM] as f32 bits, or (KV_F16) f16 pairs packed in u32 (kv_cache.wgsl),
// read 16 bytes at a time.
//
// Entry points; all bind params at 0:
//   scores   1 q [T, N_HEADS * HEAD_DIM] f32, 2 k_cache, 3 S
//            S[t, h, s] = q[t, h, :] . k[s, kvh, :] / sqrt(HEAD_DIM) for s <= p; -3e38 for the rest
//            of the last 4. grid (SPLIT / WG, N_HEADS, T): invocation i scores positions 4i..4i+3,
//            then 4(i + SPLIT).., so the grid need not know p (set per step in params)
//   softmax  1 S: S[t, h, 0..p] = softmax(S[t, h, 0..p]), zeros after p in its last 4
//            grid (ceil(T * N_HEADS / WG), 1, 1): an invocation per row, two passes (running max)
//   mix      1 S, 2 v_cache, 3 out [T, N_HEADS * HEAD_DIM] f32
//            out[t, h, d] = sum_{s <= p} S[t, h, s] * v[s, kvh, d]
//            grid (ceil(HEAD_DIM / 4 / WG), N_HEADS, T): an invocation per 4 dims of a head
// Overrides: N_HEADS, N_KV_HEADS, HEAD_DIM (multiple of 4), CTX, KV_F16, SPLIT, WG

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> params: StepParams;
// scores
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> scores_out: array<vec4<f32>>;
// softmax
@group(0) @binding(1) var<storage, read_write> probs: array<vec4<f32>>;
// mix
@group(0) @binding(1) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

override N_HEADS: u32;
override N_KV_HEADS: u32;
override HEAD_DIM: u32;
override CTX: u32;
override KV_F16: bool;
override SPLIT: u32 = 64u;
override WG: u32 = 64u;

const MASKED = -3.0e38;  // finite, so a running max that starts here never meets inf - inf

// Four cache elements e..e+3 (e a multiple of 4) as f32.
fn unpack4(word: vec4<u32>, e: u32) -> vec4<f32> {
    if (KV_F16) {
        let pair = select(word.xy, word.zw, (e & 4u) != 0u);
        return vec4<f32>(unpack2x16float(pair.x), unpack2x16float(pair.y));
    }
    return bitcast<vec4<f32>>(word);
}

fn k4(e: u32) -> vec4<f32> { return unpack4(k_cache[e >> select(2u, 3u, KV_F16)], e); }
fn v4(e: u32) -> vec4<f32> { return unpack4(v_cache[e >> select(2u, 3u, KV_F16)], e); }

@compute @workgroup_size(WG)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.y;
    let t = gid.z;
    if (t >= params.n_tokens) { return; }
    let last = params.pos + t;
    let kv_dim = N_KV_HEADS * HEAD_DIM;
    let col = (h / (N_HEADS / N_KV_HEADS)) * HEAD_DIM;
    let q_row = (t * N_HEADS + h) * (HEAD_DIM / 4u);
    let s_row = (t * N_HEADS + h) * (CTX / 4u);
    let scale = inverseSqrt(f32(HEAD_DIM));
    for (var g = gid.x; 4u * g <= last; g += SPLIT) {
        let s = 4u * g;
        // Positions past `last` re-read row `last` (written, finite) and are masked below.
        let e0 = min(s, last) * kv_dim + col;
        let e1 = min(s + 1u, last) * kv_dim + col;
        let e2 = min(s + 2u, last) * kv_dim + col;
        let e3 = min(s + 3u, last) * kv_dim + col;
        var acc = vec4<f32>(0.0);
        for (var d = 0u; d < HEAD_DIM; d += 4u) {
            let qv = q[q_row + d / 4u];
            acc += vec4<f32>(dot(qv, k4(e0 + d)), dot(qv, k4(e1 + d)), dot(qv, k4(e2 + d)), dot(qv, k4(e3 + d)));
        }
        let visible = vec4<u32>(s, s + 1u, s + 2u, s + 3u) <= vec4<u32>(last);
        scores_out[s_row + g] = select(vec4<f32>(MASKED), acc * scale, visible);
    }
}

@compute @workgroup_size(WG)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;  // t * N_HEADS + h
    if (row >= params.n_tokens * N_HEADS) { return; }
    let groups = (params.pos + row / N_HEADS) / 4u + 1u;
    let base = row * (CTX / 4u);
    var m = MASKED;
    var l = 0.0;
    for (var g = 0u; g < groups; g++) {
        let v = probs[base + g];
        let m_new = max(m, max(max(v.x, v.y), max(v.z, v.w)));
        l = l * exp(m - m_new) + dot(exp(v - m_new), vec4<f32>(1.0));
        m = m_new;
    }
    let inv = 1.0 / l;
    for (var g = 0u; g < groups; g++) {
        probs[base + g] = exp(probs[base + g] - m) * inv;  // masked entries underflow to 0
    }
}

@compute @workgroup_size(WG)
fn mix(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = 4u * gid.x;
    let h = gid.y;
    let t = gid.z;
    if (d >= HEAD_DIM || t >= params.n_tokens) { return; }
    let last = params.pos + t;
    let kv_dim = N_KV_HEADS * HEAD_DIM;
    let col = (h / (N_HEADS / N_KV_HEADS)) * HEAD_DIM + d;
    let s_row = (t * N_HEADS + h) * (CTX / 4u);
    var acc = vec4<f32>(0.0);
    for (var g = 0u; 4u * g <= last; g++) {
        let p = weights[s_row + g];  // zero past `last`; those rows re-read row `last`
        let s = 4u * g;
        acc += p.x * v4(min(s, last) * kv_dim + col) + p.y * v4(min(s + 1u, last) * kv_dim + col)
            + p.z * v4(min(s + 2u, last) * kv_dim + col) + p.w * v4(min(s + 3u, last) * kv_dim + col);
    }
    out[(t * N_HEADS + h) * (HEAD_DIM / 4u) + gid.x] = acc;
}
