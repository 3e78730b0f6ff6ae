// Weight formats: GGUF tensors read straight from the file's bytes, never expanded in memory.
//
// A library, not a kernel: kernels.py appends it to the modules that read weights (matmul*.wgsl,
// embed.wgsl), since WGSL has no include. It declares the weight binding itself.
//
// Bindings:  @binding(1) w: array<vec4<u32>>  one tensor's raw bytes, [rows, N_IN] in its ggml type,
//            in a binding of whole 16-byte words (kernels.py pads a tensor that ends mid-word).
// Overrides: WTYPE  ggml type id: F32 0, F16 1, Q4_0 2, Q4_1 3, Q8_0 8 (a switch the compiler folds)
//            N_IN   elements per row (a multiple of 32 for the block types, of 4 for F32/F16)
// Blocks of 32 weights, low nibbles are elements 0..15 and high nibbles 16..31:
//   Q4_0 18 bytes {f16 d; u8 qs[16]}         w = d * ((q & 0xF) - 8)
//   Q4_1 20 bytes {f16 d; f16 m; u8 qs[16]}  w = d * q + m
//   Q8_0 34 bytes {f16 d; i8 qs[32]}         w = d * q
// Why vec4<u32>: CPU adapters (lavapipe, SwiftShader) pay mostly per load instruction, not per byte,
// so a block is fetched as the two or three 16-byte words that cover it, then shifted into place.
// Q4_0 and Q8_0 blocks sit at any even byte offset, hence the word and half-word shifts below.
// f16 values are decoded with unpack2x16float, so no shader-f16 feature is needed.

const F32 = 0u;
const F16 = 1u;
const Q4_0 = 2u;
const Q4_1 = 3u;
const Q8_0 = 8u;

override WTYPE: u32;
override N_IN: u32;

@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;

// Bytes of one row of N_IN weights.
fn row_bytes() -> u32 {
    switch WTYPE {
        case F32: { return N_IN * 4u; }
        case F16: { return N_IN * 2u; }
        case Q4_0: { return N_IN / 32u * 18u; }
        case Q4_1: { return N_IN / 32u * 20u; }
        default: { return N_IN / 32u * 34u; }
    }
}

