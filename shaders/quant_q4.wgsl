// Q4_0 and Q4_1: a weight library appended after quant.wgsl (whose binding and helpers it uses) for
// these types, and for the floats, which never call quant_parts. Blocks of 32 weights (bytes at each
// offset), elements 0..15 in the low nibbles of qs[0..15] and 16..31 in the high ones:
//   Q4_0 18 bytes {0 f16 d; 2 u8 qs[16]}            w = d * (q - 8)   (m = -8d)
//   Q4_1 20 bytes {0 f16 d; 2 f16 m; 4 u8 qs[16]}   w = d * q + m
// A row's blocks follow each other; rows too: Q4_0 blocks start at any even byte, Q4_1's at any
// multiple of 4.

// Block b of row `row` (c and fresh unused: see KCache).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    return q4_block(row * row_bytes() + b * block_bytes());
}

// Q4_0 / Q4_1 block at byte offset o (even): two 16-byte loads cover it wherever it starts.
fn q4_block(o: u32) -> QuantParts {
    var d: f32;
    var mn = 0.0;
    var q: vec4<u32>;
    if (WTYPE == Q4_1) {  // 4-byte aligned: {d, m} then 16 bytes of nibbles
        let v = words2(o);
        let dm = unpack2x16float(v[0].x);
        d = dm.x;
        mn = dm.y;
        q = shl1(v[0], v[1]);
    } else {
        let block = block18(o);
        d = block.d;
        mn = -8.0 * d;
        q = block.q;
    }
    let quants = array<vec4<f32>, 8>(
        nibbles(q.x, false), nibbles(q.y, false), nibbles(q.z, false), nibbles(q.w, false),
        nibbles(q.x, true), nibbles(q.y, true), nibbles(q.z, true), nibbles(q.w, true),
    );
    return parts(quants, d, mn);
}

// Block b of row `row` as integers (see IntParts): the nibbles as they lie, 4 bits a byte.
fn int_parts(row: u32, b: u32) -> IntParts {
    let o = row * row_bytes() + b * block_bytes();
    var q: vec4<u32>;
    var d: f32;
    var m: f32;
    if (WTYPE == Q4_1) {
        let v = words2(o);
        let dm = unpack2x16float(v[0].x);
        d = dm.x;
        m = dm.y;
        q = shl1(v[0], v[1]);
    } else {
        let block = block18(o);
        d = block.d;
        m = -8.0 * d;
        q = block.q;
    }
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    return int_parts1(q & m4, (q >> vec4<u32>(4u)) & m4, d, m);
}
