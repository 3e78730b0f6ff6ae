// Quantising x for matvec_dot4.wgsl where it is made: the part of quantize_x.wgsl that turns 4 elements an
// invocation into x_blocks.wgsl's planes and scales, shared with a kernel whose output is the next product's
// x (attention_flash.wgsl's attend_combine: o's input without a dispatch of its own; matvec_dot4.wgsl's
// matvec_dot4_glu_quantized: down's). The including module declares xq_out and xs_out (read_write, as
// quantize_x.wgsl describes its xq and xs) and the override PLANES.
// Its workgroups are at most 256 invocations, a multiple of 8: invocations 8i .. 8i + 7 hold one block.

// VMAX: the largest |v| whose top plane is a signed byte (127 (256^PLANES - 1) / 255).
fn vmax() -> f32 { return select(select(127.0, 32639.0, PLANES == 2u), 8355711.0, PLANES == 3u); }

var<workgroup> largest: array<f32, 256>;  // each invocation's largest |x| of its 4
var<workgroup> sums: array<f32, 256>;  // and their sum (one plane: of their quantised integers)

// Elements 4e .. 4e + 3 of token t's x of `blocks` blocks, v, as part e % 8 of block e / 8 (lid: the
// invocation's index in its workgroup, e % 8 == lid % 8). A workgroup barrier: every invocation calls it,
// `inside` false for those past the row, which store nothing.
fn quantize4(blocks: u32, t: u32, e: u32, v: vec4<f32>, lid: u32, inside: bool) {
    let a = abs(v);
    largest[lid] = max(max(a.x, a.y), max(a.z, a.w));
    sums[lid] = dot(v, vec4<f32>(1.0));
    workgroupBarrier();
    let first = lid & ~7u;  // the block's first invocation
    var m_lo = 0.0;  // the largest |x| of elements 0..15, then of 16..31
    var m_hi = 0.0;
    for (var i = 0u; i < 4u; i++) {
        m_lo = max(m_lo, largest[first + i]);
        m_hi = max(m_hi, largest[first + 4u + i]);
    }
    // One plane scales each half block by its own largest |x|: an outlier channel then leaves 15 neighbours
    // few of the 8 bits, not 31. More planes keep one scale a block.
    let m = select(max(m_lo, m_hi), select(m_lo, m_hi, (lid & 4u) != 0u), PLANES == 1u);
    let inv = select(0.0, vmax() / m, m > 0.0);
    // (clamped: v * inv may round past the largest by f32's last bit)
    var q = clamp(vec4<i32>(round(v * inv)), vec4<i32>(-i32(vmax())), vec4<i32>(i32(vmax())));
    // One plane leaves x a byte (q8_1's), far from x: the weights' offsets m must then meet the sums of x as
    // quantised, as their quants meet x, or a type whose quants are all positive (Q4_0's q - 8 as q and m = -8 d)
    // leaves its mean quant times x's rounding uncancelled (twice the error, random Q4_0 rows). More planes
    // keep x's own sums, which they match to f32's rounding. (v is 0 past the row: its sums too.)
    if (PLANES == 1u) {
        sums[lid] = f32(q.x + q.y + q.z + q.w);  // (only read below, after the barrier)
        workgroupBarrier();
    }
    if (!inside) { return; }
    let b = e / 8u;
    let part = e % 8u;
    let half = part / 4u;
    for (var p = 0u; p < PLANES - 1u; p++) {  // peel off the low byte, signed: q = 256 h + byte
        let h = (q + vec4<i32>(128)) >> vec4<u32>(8u);
        xq_out[xq_index_of(blocks, t, 2u * (PLANES - 1u - p) + half, b)][part % 4u] = pack_bytes(q - h * 256);
        q = h;
    }
    xq_out[xq_index_of(blocks, t, half, b)][part % 4u] = pack_bytes(q);
    if (part == 0u) {
        let s0 = (sums[first] + sums[first + 1u]) + (sums[first + 2u] + sums[first + 3u]);
        let s1 = (sums[first + 4u] + sums[first + 5u]) + (sums[first + 6u] + sums[first + 7u]);
        if (PLANES == 1u) {  // (one plane: the sums are integers, in units of their half's scale)
            let d = vec2<f32>(m_lo, m_hi) / vmax();
            xs_out[t * blocks + b] = vec4<f32>(d.x, s0 * d.x, s1 * d.y, d.y);
        } else {
            xs_out[t * blocks + b] = vec4<f32>(m / vmax(), s0, s1, 0.0);
        }
    }
}

// Four signed bytes (-128..127) in one word, the first in the low byte.
fn pack_bytes(v: vec4<i32>) -> u32 {
    let u = bitcast<vec4<u32>>(v) & vec4<u32>(0xFFu);
    return u.x | (u.y << 8u) | (u.z << 16u) | (u.w << 24u);
}
