// RMSNorm over each row of activations.
//
// Bindings:  0 params: StepParams (n_tokens rows)
//            1 x: [T, N] f32
//            2 weight: [N] f32
//            3 out: [T, N] f32 (a different buffer from x)
// Formula:   out[t, i] = x[t, i] / sqrt(mean_i(x[t, i]^2) + EPS) * weight[i]
// Overrides: N, EPS, WG
// Entry points: rmsnorm4 reads and writes vec4 (N % 4 == 0: CPU adapters pay per load, so 4x
//   fewer loads), rmsnorm any N.
// Grid:      (ceil(T / WG), 1, 1): one invocation per row, barrier-free (rows are short: a few
//            thousand elements; CPU adapters would pay more for a shared-memory reduction).

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;

override N: u32;
override EPS: f32;
override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= params.n_tokens) { return; }
    let base = t * N;
    var s = 0.0;
    for (var i = 0u; i < N; i++) { s += x[base + i] * x[base + i]; }
    let scale = inverseSqrt(s / f32(N) + EPS);
    for (var i = 0u; i < N; i++) { out[base + i] = x[base + i] * scale * weight[i]; }
}

@compute @workgroup_size(WG)
fn rmsnorm4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= params.n_tokens) { return; }
    let base = t * (N / 4u);
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < N / 4u; i++) { s += x4[base + i] * x4[base + i]; }
    let scale = inverseSqrt((s.x + s.y + s.z + s.w) / f32(N) + EPS);
    for (var i = 0u; i < N / 4u; i++) { out4[base + i] = x4[base + i] * scale * weight4[i]; }
}
