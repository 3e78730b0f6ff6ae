// Q4_K and Q5_K: a weight library appended after quant.wgsl and quant_k.wgsl (whose binding and helpers it
// uses) for these types. Superblocks (bytes at each offset), weight l of sub-block j = 0..7
// (elements 32j + l):
//   Q4_K 144 bytes {0 f16 d; 2 f16 dmin; 4 u8 scales[12]; 16 u8 qs[128]}
//        q = nibble (j % 2) of qs[32 (j / 2) + l]; w = d * sc[j] * q - dmin * mn[j], where sc and mn
//        are 6 bits each, packed in scales[12] (scale_min_k4)
//   Q5_K 176 bytes {0 f16 d; 2 f16 dmin; 4 u8 scales[12]; 16 u8 qh[32]; 48 u8 qs[128]}
//        q = that nibble + 16 * bit j of qh[l]; w as Q4_K
// Both are 16-byte aligned: every word is loaded as it lies.

// Sub-block b % 8 of superblock b / 8 of row `row` (c: see quant_k.wgsl).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    return q45_k_parts(superblock(row, b), b % 8u, c, fresh);
}

// Sub-block j's 6-bit scale and min from Q4_K/Q5_K's scales[12] (s: its three words): j < 4 keeps
// them in the low 6 bits of bytes j and j + 4; j >= 4 in the nibbles of byte j + 4 with their top
// two bits in bytes j - 4 and j.
fn scale_min_k4(s: vec3<u32>, j: u32) -> vec2<f32> {
    let a = vec2<u32>(s.x, s.y) >> vec2<u32>(8u * (j & 3u));
    let c = s.z >> (8u * (j & 3u));
    let low = a & vec2<u32>(63u);
    let high = (vec2<u32>(c, c >> 4u) & vec2<u32>(0xFu)) | (((a >> vec2<u32>(6u)) & vec2<u32>(3u)) << vec2<u32>(4u));
    return vec2<f32>(select(low, high, j >= 4u));
}

// Q4_K or Q5_K (16-byte aligned: no shifting). Cache: a header; b, c Q5_K's high bits (all eight
// sub-blocks); d, e the nibbles of sub-blocks 2p and 2p + 1.
fn q45_k_parts(o: u32, j: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    let v = o >> 4u;
    if (fresh || j == 0u) {
        (*c).a = w4(v);
        if (WTYPE == Q5_K) {
            (*c).b = w4(v + 1u);
            (*c).c = w4(v + 2u);
        }
    }
    if (fresh || (j & 1u) == 0u) {
        let p = v + select(1u, 3u, WTYPE == Q5_K) + 2u * (j / 2u);
        (*c).d = w4(p);
        (*c).e = w4(p + 1u);
    }
    let q0 = (*c).d;
    let q1 = (*c).e;
    let high = (j & 1u) != 0u;
    var quants = array<vec4<f32>, 8>(
        nibbles(q0.x, high), nibbles(q0.y, high), nibbles(q0.z, high), nibbles(q0.w, high),
        nibbles(q1.x, high), nibbles(q1.y, high), nibbles(q1.z, high), nibbles(q1.w, high),
    );
    if (WTYPE == Q5_K) {
        let sh = vec4<u32>(4u * (j & 1u));
        let m4 = vec4<u32>(0x0F0F0F0Fu);
        let a = ((q0 >> sh) & m4) | q5_k_high((*c).b, j);
        let b = ((q1 >> sh) & m4) | q5_k_high((*c).c, j);
        quants = array<vec4<f32>, 8>(
            bytes4(a.x), bytes4(a.y), bytes4(a.z), bytes4(a.w), bytes4(b.x), bytes4(b.y), bytes4(b.z), bytes4(b.w),
        );
    }
    let h = (*c).a;
    let dm = unpack2x16float(h.x);
    let sm = scale_min_k4(h.yzw, j);
    return parts(quants, dm.x * sm.x, -dm.y * sm.y);
}

// Q5_K's fifth bits of sub-block j for 16 weights (qh[l] of them): bit j of each byte, moved to bit 4.
fn q5_k_high(qh: vec4<u32>, j: u32) -> vec4<u32> {
    return ((qh >> vec4<u32>(j)) & vec4<u32>(0x01010101u)) << vec4<u32>(4u);
}

// Sub-block b % 8 of superblock b / 8 of row `row` as integers (see IntParts); 16-byte aligned, so
// three 16-byte loads (four for Q5_K): the header, and the 32 bytes of nibbles sub-blocks 2p and 2p + 1
// share (twelve 4-byte loads before: see quant.wgsl's IntParts).
fn int_parts(row: u32, b: u32) -> IntParts {
    let v = superblock(row, b) >> 4u;
    let j = b % 8u;
    let five = WTYPE == Q5_K;
    let p = v + select(1u, 3u, five) + 2u * (j / 2u);
    let sh = vec4<u32>(4u * (j & 1u));
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    var lo = (w4(p) >> sh) & m4;
    var hi = (w4(p + 1u) >> sh) & m4;
    if (five) {
        lo |= q5_k_high(w4(v + 1u), j);
        hi |= q5_k_high(w4(v + 2u), j);
    }
    let h = w4(v);
    let dm = unpack2x16float(h.x);
    let sm = scale_min_k4(h.yzw, j);
    return int_parts1(lo, hi, dm.x * sm.x, -dm.y * sm.y);
}
