// Q6_K: a weight library appended after quant.wgsl and quant_k.wgsl (whose binding and helpers it
// uses) for this type. Superblocks (bytes at each offset), weight l of sub-block j = 0..7
// (elements 32j + l):
//   Q6_K 210 bytes {0 u8 ql[128]; 128 u8 qh[64]; 192 i8 scales[16]; 208 f16 d}, n = j / 4, k = j % 4:
//        q = nibble (k / 2) of ql[64n + 32 (k % 2) + l] + 16 * bits 2k..2k+1 of qh[32n + l]
//        w = d * scales[8n + 2k + l / 16] * (q - 32)

// Sub-block b % 8 of superblock b / 8 of row `row` (c: see quant_k.wgsl).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    return q6_k_parts(superblock(row, b), b % 8u, c, fresh);
}

// Q6_K at byte o (even). Cache: a scales[16]; b.x d; c, d the high bit pairs of sub-blocks 4n..4n+3;
// e, f the nibbles of ql chunk 64n (k = 0 and 2), g, h of chunk 64n + 32 (k = 1 and 3).
fn q6_k_parts(o: u32, j: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    let n = j / 4u;
    let k = j & 3u;
    if (fresh || j == 0u) {
        let s = load18(o + 192u);
        (*c).a = s[0];
        (*c).b = s[1];
    }
    if (fresh || k == 0u) {
        let h = load32(o + 128u + 32u * n);
        (*c).c = h[0];
        (*c).d = h[1];
    }
    if (fresh || k == 0u) {
        let l = load32(o + 64u * n + 32u * (k & 1u));
        (*c).e = l[0];
        (*c).f = l[1];
    } else if (k == 1u) {
        let l = load32(o + 64u * n + 32u);
        (*c).g = l[0];
        (*c).h = l[1];
    }
    let second = !fresh && (k & 1u) != 0u;
    let ls = 4u * (k >> 1u);
    let a = assemble(select((*c).e, (*c).g, second), ls, 0x0F0F0F0Fu, (*c).c, 2u * k, 0x03030303u, 4u);
    let b = assemble(select((*c).f, (*c).h, second), ls, 0x0F0F0F0Fu, (*c).d, 2u * k, 0x03030303u, 4u);
    let d = unpack2x16float((*c).b.x).x * int8_pair(byte_pair((*c).a, 8u * n + 2u * k));
    return QuantParts(quants8(a, b), d, -32.0 * d);
}

// Sub-block b % 8 of superblock b / 8 of row `row` as integers (see IntParts): 4 bits of ql and 2 of
// qh a byte; the halves have their own scales. Superblocks are 2-byte aligned: 32 bytes are three
// 16-byte loads and a half shift (load32), a scale pair or d one load (half_at).
fn int_parts(row: u32, b: u32) -> IntParts {
    let o = superblock(row, b);
    let j = b % 8u;
    let n = j / 4u;
    let k = j & 3u;
    let ql = load32(o + 64u * n + 32u * (k & 1u));
    let qh = load32(o + 128u + 32u * n);
    let ls = 4u * (k >> 1u);
    let lo = assemble(ql[0], ls, 0x0F0F0F0Fu, qh[0], 2u * k, 0x03030303u, 4u);
    let hi = assemble(ql[1], ls, 0x0F0F0F0Fu, qh[1], 2u * k, 0x03030303u, 4u);
    let d = unpack2x16float(half_at(o + 208u)).x * int8_pair(half_at(o + 192u + 8u * n + 2u * k));
    return IntParts(lo, hi, d, -32.0 * d);
}
