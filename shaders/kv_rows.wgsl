// Writing four elements of a token's key or value row into its cache: a library for kv_cache.wgsl's
// store_kv and for the products that store keys and values themselves (rope_store.wgsl). The including
// module declares k_cache and v_cache as kv_cache.wgsl describes them (array<u32>: f32 bits, or with
// KV_F16 f16 pairs packed two a word, rounded to nearest even) and the override KV_F16. Packing needs no
// shader-f16 feature (SwiftShader lacks it), and both caches share one declaration: the compiler folds
// the switch on KV_F16.

// Elements e .. e + 3 (e a multiple of 4) of the key cache (key) or the value cache become v.
fn cache_put4(key: bool, e: u32, v: vec4<f32>) {
    var words = bitcast<vec4<u32>>(v);
    if (KV_F16) { words = vec4<u32>(pack2x16float(v.xy), pack2x16float(v.zw), 0u, 0u); }
    let n = select(4u, 2u, KV_F16);
    let first = select(e, e / 2u, KV_F16);
    for (var k = 0u; k < n; k++) {
        if (key) { k_cache[first + k] = words[k]; } else { v_cache[first + k] = words[k]; }
    }
}
