// Weight formats: GGUF tensors read straight from the file's bytes, never expanded in memory.
//
// A library, not a kernel: kernels.py appends it to the modules that read weights (matmul*.wgsl,
// embed.wgsl), since WGSL has no include, followed by the library that decodes the pipeline's WTYPE
// and defines quant_parts: quant_q4.wgsl (Q4_0, Q4_1; also taken by the floats, which never call
// it), quant_q5.wgsl (Q5_0, Q5_1), quant_q8.wgsl, or quant_k.wgsl with quant_q4k.wgsl (Q4_K, Q5_K),
// quant_q6k.wgsl, quant_q3k.wgsl, quant_q2k.wgsl or quant_iq4.wgsl (IQ4_NL, IQ4_XS). Only one decoder a pipeline keeps compiles short:
// lavapipe inlines every call of quant_parts (once for each of a matmul kernel's 16 rows) before it
// drops the cases of a switch on WTYPE.
// This file declares the type ids and what every family shares; before it comes the library that binds
// the weights and defines w4 and w1 (weights_buffer.wgsl on GPUs, weights_texture.wgsl on CPU adapters).
//
// Bindings:  @binding(1) one tensor's raw bytes, [rows, N_IN] in its ggml type, read as 16-byte words:
//            w4(i) is bytes 16i .. 16i + 15, w1(i) bytes 4i .. 4i + 3 (kernels.py pads a tensor that ends
//            mid-word); block_at(row, b) is where a row's block starts (the weights library's: in a buffer
//            row after row as GGUF stores them, in texels tiles of rows).
// Overrides: WTYPE  ggml type id (the constants below; a switch the compiler folds)
//            N_IN   elements per row: a multiple of 4 for F32/F16/BF16, of 32 for the blocks, of 256
//                   for the K-quants
// Floats: F32, F16, BF16 (bfloat16: the high half of an f32), w = the value.
// Quantised types (layouts in their library) give a block of 32 weights as QuantParts: integer
// quants and the scale and offset that make them weights, w = d * q + m.
// Why vec4<u32>: CPU adapters pay per load, not per byte (lavapipe loads a word for each invocation
// in turn, each 32-bit part apart: a load of 16 bytes costs about twice one of 4), so a block is
// fetched as the 16-byte words that cover it, then shifted into place with selects, which are cheap.
// f16 values are decoded with unpack2x16float, so no shader-f16 feature is needed.

const F32 = 0u;
const F16 = 1u;
const Q4_0 = 2u;
const Q4_1 = 3u;
const Q5_0 = 6u;
const Q5_1 = 7u;
const Q8_0 = 8u;
const Q2_K = 10u;
const Q3_K = 11u;
const Q4_K = 12u;
const Q5_K = 13u;
const Q6_K = 14u;
const IQ4_NL = 20u;
const IQ4_XS = 23u;
const BF16 = 30u;

override WTYPE: u32;
override N_IN: u32;

fn is_float() -> bool { return WTYPE == F32 || WTYPE == F16 || WTYPE == BF16; }
fn is_kquant() -> bool { return WTYPE >= Q2_K && WTYPE <= Q6_K; }
fn in_superblocks() -> bool { return is_kquant() || WTYPE == IQ4_XS; }  // of 256 weights, 8 sub-blocks of 32

// Bytes of one block (a superblock of 256 weights for the K-quants) where the weights lie (the weights library's
// stored_block_bytes: texels give some types a gap), and of one row of N_IN weights.
fn block_bytes() -> u32 { return stored_block_bytes(gguf_block_bytes()); }

// Whether blocks lie with the gap texels give them (stored_block_bytes): decoders then read them so.
fn blocks_padded() -> bool { return block_bytes() != gguf_block_bytes(); }

fn gguf_block_bytes() -> u32 {
    switch WTYPE {
        case Q4_0: { return 18u; }
        case Q4_1: { return 20u; }
        case Q5_0: { return 22u; }
        case Q5_1: { return 24u; }
        case Q8_0: { return 34u; }
        case Q2_K: { return 84u; }
        case Q3_K: { return 110u; }
        case Q4_K: { return 144u; }
        case Q5_K: { return 176u; }
        case Q6_K: { return 210u; }
        case IQ4_NL: { return 18u; }
        case IQ4_XS: { return 136u; }
        default: { return 0u; }
    }
}

