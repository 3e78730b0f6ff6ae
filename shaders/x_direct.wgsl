// How matmul.wgsl's products load x where lanes do not share loads (adapters without subgroups, and the
// modules that only borrow matmul.wgsl's helpers): each invocation loads token t's block b itself.
// matmul_lanes.wgsl defines x_load in its place.
fn x_load(t: u32, b: u32) -> array<vec4<f32>, 8> { return x_block(t, b); }

// What the sums of token t's products are multiplied by (matmul_lanes.wgsl's folds the RMSNorm in): 1.
fn x_scale(t: u32) -> f32 { return 1.0; }
