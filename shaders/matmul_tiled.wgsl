// Prompts' matrix products on GPUs, tiled in workgroup memory: a workgroup takes 128 weight rows x 64
// tokens, a block of 32 columns a step. Each block is decoded to f32 once for the 64 tokens and x's block
// loaded once for the 128 rows; then each of the 128 invocations multiplies 8 rows by 8 tokens out of
// workgroup memory (256 f32 multiply-adds for 16 vec4 loads; 256 invocations of 8 x 4 ran no faster in f32,
// 11 % slower in f16). x stays f32: no quantize_x, and f32's precision. Each eight columns' products are one
// chain of multiply-adds, which then joins the row's sum (mad8): 13 % faster at 8B than summing four products
// before the add, and closer to the scalar kernels (the default model's Q5_0 mix drifts 4.4e-5 of its largest
// logit from them, against 4.9e-5). One chain for all of a row's products gained 10 % but drifted 1.2e-4,
// near the 0.005 logits gap below which greedy tokens count as ties; chains over a whole block (32
// products, into per-block sums as the f16 tiles) were closer (1.4e-5) but 4 % slower: sixteen more registers.
// Every invocation fetches the next block (a row's integers, int_parts, and four vec4s of x) into registers
// before it multiplies the current one, so those loads are in flight during the multiply-adds. (Two tiles in
// turn, one barrier a block rather than two, cost the f16 kernel 22 %; f32's would not fit 32 KB.)
// Wide tiles (matmul_tiled_wide.wgsl: 128 tokens, 256 invocations, two a tile row's block; 32 KB unpadded)
// decode each block for twice the tokens, and pay where their grid still fills a large GPU (products.py's
// WIDE_MIN_WORKGROUPS): an H200's 8B prompt step of 512, GPU ms over the layers, q 18.8 -> 16.4, o 20.1 -> 16.8,
// gate_up 133.5 -> 113.8, down 69.1 -> 57.3; k and v (32 wide workgroups) would lose, 9.6 -> 16.3, as would the
// 1B shape's o and down (64), 2.6 -> 4.3 and 10.4 -> 17.2 (NOTES.md, session 31).
//
// matmul_tiled_f16.wgsl is the same product in f16 where the adapter has shader-f16.
//
// The kernel is tiles_f32.wgsl's; this module gives it 64 tokens a tile (matmul_tiled_wide.wgsl 128).
// An extension of matmul.wgsl: kernels.py appends tiles_f32.wgsl, tiles.wgsl, matmul.wgsl, activations.wgsl,
// quant.wgsl and the type's weight library, so params, x, y, put, glu4, clamp_row, share_tables and int_parts
// are theirs.
// Bindings:  0 params, 1 w the weights' GGUF bytes [N_OUT, N_IN] (2 * N_OUT rows with GLU), 2 x [T, N_IN] f32,
//            3 y [T, N_OUT] f32 (ACCUMULATE, Y_STRIDE, Y_COL as in matmul.wgsl)
// Formula:   y[t, r] = sum_k W[r, k] x[t, k]; GLU: act(gate row r . x) * (up row N_OUT + r . x)
// Overrides: WTYPE (a type with int_parts), N_IN, N_OUT, GLU, GELU, ACCUMULATE, Y_STRIDE, Y_COL
// Grid:      (ceil(N_OUT / 128) as (x, y), ceil(T / (64 TOKEN_GROUPS))); with GLU ceil(N_OUT / 64) row groups,
//            the tile's rows 0..63 the gate rows of outputs r0.. and rows 64..127 their up rows.
// Invocation i multiplies tile rows i % 16 + 16 k (k < 8) by eight tokens: i / 16 + S j and S / 2 more (j < 4,
// S = APART, 16 TOKEN_GROUPS): the rows a quarter of a subgroup loads lie in different banks (a tile
// row is 9 vec4s, one of them padding), the tokens are two a subgroup (broadcast), and with GLU each
// invocation holds a gate row's sums and its up row's. Its sums a and b (S / 2 tokens on) are put_sums's two sets.

const TOKEN_GROUPS = 1u;
var<workgroup> tile_x: array<vec4<f32>, 512>;  // TILE_TOKENS x 8