fn row_bytes() -> u32 {
    switch WTYPE {
        case F32: { return N_IN * 4u; }
        case F16, BF16: { return N_IN * 2u; }
        default: { return N_IN / select(32u, 256u, in_superblocks()) * block_bytes(); }
    }
}

// A block as its integer quants and scales: weight i = d * q[i] + m, where d and m are d.x and m.x
// for elements 0..15 and d.y and m.y for 16..31 when split_scales() (K-quants with a scale per 16
// weights), else d.x and m.x throughout (m = -8d for Q4_0, -16d for Q5_0, 0 for Q8_0).
// Products take d and m out of the sum (d * (q . x) + m * sum(x)): two multiplies a half, not 16.
struct QuantParts { q: array<vec4<f32>, 8>, d: vec2<f32>, m: vec2<f32> }

fn parts(q: array<vec4<f32>, 8>, d: f32, m: f32) -> QuantParts { return QuantParts(q, vec2<f32>(d), vec2<f32>(m)); }

// Whether quant_parts gives the halves of a block their own scales (see QuantParts).
fn split_scales() -> bool { return WTYPE == Q6_K || WTYPE == Q3_K || WTYPE == Q2_K; }

// QUANTS_IN_PLACE (the scalar products, matmul.wgsl): quant_parts leaves each quant where it lies in its word
// and the products scale x instead (x_in_place), once a block for all their rows: Q4_0's and Q4_1's nibble k of
// a word stays in byte k's place (times 256^k), Q8_0's signed byte k moves to the top of the word (times 2^24,
// a shift or a mask where a shift up and one down took two). The sums are the same to the bit: powers of two
// scale exactly, unless x is below 2^-102. Why: those shifts were one of a weight's four or five operations on
// lavapipe (mask, convert, multiply, add); one token's Q4_1 products ran 1.07-1.15x as fast, Q8_0's (the
// default model's head) 1.07x (NOTES.md, sessions 28 and 29). Which types it is set for: products.py's
// IN_PLACE_TYPES, whose decoders (nibbles, quant_q8.wgsl's int8s) honour it.
override QUANTS_IN_PLACE: bool = false;

// What x_in_place multiplies element k of each vec4 of x by.
fn in_place_x() -> vec4<f32> {
    if (WTYPE == Q8_0) { return vec4<f32>(1.0 / 16777216.0); }
    return vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
}

// A block of x as the products multiply it with quant_parts' q: scaled where QUANTS_IN_PLACE.
fn x_in_place(xs: array<vec4<f32>, 8>) -> array<vec4<f32>, 8> {
    if (!QUANTS_IN_PLACE) { return xs; }
    var out = xs;
    for (var i = 0u; i < 8u; i++) { out[i] *= in_place_x(); }
    return out;
}

// Whether quant_parts' m is ever nonzero (products then add m * sum(x)).
fn has_offset() -> bool { return !is_float() && WTYPE != Q8_0 && WTYPE != IQ4_NL && WTYPE != IQ4_XS; }

// A block of 32 weights as signed 8-bit integers, for the packed dot products of matvec_dot4.wgsl: lo
// packs elements 0..15 and hi elements 16..31, four a word (element 4i + k in byte k of word i), and
// weight = d.x * q + m.x in lo, d.y * q + m.y in hi. Each library defines int_parts(row, b). Q5_0, Q5_1,
// Q8_0 and the IQ4s read their 18- to 34-byte blocks through w32 (the same bytes as w, bound again word by
// word), since vec4 loads there fetch 16 bytes for each 4 they keep; the K-quants, whose sub-block's bytes
// lie in runs of 16 and 32, through w: fewer loads (H200, 4096 x 14336 one token: Q4_K 0.79-0.94 -> 0.89x
// of Q4_1's bytes a second, Q6_K 0.83-0.94 -> 0.95-1.01x); so do Q4_0 and Q4_1, two loads a block (8B
// Q4_0 prefill +3 %, decode alike). An entry point reads one of the two.
struct IntParts { lo: vec4<u32>, hi: vec4<u32>, d: vec2<f32>, m: vec2<f32> }

@group(0) @binding(1) var<storage, read> w32: array<u32>;  // only matvec_dot4 reads it (not both w and w32)

fn int_parts1(lo: vec4<u32>, hi: vec4<u32>, d: f32, m: f32) -> IntParts {
    return IntParts(lo, hi, vec2<f32>(d), vec2<f32>(m));
}

