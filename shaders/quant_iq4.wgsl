// IQ4_NL and IQ4_XS: a weight library appended after quant.wgsl and quant_k.wgsl (whose binding and helpers it
// uses) for these types. A weight is a scale times one of 16 signed values (ggml's kvalues_iq4nl, denser near
// zero) that a 4-bit index picks; elements 0..15 of a block of 32 in the low nibbles of its 16 bytes of
// indices, 16..31 in the high ones, as Q4_0's (bytes at each offset):
//   IQ4_NL 18 bytes {0 f16 d; 2 u8 qs[16]}                                      w = d * T[q]
//   IQ4_XS 136 bytes {0 f16 d; 2 u16 scales_h; 4 u8 scales_l[4]; 8 u8 qs[128]}  superblocks of 256: sub-block j
//          (weights 32j..32j + 31) has qs[16j .. 16j + 15] and the 6-bit scale ls = nibble j % 2 of
//          scales_l[j / 2] | bits 2j, 2j + 1 of scales_h << 4; w = d * (ls - 32) * T[q]
// IQ4_NL blocks start at any even byte, IQ4_XS superblocks at any multiple of 8. m is 0 (has_offset): the
// table is signed. Integer products take T[q] as the signed byte it is (IntParts), from workgroup memory by
// pairs (iq4_pairs below).

// IQ4_NL's and IQ4_XS's table of 16 signed bytes, four a word (value k in byte k % 4 of word k / 4), and for the
// integer products the same by pairs in workgroup memory: entry q (a byte of indices, two weights) holds T[q % 16]
// in its byte 0 and T[q / 16] in its byte 2, so a lookup is one load for two weights, where selects took five
// operations a weight and a table of 16 one load (quant_iq4.wgsl's iq4_int).
const IQ4_TABLE = vec4<u32>(0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u);
var<workgroup> iq4_pairs: array<u32, 256>;

// What the integer products' int_parts read from workgroup memory (IQ4's pairs), put there by the whole
// workgroup of n invocations (a barrier) before its first int_parts. (Other types' libraries come with
// no_tables.wgsl's, which does nothing: their modules then hold no table, 1 KB less workgroup memory.)
fn share_tables(lid: u32, n: u32) {
    let table = IQ4_TABLE;
    for (var q = lid; q < 256u; q += n) {
        let lo = (table[(q & 15u) >> 2u] >> (8u * (q & 3u))) & 0xFFu;
        let hi = (table[q >> 6u] >> (8u * ((q >> 4u) & 3u))) & 0xFFu;
        iq4_pairs[q] = lo | (hi << 16u);
    }
    workgroupBarrier();
}

// T (IQ4_TABLE) at four indices n (each below 16) as unsigned bytes: the word by two selects, the
// byte by a shift.
// (No indexing by a value that differs between invocations: CPU adapters pay for that per invocation.)
fn iq4_lookup(n: vec4<u32>) -> vec4<u32> {
    let t = IQ4_TABLE;
    let odd = (n & vec4<u32>(4u)) != vec4<u32>(0u);
    let word = select(select(vec4<u32>(t.x), vec4<u32>(t.y), odd), select(vec4<u32>(t.z), vec4<u32>(t.w), odd),
                      (n & vec4<u32>(8u)) != vec4<u32>(0u));
    return (word >> ((n & vec4<u32>(3u)) * 8u)) & vec4<u32>(0xFFu);
}

// The indices in the low (or high) nibbles of q's four bytes.
fn iq4_indices(q: u32, high: bool) -> vec4<u32> {
    return (vec4<u32>(q) >> (vec4<u32>(0u, 8u, 16u, 24u) + select(0u, 4u, high))) & vec4<u32>(0xFu);
}

// The values of 16 bytes of indices as signed bytes, from the pairs in workgroup memory (share_tables): low
// nibbles (elements 0..15) in lo, high ones in hi. For the integer products on GPUs.
fn iq4_int(q: vec4<u32>) -> array<vec4<u32>, 2> {
    let x = iq4_pairs4(q.x);
    let y = iq4_pairs4(q.y);
    let z = iq4_pairs4(q.z);
    let w = iq4_pairs4(q.w);
    return array<vec4<u32>, 2>(vec4<u32>(x.x, y.x, z.x, w.x), vec4<u32>(x.y, y.y, z.y, w.y));
}

