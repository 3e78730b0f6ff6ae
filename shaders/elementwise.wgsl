// Element-wise ops on activation rows: SwiGLU's gate, residual adds, biases.
//
// Rows are [T, N] f32; one invocation per element. Grid (ceil(N / WG), T).
// Entry points (params at 0, then):
//   silu_mul          1 gate, 2 up, 3 out     out = silu(gate) * up, silu(g) = g / (1 + exp(-g))
//   silu_mul_in_gate  1 gate (read-write), 2 up    gate = silu(gate) * up
//   add               1 x (read-write), 2 y   x += y (the residual stream)
//   add_bias          1 x (read-write), 2 bias [N]   x[t, :] += bias (Qwen2's q, k, v biases)
// Overrides: N, WG

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;

override N: u32;
override WG: u32 = 64u;

fn silu(g: f32) -> f32 { return g / (1.0 + exp(-g)); }

// The flat index of (token gid.y, element gid.x), or N * T (never valid) outside the batch.
fn element(gid: vec3<u32>) -> u32 {
    if (gid.x >= N || gid.y >= params.n_tokens) { return 0xFFFFFFFFu; }
    return gid.y * N + gid.x;
}

@compute @workgroup_size(WG)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid);
    if (i == 0xFFFFFFFFu) { return; }
    out[i] = silu(gate[i]) * up[i];
}

@compute @workgroup_size(WG)
fn silu_mul_in_gate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid);
    if (i == 0xFFFFFFFFu) { return; }
    x[i] = silu(x[i]) * y[i];
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid);
    if (i == 0xFFFFFFFFu) { return; }
    x[i] += y[i];
}

@compute @workgroup_size(WG)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid);
    if (i == 0xFFFFFFFFu) { return; }
    x[i] += y[gid.x];
}
