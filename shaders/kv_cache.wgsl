// Appending this batch's keys and values to the KV cache.
//
// Bindings:  0 params: StepParams (positions.wgsl: token t goes to cache row token_base(t) + token_pos(t))
//            1 k, 2 v: [T, KV_DIM] f32, read as vec4; or (SRC_ROW > 0) both the model's [T, SRC_ROW]
//              q | k | v buffer, keys in columns K_COL.., values in V_COL.. (multiples of 4)
//            3 k_cache, 4 v_cache: [rows, KV_DIM] (max_ctx rows a sequence) as f32 bits, or (KV_F16) f16 pairs packed in u32
// Formula:   cache[base + pos, :] = k[t, :] (and v), as kv_rows.wgsl (appended) writes them
// Overrides: KV_DIM (a multiple of 4), KV_F16, SRC_ROW (0: KV_DIM), K_COL, V_COL, WG
// Grid:      (ceil(KV_DIM / 4 / WG), T): one invocation per 4 elements of a row.

@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>;

override KV_DIM: u32;
override KV_F16: bool;
override SRC_ROW: u32 = 0u;
override K_COL: u32 = 0u;
override V_COL: u32 = 0u;
override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn store_kv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let t = gid.y;
    if (j >= KV_DIM / 4u || t >= params.n_tokens) { return; }
    let src = t * select(SRC_ROW, KV_DIM, SRC_ROW == 0u) / 4u + j;
    let row = (token_base(t) + token_pos(t)) * (KV_DIM / 4u) + j;  // in units of 4 elements
    cache_put4(true, 4u * row, k[src + K_COL / 4u]);
    cache_put4(false, 4u * row, v[src + V_COL / 4u]);
}
