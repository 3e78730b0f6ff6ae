// The weights as a storage buffer (GPUs): quant.wgsl's w4(i), the tensor's bytes 16i .. 16i + 15.
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;

fn w4(i: u32) -> vec4<u32> { return w[i]; }
