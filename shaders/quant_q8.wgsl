// Q8_0: a weight library appended after quant.wgsl (whose binding and helpers it uses) for this type.
//   Q8_0 34 bytes {0 f16 d; 2 i8 qs[32]}   w = d * q
// Blocks lie where block_at says (quant.wgsl) and start at any even byte.

// Block b of row `row` (c and fresh unused: see KCache).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    return q8_0_block(block_at(row, b));
}

// Q8_0 block at byte offset o (even): three 16-byte loads cover its 34 bytes wherever it starts.
fn q8_0_block(o: u32) -> QuantParts {
    let v = words3(o);
    let a = v[0];
    let b = v[1];
    let c = v[2];
    let odd = (o & 2u) != 0u;  // then d is the high half of a.x and the quants start word-aligned
    let d = unpack2x16float(select(a.x, a.x >> 16u, odd)).x;
    let q0 = select(half_shift(a, b), shl1(a, b), odd);
    let q1 = select(half_shift(b, c), shl1(b, c), odd);
    let quants = array<vec4<f32>, 8>(
        int8s(q0.x), int8s(q0.y), int8s(q0.z), int8s(q0.w),
        int8s(q1.x), int8s(q1.y), int8s(q1.z), int8s(q1.w),
    );
    return parts(quants, d, 0.0);
}

// Four signed bytes of q as f32 (unpack4xI8 by shifts: SwiftShader emulates that built-in slowly); where
// QUANTS_IN_PLACE, each at the top of its word (times 2^24), for x_in_place's x.
fn int8s(q: u32) -> vec4<f32> {
    let v = bitcast<i32>(q);
    if (QUANTS_IN_PLACE) {
        let top = vec4<i32>(-16777216i);  // 0xFF000000
        return vec4<f32>(vec4<i32>(v << 24u, v << 16u, v << 8u, v) & top);
    }
    return vec4<f32>(vec4<i32>(v << 24u, v << 16u, v << 8u, v) >> vec4<u32>(24u));
}

// Block b of row `row` as integers (see IntParts): Q8_0's bytes are already signed 8-bit quants.
fn int_parts(row: u32, b: u32) -> IntParts {
    let o = block_at(row, b);
    let d = unpack2x16float(u32_at(o)).x;
    return int_parts1(u32x4_at(o + 2u), u32x4_at(o + 18u), d, 0.0);
}
