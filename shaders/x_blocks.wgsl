// Where quantize_x.wgsl puts x's integer words and matvec_dot4.wgsl finds them: word w (0 .. 2 PLANES - 1:
// plane w / 2's elements 0..15 when w is even, 16..31 when odd) of token t's block b, in xq.
// Two layouts, both filled and read a block a lane:
//   SPREAD  each token 2 PLANES rows of its blocks' words: the lanes of one token's product, which take
//           consecutive blocks, load consecutive words (H200, 8B shape: a forward's products 5.8 -> 5.35 ms)
//   else    each block's 2 PLANES words together: batches, whose lanes walk 8 tokens' x for each block,
//           ran slower spread (8B prefill of 512: 757 -> 681 tok/s), so they keep this one
// N_IN and PLANES are the including module's overrides.
override SPREAD: bool = false;

fn xq_index(t: u32, w: u32, b: u32) -> u32 { return xq_index_of(N_IN / 32u, t, w, b); }

// The same for an x of `blocks` blocks (a product's output quantised for the next one, whose N_IN it is).
fn xq_index_of(blocks: u32, t: u32, w: u32, b: u32) -> u32 {
    if (SPREAD) { return (t * 2u * PLANES + w) * blocks + b; }
    return (t * blocks + b) * 2u * PLANES + w;
}

// Sixteen quants (four words of signed bytes) against sixteen of x's: what the integer products sum.
fn dot16(q: vec4<u32>, x: vec4<u32>) -> i32 {
    return dot4I8Packed(q.x, x.x) + dot4I8Packed(q.y, x.y) + dot4I8Packed(q.z, x.z) + dot4I8Packed(q.w, x.w);
}
