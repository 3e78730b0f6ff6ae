// RMSNorm over each row of activations.
//
// Bindings:  0 params: StepParams (n_tokens rows)
//            1 x: [T, N] f32
//            2 weight: [N] f32
//            3 out: [T, N] f32 (a different buffer from x)
// Formula:   out[t, i] = x[t, i] / sqrt(mean_i(x[t, i]^2) + EPS) * weight[i]
// Overrides: N, EPS, WG
// Grid:      (ceil(T / WG), 1, 1): one invocation per row, barrier-free (rows are short: a few
//            thousand elements; CPU adapters would pay more for a shared-memory reduction).

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override N: u32;
override EPS: f32;
override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= params.n_tokens) { return; }
    let base = t * N;
    // Four partial sums: a shorter dependency chain than one running sum.
    var s = vec4<f32>(0.0);
    var i = 0u;
    for (; i + 4u <= N; i += 4u) {
        let v = vec4<f32>(x[base + i], x[base + i + 1u], x[base + i + 2u], x[base + i + 3u]);
        s += v * v;
    }
    for (; i < N; i++) { s.x += x[base + i] * x[base + i]; }
    let scale = inverseSqrt((s.x + s.y + s.z + s.w) / f32(N) + EPS);
    for (var k = 0u; k < N; k++) { out[base + k] = x[base + k] * scale * weight[k]; }
}
