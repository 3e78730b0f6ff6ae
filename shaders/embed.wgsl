// Token embedding: rows of the (possibly quantised) table, gathered by token id.
//
// Bindings:  0 params: StepParams (n_tokens rows are written)
//            1 w: the table [n_vocab rows, N_IN] as raw GGUF bytes (quant.wgsl, appended to this module)
//            2 ids: [T] u32 token ids
//            3 out: [T, N_IN] f32, written as vec4
// Formula:   out[t, 4j..4j+3] = dequant(W[ids[t], 4j..4j+3]) * SCALE (Gemma scales by sqrt(dim))
// Overrides: WTYPE, N_IN (= dim, see quant.wgsl), WG, SCALE (1), FIRST_ROW and N_ROWS (a part of a table
//            split into row ranges: only ids FIRST_ROW.. FIRST_ROW + N_ROWS - 1 are written, from row
//            id - FIRST_ROW of this part; N_ROWS 0: the whole table)
// Grid:      (ceil(N_IN / 4 / WG), T): one invocation per 4 outputs of a token. Quantised blocks are
//            decoded whole for each of their 8 vec4s: a few extra ALU ops on a tiny op.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

override WG: u32 = 64u;
override SCALE: f32 = 1.0;
override FIRST_ROW: u32 = 0u;
override N_ROWS: u32 = 0u;

struct StepParams { pos: u32, n_tokens: u32, _pad0: u32, _pad1: u32 }

@compute @workgroup_size(WG)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let t = gid.y;
    if (j >= N_IN / 4u || t >= params.n_tokens) { return; }
    let id = ids[t];
    if (N_ROWS > 0u && (id < FIRST_ROW || id - FIRST_ROW >= N_ROWS)) { return; }  // another part's row
    out[t * (N_IN / 4u) + j] = dequant4(id - FIRST_ROW, j) * SCALE;
}
