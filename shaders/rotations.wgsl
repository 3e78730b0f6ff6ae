// Rotary position embedding's angles: a library for rope.wgsl and for the products that rotate their own
// outputs (rope_store.wgsl). The including module declares inv_freq and factors (as
// rope.wgsl's bindings 2 and 3 describe them) and the override MSCALE, and appends positions.wgsl.

// (sin a, cos a) to ~1e-7 for any a >= 0 a position can make. Built-in sin and cos may be far
// worse: Vulkan allows 2^-11 absolute error in [-pi, pi] and nothing outside it, and SwiftShader
// (Chromium's CPU WebGPU) was off by 1.5e-4. So: a = q * pi/2 + y with |y| <= pi/4 (pi/2 split in
// two, 1.5703125 exactly + the rest, so q * 1.5703125 is exact), then Taylor series on y.
fn sin_cos(a: f32) -> vec2<f32> {
    let q = round(a * 0.6366197723675814);
    let y = (a - q * 1.5703125) - q * 4.8382679489661923e-4;
    let y2 = y * y;
    let s = y * (1.0 - y2 / 6.0 * (1.0 - y2 / 20.0 * (1.0 - y2 / 42.0 * (1.0 - y2 / 72.0))));
    let c = 1.0 - y2 / 2.0 * (1.0 - y2 / 12.0 * (1.0 - y2 / 30.0 * (1.0 - y2 / 56.0)));
    switch u32(i32(q) & 3) {  // the quadrant
        case 0u: { return vec2<f32>(s, c); }
        case 1u: { return vec2<f32>(c, -s); }
        case 2u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

// Rotation i of token t: (sin, cos) of its angle token_pos(t) * inv_freq[i] / factors[i], times MSCALE.
fn rotation(t: u32, i: u32) -> vec2<f32> {
    return sin_cos(f32(token_pos(t)) * (inv_freq[i] / factors[i])) * MSCALE;
}

// The pair (a, b) turned by sc = rotation(t, i): (a cos - b sin, a sin + b cos).
fn rotate(a: f32, b: f32, sc: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a * sc.y - b * sc.x, a * sc.x + b * sc.y);
}
