// K-quants: superblocks of 256 weights in 8 sub-blocks of 32, each sub-block read as quant.wgsl's
// QuantParts. What the K-quant libraries share (appended after quant.wgsl, before the one of WTYPE:
// quant_q4k.wgsl for Q4_K and Q5_K, quant_q6k.wgsl, quant_q3k.wgsl, quant_q2k.wgsl). Each of those
// defines quant_parts(row, b, ...) as sub-block j = b % 8 of superblock b / 8 of the row. IQ4_XS's superblocks
// are read alike (quant_iq4.wgsl).
//
// Rows hold N_IN / 256 superblocks (N_IN % 256 == 0), so Q4_K (144 bytes) and Q5_K (176) superblocks
// are 16-byte aligned, Q2_K's (84) 4-byte and Q6_K's (210) and Q3_K's (110) only 2-byte aligned.
// A sub-block is assembled as bytes of up to 6 bits in u32 words (shifts and masks of four weights at
// once), then converted by bytes4. The 16-weight scales of Q6_K, Q3_K and Q2_K give QuantParts' two
// halves their own d and m (split_scales); the quants stay unsigned and the offsets (q - 32, q - 4, the
// mins) go into m, which products apply once to sum(x).
// Why a cache: lavapipe loads a word for each invocation in turn, so loads are most of a product's
// time. The scalar kernels walk each row's sub-blocks in order, so a row keeps the words that later
// sub-blocks share (the header, the scales, quants that two or four sub-blocks split) in its KCache
// and loads them only at the sub-block that first needs them: 9 to 20 loads a superblock, not 24 to
// 64. The condition is the same for every invocation, so no invocation waits on another's loads.
// With fresh (the subgroup kernel, embed) every sub-block loads what it uses.

// Superblock byte offset of sub-block b of row `row`.
fn superblock(row: u32, b: u32) -> u32 { return block_at(row, b / 8u); }

// 32 bytes from byte o (even): three loads wherever they start, two where blocks_padded (o a texel's start).
fn load32(o: u32) -> array<vec4<u32>, 2> {
    if (blocks_padded()) { return array<vec4<u32>, 2>(w4(o >> 4u), w4((o >> 4u) + 1u)); }
    let v = words3(o);
    let odd = (o & 2u) != 0u;
    return array<vec4<u32>, 2>(select(v[0], half_shift(v[0], v[1]), odd), select(v[1], half_shift(v[1], v[2]), odd));
}

// 16 bytes from byte o (even) and the two after them (as the low half of the second word): two loads,
// without realigning where blocks_padded.
fn load18(o: u32) -> array<vec4<u32>, 2> {
    if (blocks_padded()) { return array<vec4<u32>, 2>(w4(o >> 4u), w4((o >> 4u) + 1u)); }
    let v = words2(o);
    let odd = (o & 2u) != 0u;
    return array<vec4<u32>, 2>(select(v[0], half_shift(v[0], v[1]), odd), select(v[1], v[1] >> vec4<u32>(16u), odd));
}

// The bytes i and i + 1 (i even) of 16 bytes held in v, as the low 16 bits.
fn byte_pair(v: vec4<u32>, i: u32) -> u32 { return (v[i / 4u] >> (8u * (i & 3u))) & 0xFFFFu; }

// Two signed bytes (the low 16 bits of v) as f32.
fn int8_pair(v: u32) -> vec2<f32> {
    let s = bitcast<i32>(v);
    return vec2<f32>(vec2<i32>(s << 24u, s << 16u) >> vec2<u32>(24u));
}

// Bytes of 6 (Q6_K) or 3 (Q3_K) bits: `bits` low bits of lo's bytes after a shift by ls, and `hi_bits`
// of hi's bytes after a shift by hs, above them (four weights a word).
fn assemble(lo: vec4<u32>, ls: u32, lo_mask: u32, hi: vec4<u32>, hs: u32, hi_mask: u32, at: u32) -> vec4<u32> {
    return ((lo >> vec4<u32>(ls)) & vec4<u32>(lo_mask)) | (((hi >> vec4<u32>(hs)) & vec4<u32>(hi_mask)) << vec4<u32>(at));
}

fn quants8(a: vec4<u32>, b: vec4<u32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        bytes4(a.x), bytes4(a.y), bytes4(a.z), bytes4(a.w), bytes4(b.x), bytes4(b.y), bytes4(b.z), bytes4(b.w),
    );
}
