// Q2_K: a weight library appended after quant.wgsl and quant_k.wgsl (whose binding and helpers it
// uses) for this type. Superblocks (bytes at each offset), weight l of sub-block j = 0..7
// (elements 32j + l):
//   Q2_K  84 bytes {0 u8 scales[16]; 16 u8 qs[64]; 80 f16 d; 82 f16 dmin}, n = j / 4, k = j % 4:
//        q = bits 2k..2k+1 of qs[32n + l], s = scales[8n + 2k + l / 16]
//        w = d * (s & 15) * q - dmin * (s >> 4)

// Sub-block b % 8 of superblock b / 8 of row `row` (c: see quant_k.wgsl).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    return q2_k_parts(superblock(row, b), b % 8u, c, fresh);
}

// Q2_K at byte o (a multiple of 4; of 16 where blocks_padded). Cache: a scales[16]; b.x d and dmin; c, d the bit pairs of
// sub-blocks 4n..4n+3.
fn q2_k_parts(o: u32, j: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    let n = j / 4u;
    let k = j & 3u;
    if (fresh || j == 0u) {
        (*c).a = load18(o)[0];
        (*c).b = vec4<u32>(word_at(o + 80u));
    }
    if (fresh || k == 0u) {
        if (blocks_padded()) {  // texels: a superblock starts a texel, as its fields then do
            let q = load32(o + 16u + 32u * n);
            (*c).c = q[0];
            (*c).d = q[1];
        } else {
            let q = words3(o + 16u + 32u * n);  // 4-byte aligned: no half shift
            (*c).c = q[0];
            (*c).d = q[1];
        }
    }
    let m2 = vec4<u32>(0x03030303u);
    let a = ((*c).c >> vec4<u32>(2u * k)) & m2;
    let b = ((*c).d >> vec4<u32>(2u * k)) & m2;
    let dm = q2_k_scales(byte_pair((*c).a, 8u * n + 2u * k), unpack2x16float((*c).b.x));
    return QuantParts(quants8(a, b), dm[0], dm[1]);
}

// The halves' d and m of a sub-block from its two scale bytes (the low 16 bits of sc: scale in the low
// nibble, min in the high) and the superblock's {d, dmin}.
fn q2_k_scales(sc: u32, dm: vec2<f32>) -> array<vec2<f32>, 2> {
    let s = vec2<u32>(sc, sc >> 8u);
    return array<vec2<f32>, 2>(dm.x * vec2<f32>(s & vec2<u32>(0xFu)), -dm.y * vec2<f32>((s >> vec2<u32>(4u)) & vec2<u32>(0xFu)));
}

// Sub-block b % 8 of superblock b / 8 of row `row` as integers (see IntParts); 4-byte aligned: the 32
// bytes of bit pairs three 16-byte loads (words3), the scale pair and {d, dmin} one each (word_at).
fn int_parts(row: u32, b: u32) -> IntParts {
    let o = superblock(row, b);
    let j = b % 8u;
    let n = j / 4u;
    let k = j & 3u;
    let q = words3(o + 16u + 32u * n);
    let m2 = vec4<u32>(0x03030303u);
    let lo = (q[0] >> vec4<u32>(2u * k)) & m2;
    let hi = (q[1] >> vec4<u32>(2u * k)) & m2;
    let sc = (word_at(o + 8u * n + 4u * (k / 2u)) >> (16u * (k & 1u))) & 0xFFFFu;  // scales 8n + 2k, 8n + 2k + 1
    let dm = q2_k_scales(sc, unpack2x16float(word_at(o + 80u)));
    return IntParts(lo, hi, dm[0], dm[1]);
}
