// Element-wise ops on activation rows: SwiGLU's gate, residual adds, biases.
//
// Rows are [T, N] f32; one invocation per element, or per 4 elements in the entry points ending
// in 4 (used when N % 4 == 0: CPU adapters pay per load instruction, so vec4 loads are ~4x cheaper).
// Grid (ceil(N / WG), T), or (ceil(N / 4 / WG), T) for the vec4 entry points.
// Entry points (params at 0, then):
//   silu_mul[4]          1 gate, 2 up, 3 out          out = silu(gate) * up, silu(g) = g / (1 + exp(-g))
//   silu_mul_in_gate[4]  1 gate (read-write), 2 up    gate = silu(gate) * up
//   add[4]               1 x (read-write), 2 y        x += y (the residual stream)
//   add_bias[4]          1 x (read-write), 2 bias [N] x[t, :] += bias (Qwen2's q, k, v biases)
// Overrides: N, WG
// SwiGLU's results are flushed to zero below f32's smallest normal: CPU adapters keep subnormals,
// and each one makes the FMAs that meet it in the next matmul ~100x slower (seen: 2.5x on a
// whole layer). silu of a very negative gate times a small `up` lands there.

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> params: StepParams;
// silu_mul
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> gate4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> up4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
// silu_mul_in_gate, add, add_bias
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y4: array<vec4<f32>>;

override N: u32;
override WG: u32 = 64u;

const SMALLEST_NORMAL = 1.1754944e-38;

fn swiglu(g: f32, u: f32) -> f32 {
    let v = g / (1.0 + exp(-g)) * u;
    return select(v, 0.0, abs(v) < SMALLEST_NORMAL);
}

fn swiglu4(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    let v = g / (1.0 + exp(-g)) * u;
    return select(v, vec4<f32>(0.0), abs(v) < vec4<f32>(SMALLEST_NORMAL));
}

// The flat index of element gid.x of row gid.y (rows of `width`), or NONE outside the batch.
const NONE = 0xFFFFFFFFu;

fn element(gid: vec3<u32>, width: u32) -> u32 {
    return select(NONE, gid.y * width + gid.x, gid.x < width && gid.y < params.n_tokens);
}

@compute @workgroup_size(WG)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N);
    if (i != NONE) { out[i] = swiglu(gate[i], up[i]); }
}

@compute @workgroup_size(WG)
fn silu_mul4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N / 4u);
    if (i != NONE) { out4[i] = swiglu4(gate4[i], up4[i]); }
}

@compute @workgroup_size(WG)
fn silu_mul_in_gate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N);
    if (i != NONE) { x[i] = swiglu(x[i], y[i]); }
}

@compute @workgroup_size(WG)
fn silu_mul_in_gate4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N / 4u);
    if (i != NONE) { x4[i] = swiglu4(x4[i], y4[i]); }
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N);
    if (i != NONE) { x[i] += y[i]; }
}

@compute @workgroup_size(WG)
fn add4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N / 4u);
    if (i != NONE) { x4[i] += y4[i]; }
}

@compute @workgroup_size(WG)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N);
    if (i != NONE) { x[i] += y[gid.x]; }
}

@compute @workgroup_size(WG)
fn add_bias4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N / 4u);
    if (i != NONE) { x4[i] += y4[gid.x]; }
}
