// A token's q | k | v, rotated and stored by the product that makes them: what rope.wgsl and kv_cache.wgsl's
// store_kv would do after it, two dependent dispatches fewer a layer (each costs 3.4 us or more on an H200
// whatever it does, and ~45 us on lavapipe with two threads, where waking the workers is most of it).
// A library for the products' entry points that end so (matmul.wgsl's matvec_rope, matmul_subgroup.wgsl's
// matvec_subgroup_rope, matvec_dot4.wgsl's matvec_dot4_rope and matvec_dot4_few_rope); the including module
// defines put (matmul.wgsl)
// and appends rotations.wgsl, kv_rows.wgsl and positions.wgsl.
// Bindings:  5 inv_freq, 6 factors (rope.wgsl's 2 and 3), 7 k_cache, 8 v_cache (kv_cache.wgsl's 3 and 4)
// Overrides: Q_DIM, KV_DIM, HEAD_DIM, N_ROT, KV_F16, MSCALE as theirs (N_OUT = Q_DIM + 2 KV_DIM, all of
//            them multiples of 4); pairs are adjacent (not NEOX).

@group(0) @binding(5) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(6) var<storage, read> factors: array<f32>;
@group(0) @binding(7) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<u32>;

override Q_DIM: u32 = 0u;
override KV_DIM: u32 = 4u;
override HEAD_DIM: u32 = 4u;
override N_ROT: u32 = 0u;
override KV_F16: bool = false;
override MSCALE: f32 = 1.0;

// Outputs r .. r + 3 of token t's q | k | v (r a multiple of 4: the four lie in one of q, k, v and in one
// head): q's and k's pairs turned, the four put in y, and k's and v's also in the cache row of the token.
fn rope_store4(t: u32, r: u32, sums: vec4<f32>) {
    var out = sums;
    if (r < Q_DIM + KV_DIM) {
        let d = r % HEAD_DIM;  // (Q_DIM is whole heads)
        for (var p = 0u; p < 2u; p++) {
            if (d + 2u * p < N_ROT) {
                let turned = rotate(out[2u * p], out[2u * p + 1u], rotation(t, d / 2u + p));
                out[2u * p] = turned.x;
                out[2u * p + 1u] = turned.y;
            }
        }
    }
    for (var k = 0u; k < 4u; k++) { put(t, r + k, out[k]); }
    if (r < Q_DIM) { return; }
    let e = (token_base(t) + token_pos(t)) * KV_DIM + (r - Q_DIM) % KV_DIM;  // the cache element
    cache_put4(r < Q_DIM + KV_DIM, e, out);
}
