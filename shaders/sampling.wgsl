// On-GPU sampling helpers: greedy argmax (of one row of logits, or of each of a batch's rows) and
// repetition penalties (one row).
//
// Entry points (params at 0):
//   argmax_partial  1 logits [rows, N] f32, 2 partial [rows, PARTS] vec2<u32> (value bits, index)
//                   invocation i of row r scans i, i + PARTS, ...   grid (PARTS / WG, rows, 1)
//   argmax_final    1 partial, 2 out [rows] u32: each row's index of its largest logit, lowest on ties
//                   grid (rows, 1, 1): one invocation a row, over its PARTS partials
//   penalize        1 logits (read-write), 2 entries [max_history] vec2<u32> (token, count),
//                   3 settings {count, repetition, presence, frequency}
//                   for each entry: l = l > 0 ? l / repetition : l * repetition;
//                   l -= presence + frequency * count (llama.cpp's order). grid (ceil(max_history / WG))
// Overrides: N (argmax), PARTS, WG
// Two barrier-free argmax passes instead of one workgroup tree: CPU adapters pay for barriers.

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }
struct Penalties { count: u32, repetition: f32, presence: f32, frequency: f32 }

@group(0) @binding(0) var<uniform> params: StepParams;
// argmax_partial
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial_out: array<vec2<u32>>;
// argmax_final
@group(0) @binding(1) var<storage, read> partial: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
// penalize
@group(0) @binding(1) var<storage, read_write> logits_rw: array<f32>;
@group(0) @binding(2) var<storage, read> entries: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> settings: Penalties;

override N: u32 = 1u;
override PARTS: u32 = 256u;
override WG: u32 = 64u;

const NONE = 0xFFFFFFFFu;

// Whether (v, i) beats (best, best_i): larger, or equal with a lower index. NaNs never win.
fn beats(v: f32, i: u32, best: f32, best_i: u32) -> bool {
    return v > best || (v == best && i < best_i);
}

@compute @workgroup_size(WG)
fn argmax_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= PARTS || params.n_tokens == 0u) { return; }
    let row = gid.y;
    // Finite, far below any logit, not -inf: Tint (Chrome) rejects a constant -inf such as bitcast<f32>(0xFF800000u).
    var best = -3.0e38;
    var best_i = NONE;
    for (var i = gid.x; i < N; i += PARTS) {
        let v = logits[row * N + i];
        if (beats(v, i, best, best_i)) { best = v; best_i = i; }
    }
    partial_out[row * PARTS + gid.x] = vec2<u32>(bitcast<u32>(best), best_i);
}

@compute @workgroup_size(1)
fn argmax_final(@builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x;
    var best = -3.0e38;
    var best_i = NONE;
    for (var p = 0u; p < PARTS; p++) {
        let e = partial[row * PARTS + p];
        if (e.y != NONE && beats(bitcast<f32>(e.x), e.y, best, best_i)) { best = bitcast<f32>(e.x); best_i = e.y; }
    }
    out[row] = select(best_i, 0u, best_i == NONE || params.n_tokens == 0u);
}

@compute @workgroup_size(WG)
fn penalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= settings.count || params.n_tokens == 0u) { return; }
    let e = entries[gid.x];
    let l = logits_rw[e.x];
    let scaled = select(l * settings.repetition, l / settings.repetition, l > 0.0);
    logits_rw[e.x] = scaled - (settings.presence + settings.frequency * f32(e.y));
}
