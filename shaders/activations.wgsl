// Activations shared by the products (their GLU), the element-wise ops and attention's soft-capping;
// appended to those modules (kernels.py _LIBRARIES).
//
// GLU's activation is SiLU (llama, Qwen, Phi) or, with GELU, GELU's tanh approximation (Gemma).
// Results are flushed to zero below f32's smallest normal: CPU adapters keep subnormals, and each one
// makes the FMAs that meet it in the next product ~100x slower (seen: 2.5x on a whole layer); an
// activation of a very negative gate times a small `up` lands there.

override GELU: bool = false;

const SMALLEST_NORMAL = 1.1754944e-38;

// tanh to ~1e-7 absolute at any x: the built-in may overflow to NaN for large |x| on some drivers
// (sinh / cosh), and 1 - 2 / (e^2x + 1) cancels near 0, where a short series is exact enough.
fn tanh4(x: vec4<f32>) -> vec4<f32> {
    let a = abs(x);
    let e = exp(-2.0 * min(a, vec4<f32>(20.0)));
    let far = (1.0 - e) / (1.0 + e);
    let x2 = x * x;
    let near = a * (1.0 - x2 / 3.0 * (1.0 - 0.4 * x2 * (1.0 - 17.0 / 42.0 * x2)));
    return sign(x) * select(far, near, a < vec4<f32>(0.0625));
}

// GELU, tanh approximation: x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as the equal
// x / (1 + e^(-2u)): 1 + tanh(u) would cancel for negative x, leaving f32 rounding for the whole result.
fn gelu4(x: vec4<f32>) -> vec4<f32> {
    let e = -1.5957691216057308 * (x + 0.044715 * x * x * x);  // -2u
    // Past e^88 (f32's largest is 3.4e38) the result is below 1e-36 |x|: 0, and exp never overflows.
    return select(x / (1.0 + exp(min(e, vec4<f32>(88.0)))), vec4<f32>(0.0), e > vec4<f32>(88.0));
}

fn glu4(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    var v: vec4<f32>;
    if (GELU) { v = gelu4(g) * u; } else { v = g / (1.0 + exp(-g)) * u; }
    return select(v, vec4<f32>(0.0), abs(v) < vec4<f32>(SMALLEST_NORMAL));
}

fn glu(g: f32, u: f32) -> f32 { return glu4(vec4<f32>(g), vec4<f32>(u)).x; }

// Soft-capping (Gemma 2's attention scores and logits): cap * tanh(x / cap).
fn capped4(x: vec4<f32>, cap: f32) -> vec4<f32> { return cap * tanh4(x / cap); }
