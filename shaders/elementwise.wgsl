// Element-wise ops on activation rows: the feed-forward's gated activation, residual adds, biases and
// soft-capping. activations.wgsl is appended to this module.
//
// Rows are [T, N] f32; one invocation per element, or per 4 elements in the entry points ending
// in 4 (used when N % 4 == 0: CPU adapters pay per load instruction, so vec4 loads are ~4x cheaper).
// Grid (ceil(N / WG), T), or (ceil(N / 4 / WG), T) for the vec4 entry points.
// Entry points (params at 0, then):
//   glu_mul[4]           1 gate, 2 up, 3 out          out = act(gate) * up (SiLU, or GELU when GELU)
//   glu_mul_in_gate[4]   1 gate (read-write), 2 up    gate = act(gate) * up
//   add[4]               1 x (read-write), 2 y        x += y (the residual stream)
//   add_bias[4]          1 x (read-write), 2 bias [N] x[t, :] += bias (Qwen2's q, k, v biases)
//   softcap[4]           1 x (read-write)             x = CAP * tanh(x / CAP) (Gemma 2's logits)
// Overrides: N, WG, GELU, CAP

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> params: StepParams;
// glu_mul
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> gate4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> up4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
// glu_mul_in_gate, add, add_bias, softcap
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y4: array<vec4<f32>>;

override N: u32;
override WG: u32 = 64u;
override CAP: f32 = 1.0;

// The flat index of element gid.x of row gid.y (rows of `width`), or NONE outside the batch.
const NONE = 0xFFFFFFFFu;

fn element(gid: vec3<u32>, width: u32) -> u32 {
    return select(NONE, gid.y * width + gid.x, gid.x < width && gid.y < params.n_tokens);
}

@compute @workgroup_size(WG)
fn glu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N);
    if (i != NONE) { out[i] = glu(gate[i], up[i]); }
}

@compute @workgroup_size(WG)
fn glu_mul4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N / 4u);
    if (i != NONE) { out4[i] = glu4(gate4[i], up4[i]); }
}

@compute @workgroup_size(WG)
fn glu_mul_in_gate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N);
    if (i != NONE) { x[i] = glu(x[i], y[i]); }
}

@compute @workgroup_size(WG)
fn glu_mul_in_gate4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N / 4u);
    if (i != NONE) { x4[i] = glu4(x4[i], y4[i]); }
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

@compute @workgroup_size(WG)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N);
    if (i != NONE) { x[i] = capped4(vec4<f32>(x[i]), CAP).x; }
}

@compute @workgroup_size(WG)
fn softcap4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element(gid, N / 4u);
    if (i != NONE) { x4[i] = capped4(x4[i], CAP); }
}