// The 4 bytes from byte o (even) of w32, and 16 of them (the second word's load is shared when the
// compiler sees it: a 2-byte-aligned word is two loads and a funnel shift).
fn u32_at(o: u32) -> u32 {
    let i = o >> 2u;
    let a = w32[i];
    return select(a, (a >> 16u) | (w32[i + 1u] << 16u), (o & 2u) != 0u);
}

fn u32x4_at(o: u32) -> vec4<u32> {
    return vec4<u32>(u32_at(o), u32_at(o + 4u), u32_at(o + 8u), u32_at(o + 12u));
}

// Words of a row that its next blocks reuse, carried between calls of quant_parts (see the families).
// The scalar kernels read each row's blocks in order and keep one per row; callers whose invocations
// take blocks out of order (the subgroup kernel, embed) pass fresh = true and nothing is reused.
struct KCache {
    a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, d: vec4<u32>, e: vec4<u32>, f: vec4<u32>, g: vec4<u32>, h: vec4<u32>,
}

// Word-wise shifts across a pair of vec4s: the words starting 1 or 2 words (or 2 bytes) into `a`.
fn shl1(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> { return vec4<u32>(a.yzw, b.x); }
fn shl2(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> { return vec4<u32>(a.zw, b.xy); }
fn half_shift(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> {
    return (a >> vec4<u32>(16u)) | (shl1(a, b) << vec4<u32>(16u));
}

// Three words a, b, c shifted by the whole words of byte offset m (0..15) so that the first starts
// at byte m & ~3 (the third is only good for its first word: enough for a further half shift).
fn shift_words(a0: vec4<u32>, b0: vec4<u32>, c0: vec4<u32>, m: u32) -> array<vec4<u32>, 3> {
    let s1 = (m & 4u) != 0u;
    let s2 = (m & 8u) != 0u;
    var a = select(a0, shl1(a0, b0), s1);
    var b = select(b0, shl1(b0, c0), s1);
    var c = select(c0, shl1(c0, c0), s1);
    a = select(a, shl2(a, b), s2);
    b = select(b, shl2(b, c), s2);
    c = select(c, shl2(c, c), s2);
    return array<vec4<u32>, 3>(a, b, c);
}

// The two words from the one holding byte o, shifted by whole words so that the first starts at byte
// o & ~3 (the second is good only as far as the two words loaded reach).
fn words2(o: u32) -> array<vec4<u32>, 2> {
    let m = o & 15u;
    var a = w4(o >> 4u);
    var b = w4((o >> 4u) + 1u);
    let s1 = (m & 4u) != 0u;
    let s2 = (m & 8u) != 0u;
    a = select(a, shl1(a, b), s1);
    b = select(b, shl1(b, b), s1);
    a = select(a, shl2(a, b), s2);
    b = select(b, shl2(b, b), s2);
    return array<vec4<u32>, 2>(a, b);
}

// The three words from the one holding byte o, shifted so that the first starts at byte o & ~3.
fn words3(o: u32) -> array<vec4<u32>, 3> {
    return shift_words(w4(o >> 4u), w4((o >> 4u) + 1u), w4((o >> 4u) + 2u), o & 15u);
}

// The u32 at byte p (a multiple of 4), and the u16 at byte p (even), from one load.
fn word_at(p: u32) -> u32 { return w1(p >> 2u); }
fn half_at(p: u32) -> u32 { return (word_at(p & ~3u) >> ((p & 2u) * 8u)) & 0xFFFFu; }

// An 18-byte block {f16 d; 16 bytes} at byte o (even: Q4_0, IQ4_NL): d and the 16 bytes, from two loads.
struct Block18 { d: f32, q: vec4<u32> }

fn block18(o: u32) -> Block18 {
    let v = words2(o);
    let odd = (o & 2u) != 0u;  // v[0].x then holds the 2 bytes before the block and d
    let d = unpack2x16float(select(v[0].x, v[0].x >> 16u, odd)).x;
    return Block18(d, select(half_shift(v[0], v[1]), shl1(v[0], v[1]), odd));
}

// Nibbles of four packed words: elements 4i..4i+3 (low) or 16+4i..16+4i+3 (high) of a Q4 block; where
// QUANTS_IN_PLACE, element k left in byte k's place (times 256^k), for x_in_place's x.
fn nibbles(q: u32, high: bool) -> vec4<f32> {
    if (QUANTS_IN_PLACE) {
        return vec4<f32>(vec4<u32>(select(q, q >> 4u, high)) & vec4<u32>(0xFu, 0xF00u, 0xF0000u, 0xF000000u));
    }
    let shifts = select(vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(4u, 12u, 20u, 28u), high);
    return vec4<f32>((vec4<u32>(q) >> shifts) & vec4<u32>(0xFu));
}

// The four bytes of q as f32 (bytes of at most 6 bits: the quants of Q5..Q2 assembled in place).
fn bytes4(q: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFFu));
}

// Two 16-bit floats of v (F16 or BF16, elements 2k and 2k+1).
fn halves2(v: u32) -> vec2<f32> {
    if (WTYPE == BF16) { return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xFFFF0000u)); }
    return unpack2x16float(v);
}

