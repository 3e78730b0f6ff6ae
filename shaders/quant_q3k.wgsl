// Q3_K: a weight library appended after quant.wgsl and quant_k.wgsl (whose binding and helpers it
// uses) for this type. Superblocks (bytes at each offset), weight l of sub-block j = 0..7
// (elements 32j + l):
//   Q3_K 110 bytes {0 u8 hmask[32]; 32 u8 qs[64]; 96 u8 scales[12]; 108 f16 d}, n = j / 4, k = j % 4:
//        q = bits 2k..2k+1 of qs[32n + l] + 4 * bit (4n + k) of hmask[l]
//        w = d * (sc[8n + 2k + l / 16] - 32) * (q - 4), sc: 16 scales of 6 bits (scale_pair_k3)

// Sub-block b % 8 of superblock b / 8 of row `row` (c: see quant_k.wgsl).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    return q3_k_parts(superblock(row, b), b % 8u, c, fresh);
}

// Scales 2j and 2j + 1 of Q3_K's 16 (the halves of sub-block j), 6 bits each minus 32, from scales[12]
// held in s: scale i has its low nibble in byte i % 8 (shifted by 4 (i / 8)) and its top two bits in
// byte 8 + i % 4 (shifted by 2 (i / 4)); a pair shares both shifts and sits in adjacent bytes.
fn scale_pair_k3(s: vec4<u32>, j: u32) -> vec2<f32> {
    let i = 2u * j;
    let lo = byte_pair(s, i & 7u) >> (4u * (i / 8u));
    let hi = byte_pair(s, 8u + (i & 3u)) >> (2u * (i / 4u));
    let v = (vec2<u32>(lo, lo >> 8u) & vec2<u32>(0xFu)) | ((vec2<u32>(hi, hi >> 8u) & vec2<u32>(3u)) << vec2<u32>(4u));
    return vec2<f32>(v) - 32.0;
}

// Q3_K at byte o (even). Cache: a, b hmask (all eight sub-blocks); c scales[12] and d; d, e the bit
// pairs of sub-blocks 4n..4n+3.
fn q3_k_parts(o: u32, j: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    let n = j / 4u;
    let k = j & 3u;
    if (fresh || j == 0u) {
        let h = load32(o);
        (*c).a = h[0];
        (*c).b = h[1];
        (*c).c = load18(o + 96u)[0];  // scales[12], then d
    }
    if (fresh || k == 0u) {
        let q = load32(o + 32u + 32u * n);
        (*c).d = q[0];
        (*c).e = q[1];
    }
    let a = assemble((*c).d, 2u * k, 0x03030303u, (*c).a, 4u * n + k, 0x01010101u, 2u);
    let b = assemble((*c).e, 2u * k, 0x03030303u, (*c).b, 4u * n + k, 0x01010101u, 2u);
    let d = unpack2x16float((*c).c.w).x * scale_pair_k3((*c).c, j);
    return QuantParts(quants8(a, b), d, -4.0 * d);
}

// Sub-block b % 8 of superblock b / 8 of row `row` as integers (see IntParts); 2-byte aligned: 32 bytes
// are three 16-byte loads and a half shift (load32), scales[12] and d two (load18).
fn int_parts(row: u32, b: u32) -> IntParts {
    let o = superblock(row, b);
    let j = b % 8u;
    let n = j / 4u;
    let k = j & 3u;
    let q = load32(o + 32u + 32u * n);
    let h = load32(o);
    let lo = assemble(q[0], 2u * k, 0x03030303u, h[0], 4u * n + k, 0x01010101u, 2u);
    let hi = assemble(q[1], 2u * k, 0x03030303u, h[1], 4u * n + k, 0x01010101u, 2u);
    let scales = load18(o + 96u)[0];  // scales[12], then d
    let d = unpack2x16float(scales.w).x * scale_pair_k3(scales, j);
    return IntParts(lo, hi, d, -4.0 * d);
}
