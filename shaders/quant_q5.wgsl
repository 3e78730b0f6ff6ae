// Q5_0 and Q5_1: a weight library appended after quant.wgsl (whose binding and helpers it uses) for
// these types. Blocks of 32 weights (bytes at each offset), elements 0..15 in the low nibbles of
// qs[0..15] and 16..31 in the high ones, bit i of qh element i's fifth bit:
//   Q5_0 22 bytes {0 f16 d; 2 u32 qh; 6 u8 qs[16]}            w = d * (q - 16)   (m = -16d)
//   Q5_1 24 bytes {0 f16 d; 2 f16 m; 4 u32 qh; 8 u8 qs[16]}   w = d * q + m
// Blocks lie where block_at says (quant.wgsl): Q5_0 blocks start at any even byte, Q5_1's at any
// multiple of 8. The quants are assembled four to a word (nibbles | high bits << 4, the bits spread
// by one multiply) before bytes4. Q5_0 blocks straddle three words wherever they start; the scalar
// kernels read a row's blocks in order, so they stream through its words (stream3), loading each once.

// Block b of row `row`; c: the row's words from its previous block (Q5_0, unless fresh). Q5_0 blocks laid out
// as Q5_1's (blocks_padded: texels) read as Q5_1's, their spare half-word where Q5_1 keeps m.
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    let o = block_at(row, b);
    if (WTYPE == Q5_0 && blocks_padded()) {
        let p = q5_1_block(o);
        return parts(p.q, p.d.x, -16.0 * p.d.x);
    }
    if (WTYPE == Q5_0) { return q5_0_block(o, c, fresh || b == 0u); }
    return q5_1_block(o);
}

// words3 for the blocks of a row read in order: c.a, c.b, c.c hold words k0..k0 + 2 of the previous
// block (k0 in c.d.x), and only the words past them are loaded (each word of a row once, not three
// times). first: the row's first block, or a caller reading blocks out of order.
fn stream3(o: u32, c: ptr<function, KCache>, first: bool) -> array<vec4<u32>, 3> {
    let k = o >> 4u;
    let step = select(k - (*c).d.x, 3u, first);  // 0..3 words on
    var n0 = (*c).a;
    var n1 = (*c).b;
    var n2 = (*c).c;
    if (step >= 1u) { n2 = w4(k + 2u); }  // which invocations load differs: each loads only its own
    if (step >= 2u) { n1 = w4(k + 1u); }
    if (step >= 3u) { n0 = w4(k); }
    let a = select(select(select((*c).a, (*c).b, step == 1u), (*c).c, step == 2u), n0, step >= 3u);
    let b = select(select((*c).b, (*c).c, step == 1u), n1, step >= 2u);
    (*c).a = a;
    (*c).b = b;
    (*c).c = n2;
    (*c).d.x = k;
    return shift_words(a, b, n2, o & 15u);
}

// Bits 0..3 of x moved to bits 0, 8, 16, 24 (one multiply: the four shifted copies do not overlap).
fn spread4(x: u32) -> u32 { return ((x & 0xFu) * 0x00204081u) & 0x01010101u; }

// Bits 0..15 of x as four words of spread4: bits 4i..4i+3 to the low bit of word i's bytes.
fn spread4v(x: u32) -> vec4<u32> { return vec4<u32>(spread4(x), spread4(x >> 4u), spread4(x >> 8u), spread4(x >> 12u)); }

// The 32 five-bit quants of a Q5 block, a byte each (elements 0..15 in the first vec4, 16..31 in the
// second), from its 16 bytes of nibbles and its 32 high bits.
fn q5_bytes(qs: vec4<u32>, qh: u32) -> array<vec4<u32>, 2> {
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    return array<vec4<u32>, 2>((qs & m4) | (spread4v(qh) << vec4<u32>(4u)),
                               ((qs >> vec4<u32>(4u)) & m4) | (spread4v(qh >> 16u) << vec4<u32>(4u)));
}

// The same quants as f32, in element order.
fn q5_quants(qs: vec4<u32>, qh: u32) -> array<vec4<f32>, 8> {
    let q = q5_bytes(qs, qh);
    return array<vec4<f32>, 8>(
        bytes4(q[0].x), bytes4(q[0].y), bytes4(q[0].z), bytes4(q[0].w),
        bytes4(q[1].x), bytes4(q[1].y), bytes4(q[1].z), bytes4(q[1].w),
    );
}

// Q5_0 block at byte offset o (even): three words cover its 22 bytes wherever it starts (streamed: a
// row read in order loads 22 / 16 words a block, on average).
fn q5_0_block(o: u32, c: ptr<function, KCache>, first: bool) -> QuantParts {
    let v = stream3(o, c, first);
    let a = v[0];
    let b = v[1];
    let odd = (o & 2u) != 0u;  // then d is the high half of a.x and qh, qs start word-aligned
    let d = unpack2x16float(select(a.x, a.x >> 16u, odd)).x;
    let qh = select((a.x >> 16u) | (a.y << 16u), a.y, odd);
    let qs = select(half_shift(shl1(a, b), shl1(b, b)), shl2(a, b), odd);
    return parts(q5_quants(qs, qh), d, -16.0 * d);
}

// Q5_1 block at byte offset o (a multiple of 8): two loads, the block in the first half or the second. (Also a
// Q5_0 block laid out as Q5_1's: its m is the spare half-word, 0.)
fn q5_1_block(o: u32) -> QuantParts {
    let a = w4(o >> 4u);
    let b = w4((o >> 4u) + 1u);
    let second = (o & 8u) != 0u;
    let head = select(a.xy, a.zw, second);  // {d, m}, qh
    let qs = select(vec4<u32>(a.zw, b.xy), b, second);
    let dm = unpack2x16float(head.x);
    return parts(q5_quants(qs, head.y), dm.x, dm.y);
}

// Block b of row `row` as integers (see IntParts): nibbles and high bits joined into 5-bit bytes.
fn int_parts(row: u32, b: u32) -> IntParts {
    let o = block_at(row, b);
    let one = WTYPE == Q5_1;  // {d, m, qh, qs} or {d, qh, qs}
    let head = u32_at(o);
    let qh = u32_at(o + select(2u, 4u, one));
    let q = q5_bytes(u32x4_at(o + select(6u, 8u, one)), qh);
    if (one) {
        let dm = unpack2x16float(head);
        return int_parts1(q[0], q[1], dm.x, dm.y);
    }
    let d = unpack2x16float(head).x;
    return int_parts1(q[0], q[1], d, -16.0 * d);
}