// Four bytes of indices as the values of their low nibbles (x) and of their high ones (y), four bytes each:
// a load a byte, each pair's two values then moved into place (an entry is lo | hi << 16, nothing above).
fn iq4_pairs4(q: u32) -> vec2<u32> {
    let t0 = iq4_pairs[q & 0xFFu];
    let t1 = iq4_pairs[(q >> 8u) & 0xFFu];
    let t2 = iq4_pairs[(q >> 16u) & 0xFFu];
    let t3 = iq4_pairs[q >> 24u];
    let lo = (t0 & 0xFFu) | ((t1 & 0xFFu) << 8u) | ((t2 & 0xFFu) << 16u) | (t3 << 24u);
    let hi = (t0 >> 16u) | (t1 >> 8u) | (t2 & 0xFF0000u) | ((t3 << 8u) & 0xFF000000u);
    return vec2<u32>(lo, hi);
}

fn iq4_f32x4(q: u32, high: bool) -> vec4<f32> {
    let v = iq4_lookup(iq4_indices(q, high));
    return vec4<f32>(bitcast<vec4<i32>>(v << vec4<u32>(24u)) >> vec4<u32>(24u));
}

fn iq4_f32(q: vec4<u32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        iq4_f32x4(q.x, false), iq4_f32x4(q.y, false), iq4_f32x4(q.z, false), iq4_f32x4(q.w, false),
        iq4_f32x4(q.x, true), iq4_f32x4(q.y, true), iq4_f32x4(q.z, true), iq4_f32x4(q.w, true),
    );
}

// Sub-block j's scale d * (ls - 32) from IQ4_XS's header words: h0 = d | scales_h << 16, h1 = scales_l.
fn iq4_xs_scale(h0: u32, h1: u32, j: u32) -> f32 {
    let ls = ((h1 >> (4u * j)) & 0xFu) | (((h0 >> (16u + 2u * j)) & 3u) << 4u);
    return unpack2x16float(h0).x * (f32(ls) - 32.0);
}

// Block b of row `row` (IQ4_XS: sub-block b % 8 of superblock b / 8; c: see quant_k.wgsl).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    if (WTYPE == IQ4_NL) {
        let block = block18(block_at(row, b));
        return parts(iq4_f32(block.q), block.d, 0.0);
    }
    return iq4_xs_parts(superblock(row, b), b % 8u, c, fresh);
}

// IQ4_XS sub-block j of the superblock at byte o. Its 16 bytes of indices start at o + 8 + 16j: at a word's
// start when o % 16 == 8, else in its middle (two words, shifted). Either way they end in the word where the
// next sub-block's start, which the cache carries (c.b), so in order each sub-block loads one word, and the
// header (c.a) once: 10 loads a superblock. The shift is decided by select, alike for every invocation.
fn iq4_xs_parts(o: u32, j: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    let v = o >> 4u;
    let p = (o + 8u + 16u * j) >> 4u;  // the word where sub-block j's indices start
    if (fresh || j == 0u) {
        (*c).a = w4(v);
        (*c).b = w4(p);
    }
    let first = (*c).b;
    let second = w4(p + 1u);
    (*c).b = second;
    let mid = (o & 8u) == 0u;  // indices from the middle of a word
    let h = select((*c).a.zw, (*c).a.xy, mid);
    return parts(iq4_f32(select(first, shl2(first, second), mid)), iq4_xs_scale(h.x, h.y, j), 0.0);
}

// Block b of row `row` as integers (see IntParts): the table's signed bytes for the indices, read through
// w32 as Q4_0's (IQ4_XS's words are 4-byte aligned: a load each).
fn int_parts(row: u32, b: u32) -> IntParts {
    if (WTYPE == IQ4_NL) {
        let o = block_at(row, b);
        let v = iq4_int(u32x4_at(o + 2u));
        return int_parts1(v[0], v[1], unpack2x16float(u32_at(o)).x, 0.0);
    }
    let o = superblock(row, b);
    let j = b % 8u;
    let v = iq4_int(u32x4_at(o + 8u + 16u * j));
    return int_parts1(v[0], v[1], iq4_xs_scale(u32_at(o), u32_at(o + 4u), j), 0.0);
}
