// Q4_0 and Q4_1: a weight library appended after quant.wgsl (whose binding and helpers it uses) for
// these types, and for the floats, which never call quant_parts. Blocks of 32 weights (bytes at each
// offset), elements 0..15 in the low nibbles of qs[0..15] and 16..31 in the high ones:
//   Q4_0 18 bytes {0 f16 d; 2 u8 qs[16]}            w = d * (q - 8)   (m = -8d)
//   Q4_1 20 bytes {0 f16 d; 2 f16 m; 4 u8 qs[16]}   w = d * q + m
// Blocks lie where block_at says (quant.wgsl): Q4_0 blocks start at any even byte, Q4_1's at any
// multiple of 4.

// Block b of row `row` (c and fresh unused: see KCache).
fn quant_parts(row: u32, b: u32, c: ptr<function, KCache>, fresh: bool) -> QuantParts {
    return q4_block(block_at(row, b));
}

// Q4_0 / Q4_1 block at byte offset o (even), as they lie: d, m and the 16 bytes of nibbles. Two 16-byte loads
// cover it wherever it starts.
struct Q4Block { d: f32, m: f32, q: vec4<u32> }

fn q4_raw(o: u32) -> Q4Block {
    if (WTYPE == Q4_1) {  // 4-byte aligned: {d, m} then 16 bytes of nibbles
        let v = words2(o);
        let dm = unpack2x16float(v[0].x);
        return Q4Block(dm.x, dm.y, shl1(v[0], v[1]));
    }
    let block = block18(o);
    return Q4Block(block.d, -8.0 * block.d, block.q);
}

fn q4_block(o: u32) -> QuantParts {
    let b = q4_raw(o);
    let q = b.q;
    let quants = array<vec4<f32>, 8>(
        nibbles(q.x, false), nibbles(q.y, false), nibbles(q.z, false), nibbles(q.w, false),
        nibbles(q.x, true), nibbles(q.y, true), nibbles(q.z, true), nibbles(q.w, true),
    );
    return parts(quants, b.d, b.m);
}

// Block b of row `row` as integers (see IntParts): the nibbles as they lie, 4 bits a byte.
fn int_parts(row: u32, b: u32) -> IntParts {
    let block = q4_raw(block_at(row, b));
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    return int_parts1(block.q & m4, (block.q >> vec4<u32>(4u)) & m4, block.d, block.m);
}