// The 32 weights of block `b` of row `row`, in element order (vec4 i holds elements 4i..4i+3).
fn dequant_block(row: u32, b: u32) -> array<vec4<f32>, 8> {
    if (WTYPE == F16 || WTYPE == BF16) { return f16_block(row * N_IN + 32u * b); }
    if (WTYPE == F32) {
        var out: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) { out[i] = dequant4(row, b * 8u + i); }
        return out;
    }
    return quant_block(row, b);
}

fn quant_block(row: u32, b: u32) -> array<vec4<f32>, 8> {
    var c: KCache;
    let p = quant_parts(row, b, &c, true);
    let lo = p.d.x;
    let hi = select(p.d.x, p.d.y, split_scales());
    let mlo = p.m.x;
    let mhi = select(p.m.x, p.m.y, split_scales());
    return array<vec4<f32>, 8>(
        lo * p.q[0] + mlo, lo * p.q[1] + mlo, lo * p.q[2] + mlo, lo * p.q[3] + mlo,
        hi * p.q[4] + mhi, hi * p.q[5] + mhi, hi * p.q[6] + mhi, hi * p.q[7] + mhi,
    );
}

// 32 f16 weights from element e (a multiple of 4, so 8-byte aligned): five 16-byte loads and a
// shift by 8 bytes when e is not 16-byte aligned. Past the row's end (a partial last block) the
// values belong to the next row; matmul masks them.
fn f16_block(e: u32) -> array<vec4<f32>, 8> {
    let v = e / 8u;
    let shift = (e & 4u) != 0u;
    let a0 = w4(v);
    let a1 = w4(v + 1u);
    let a2 = w4(v + 2u);
    let a3 = w4(v + 3u);
    let a4 = w4(v + 4u);
    let q0 = select(a0, shl2(a0, a1), shift);
    let q1 = select(a1, shl2(a1, a2), shift);
    let q2 = select(a2, shl2(a2, a3), shift);
    let q3 = select(a3, shl2(a3, a4), shift);
    return array<vec4<f32>, 8>(
        vec4<f32>(halves2(q0.x), halves2(q0.y)), vec4<f32>(halves2(q0.z), halves2(q0.w)),
        vec4<f32>(halves2(q1.x), halves2(q1.y)), vec4<f32>(halves2(q1.z), halves2(q1.w)),
        vec4<f32>(halves2(q2.x), halves2(q2.y)), vec4<f32>(halves2(q2.z), halves2(q2.w)),
        vec4<f32>(halves2(q3.x), halves2(q3.y)), vec4<f32>(halves2(q3.z), halves2(q3.w)),
    );
}

// Elements 4j..4j+3 of row `row`, one at a time: for F32/F16/BF16 blocks and tails, and for embed.
fn dequant4(row: u32, j: u32) -> vec4<f32> {
    switch WTYPE {
        case F32: {  // rows are 16-byte aligned since N_IN % 4 == 0
            return bitcast<vec4<f32>>(w4((row * N_IN) / 4u + j));
        }
        case F16, BF16: {  // four halves: one 8-byte half of a 16-byte word
            let e = row * N_IN + 4u * j;
            let v = w4(e >> 3u);
            let pair = select(v.xy, v.zw, (e & 4u) != 0u);
            return vec4<f32>(halves2(pair.x), halves2(pair.y));
        }
        default: {
            var q = quant_block(row, j / 8u);
            return q[j % 8u];
        }
    }
}