// Word-wise shifts across a pair of vec4s: the words starting 1 or 2 words (or 2 bytes) into `a`.
fn shl1(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> { return vec4<u32>(a.yzw, b.x); }
fn shl2(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> { return vec4<u32>(a.zw, b.xy); }
fn half_shift(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> {
    return (a >> vec4<u32>(16u)) | (shl1(a, b) << vec4<u32>(16u));
}

// Nibbles of four packed words: elements 4i..4i+3 (low) or 16+4i..16+4i+3 (high) of a Q4 block.
fn nibbles(q: u32, high: bool) -> vec4<f32> {
    let shifts = select(vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(4u, 12u, 20u, 28u), high);
    return vec4<f32>((vec4<u32>(q) >> shifts) & vec4<u32>(0xFu));
}

// Four signed bytes of q as f32 (unpack4xI8 by shifts: SwiftShader emulates that built-in slowly).
fn int8s(q: u32) -> vec4<f32> {
    let v = bitcast<i32>(q);
    return vec4<f32>(vec4<i32>(v << 24u, v << 16u, v << 8u, v) >> vec4<u32>(24u));
}

// The 32 weights of block `b` of row `row`, in element order (vec4 i holds elements 4i..4i+3).
fn dequant_block(row: u32, b: u32) -> array<vec4<f32>, 8> {
    if (WTYPE == F16) { return f16_block(row * N_IN + 32u * b); }
    if (WTYPE == F32) {
        var out: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) { out[i] = dequant4(row, b * 8u + i); }
        return out;
    }
    return quant_block(row, b);
}

fn quant_block(row: u32, b: u32) -> array<vec4<f32>, 8> {
    let p = quant_parts(row, b);
    return array<vec4<f32>, 8>(
        p.d * p.q[0] + p.m, p.d * p.q[1] + p.m, p.d * p.q[2] + p.m, p.d * p.q[3] + p.m,
        p.d * p.q[4] + p.m, p.d * p.q[5] + p.m, p.d * p.q[6] + p.m, p.d * p.q[7] + p.m,
    );
}

// A block as its integer quants and scales: weight i = d * q[i] + m (m = -8d for Q4_0, 0 for Q8_0).
// Products take d and m out of the sum (d * (q . x) + m * sum(x)): two multiplies a block, not 32.
struct QuantParts { q: array<vec4<f32>, 8>, d: f32, m: f32 }

fn quant_parts(row: u32, b: u32) -> QuantParts {
    switch WTYPE {
        case Q4_0: { return q4_block(row * row_bytes() + b * 18u); }
        case Q4_1: { return q4_block(row * row_bytes() + b * 20u); }
        default: { return q8_0_block(row * row_bytes() + b * 34u); }
    }
}

// 32 f16 weights from element e (a multiple of 4, so 8-byte aligned): five 16-byte loads and a
// shift by 8 bytes when e is not 16-byte aligned. Past the row's end (a partial last block) the
// values belong to the next row; matmul masks them.
fn f16_block(e: u32) -> array<vec4<f32>, 8> {
    let v = e / 8u;
    let shift = (e & 4u) != 0u;
    let a0 = w[v];
    let a1 = w[v + 1u];
    let a2 = w[v + 2u];
    let a3 = w[v + 3u];
    let a4 = w[v + 4u];
    let q0 = select(a0, shl2(a0, a1), shift);
    let q1 = select(a1, shl2(a1, a2), shift);
    let q2 = select(a2, shl2(a2, a3), shift);
    let q3 = select(a3, shl2(a3, a4), shift);
    return array<vec4<f32>, 8>(
        vec4<f32>(unpack2x16float(q0.x), unpack2x16float(q0.y)), vec4<f32>(unpack2x16float(q0.z), unpack2x16float(q0.w)),
        vec4<f32>(unpack2x16float(q1.x), unpack2x16float(q1.y)), vec4<f32>(unpack2x16float(q1.z), unpack2x16float(q1.w)),
        vec4<f32>(unpack2x16float(q2.x), unpack2x16float(q2.y)), vec4<f32>(unpack2x16float(q2.z), unpack2x16float(q2.w)),
        vec4<f32>(unpack2x16float(q3.x), unpack2x16float(q3.y)), vec4<f32>(unpack2x16float(q3.z), unpack2x16float(q3.w)),
    );
}

// Q4_0 / Q4_1 block at byte offset o (even): two 16-byte loads cover it wherever it starts.
fn q4_block(o: u32) -> QuantParts {
    let m = o & 15u;
    var a = w[o >> 4u];
    var b = w[(o >> 4u) + 1u];
    let s1 = (m & 4u) != 0u;
    let s2 = (m & 8u) != 0u;
    a = select(a, shl1(a, b), s1);
    b = select(b, shl1(b, b), s1);
    a = select(a, shl2(a, b), s2);
    b = select(b, shl2(b, b), s2);
    // Now a.x holds the block's first byte, or the 2 bytes before it when o % 4 == 2 (Q4_0 only).
    let odd = (m & 2u) != 0u;
    var d: f32;
    var mn = 0.0;
    var q: vec4<u32>;
    if (WTYPE == Q4_1) {  // 4-byte aligned: {d, m} then 16 bytes of nibbles
        let dm = unpack2x16float(a.x);
        d = dm.x;
        mn = dm.y;
        q = shl1(a, b);
    } else {
        d = unpack2x16float(select(a.x, a.x >> 16u, odd)).x;
        mn = -8.0 * d;
        q = select(half_shift(a, b), shl1(a, b), odd);
    }
    let quants = array<vec4<f32>, 8>(
        nibbles(q.x, false), nibbles(q.y, false), nibbles(q.z, false), nibbles(q.w, false),
        nibbles(q.x, true), nibbles(q.y, true), nibbles(q.z, true), nibbles(q.w, true),
    );
    return QuantParts(quants, d, mn);
}

// Q8_0 block at byte offset o (even): three 16-byte loads cover its 34 bytes wherever it starts.
fn q8_0_block(o: u32) -> QuantParts {
    let m = o & 15u;
    var a = w[o >> 4u];
    var b = w[(o >> 4u) + 1u];
    var c = w[(o >> 4u) + 2u];
    let s1 = (m & 4u) != 0u;
    let s2 = (m & 8u) != 0u;
    a = select(a, shl1(a, b), s1);
    b = select(b, shl1(b, c), s1);
    c = select(c, shl1(c, c), s1);
    a = select(a, shl2(a, b), s2);
    b = select(b, shl2(b, c), s2);
    c = select(c, shl2(c, c), s2);
    let odd = (m & 2u) != 0u;  // then d is the high half of a.x and the quants start word-aligned
    let d = unpack2x16float(select(a.x, a.x >> 16u, odd)).x;
    let q0 = select(half_shift(a, b), shl1(a, b), odd);
    let q1 = select(half_shift(b, c), shl1(b, c), odd);
    let quants = array<vec4<f32>, 8>(
        int8s(q0.x), int8s(q0.y), int8s(q0.z), int8s(q0.w),
        int8s(q1.x), int8s(q1.y), int8s(q1.z), int8s(q1.w),
    );
    return QuantParts(quants, d, 0.0);
}

// Elements 4j..4j+3 of row `row`, one at a time: for F32/F16 blocks and tails, and for embed.
fn dequant4(row: u32, j: u32) -> vec4<f32> {
    switch WTYPE {
        case F32: {  // rows are 16-byte aligned since N_IN % 4 == 0
            return bitcast<vec4<f32>>(w[(row * N_IN) / 4u + j]);
        }
        case F16: {  // four halves: one 8-byte half of a 16-byte word
            let e = row * N_IN + 4u * j;
            let v = w[e >> 3u];
            let pair = select(v.xy, v.zw, (e & 4u) != 0u);
            return vec4<f32>(unpack2x16float(pair.x), unpack2x16float(pair.y));
        }
        default: {
            var q = quant_block(row, j / 8u);
            return q[j % 8u];
        }
    }
}
