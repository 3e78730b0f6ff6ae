// Where each token of a step sits: its position in its sequence, and the first KV cache row of that
// sequence. A library: kernels.py appends it to the kernels that need positions (rope, kv_cache,
// attention, and the products: rope_store.wgsl stores keys and values); it declares their StepParams,
// which extends every other kernel's 16 bytes with a table.
//
// A step of one sequence (ROWS_FROM_TABLE 0 in params.table_rows) has token t at position
// params.pos + t, its cache from row 0: the table is not written. A step of several sequences
// (decoding streams together, Model.forward_rows) lists each token's (first cache row, position),
// two tokens a vec4 (a uniform array's elements are 16 bytes apart).

const MAX_TABLE_TOKENS = 64u;  // kernels.py's MAX_TABLE_TOKENS: the tokens a step of several sequences holds

struct StepParams {
    pos: u32,
    n_tokens: u32,
    table_rows: u32,  // 1: tokens' places come from the table; 0: the one sequence at pos
    _pad: u32,
    table: array<vec4<u32>, 32>,  // MAX_TABLE_TOKENS / 2: token 2i in .xy, 2i + 1 in .zw, as (first row, position)
}

@group(0) @binding(0) var<uniform> params: StepParams;

fn table_entry(t: u32) -> vec2<u32> {
    let e = params.table[t / 2u];
    return select(e.xy, e.zw, (t & 1u) == 1u);
}

// Token t's position in its sequence.
fn token_pos(t: u32) -> u32 {
    if (params.table_rows == 0u) { return params.pos + t; }
    return table_entry(t).y;
}

// The KV cache row where token t's sequence starts: its position p lives in row token_base(t) + p.
fn token_base(t: u32) -> u32 {
    if (params.table_rows == 0u) { return 0u; }
    return table_entry(t).x;
}
