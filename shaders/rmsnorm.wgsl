// RMSNorm over each row of activations.
//
// Bindings:  0 params: StepParams (n_tokens rows)
//            1 x: [T, N] f32
//            2 weight: [N] f32
//            3 out: [T, N] f32 (a different buffer from x)
// Formula:   out[t, i] = x[t, i] / sqrt(mean_i(x[t, i]^2) + EPS) * weight[i]
//            ACCUMULATE: out[t, i] += ... (Gemma's norms after a branch, added to the residual stream)
// Overrides: N, EPS, WG, ACCUMULATE
// Entry points: rmsnorm4 reads and writes vec4 (N % 4 == 0: CPU adapters pay per load, so 4x
//   fewer loads), rmsnorm any N; both give a row to one invocation, barrier-free (rows are a few
//   thousand elements; CPU adapters would pay more for a shared-memory reduction).
//   rmsnorm_rows gives a row to a workgroup of ROW_WG that reduces in workgroup memory: on a GPU one
//   invocation walking a row is a chain of dependent loads (~50 us for N = 576 on an H100).
//   rmsnorm_heads normalises heads in place (Qwen 3's and Gemma 3's q and k norms): binding 1 is
//   xh [T, ROW] f32 (read-write), whose columns COL + h * N.. for h < N_HEADS are head h; binding 2
//   the weight [N]; no binding 3. An invocation per head of a token.
// Grid:      (ceil(T / WG), 1, 1) for rmsnorm and rmsnorm4; (T, 1, 1) for rmsnorm_rows;
//            (ceil(T * N_HEADS / WG), 1, 1) for rmsnorm_heads.

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> xh: array<f32>;

override N: u32;
override EPS: f32;
override WG: u32 = 64u;
override ACCUMULATE: bool = false;
override N_HEADS: u32 = 1u;
override ROW: u32 = 0u;
override COL: u32 = 0u;
const ROW_WG: u32 = 128u; // a power of two (the tree reduction halves it)

var<workgroup> partial: array<f32, ROW_WG>;

fn put(i: u32, v: f32) {
    if (ACCUMULATE) { out[i] += v; } else { out[i] = v; }
}

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= params.n_tokens) { return; }
    let base = t * N;
    var s = 0.0;
    for (var i = 0u; i < N; i++) { s += x[base + i] * x[base + i]; }
    let scale = inverseSqrt(s / f32(N) + EPS);
    for (var i = 0u; i < N; i++) { put(base + i, x[base + i] * scale * weight[i]); }
}

@compute @workgroup_size(WG)
fn rmsnorm4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= params.n_tokens) { return; }
    let base = t * (N / 4u);
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < N / 4u; i++) { s += x4[base + i] * x4[base + i]; }
    let scale = inverseSqrt((s.x + s.y + s.z + s.w) / f32(N) + EPS);
    for (var i = 0u; i < N / 4u; i++) {
        let v = x4[base + i] * scale * weight4[i];
        if (ACCUMULATE) { out4[base + i] += v; } else { out4[base + i] = v; }
    }
}

@compute @workgroup_size(ROW_WG)
fn rmsnorm_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wid.x; // the same for the whole workgroup: returning early keeps the barriers uniform
    if (t >= params.n_tokens) { return; }
    let base = t * N;
    var s = 0.0;
    for (var i = li; i < N; i += ROW_WG) { s += x[base + i] * x[base + i]; }
    partial[li] = s;
    workgroupBarrier();
    for (var half = ROW_WG / 2u; half > 0u; half /= 2u) {
        if (li < half) { partial[li] += partial[li + half]; }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(N) + EPS);
    for (var i = li; i < N; i += ROW_WG) { put(base + i, x[base + i] * scale * weight[i]); }
}

@compute @workgroup_size(WG)
fn rmsnorm_heads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x / N_HEADS;
    if (t >= params.n_tokens) { return; }
    let base = t * ROW + COL + (gid.x % N_HEADS) * N;
    var s = 0.0;
    for (var i = 0u; i < N; i++) { s += xh[base + i] * xh[base + i]; }
    let scale = inverseSqrt(s / f32(N) + EPS);
    for (var i = 0u; i < N; i++) { xh[base + i] = xh[base + i] * scale * weight[i]; }
}
