// weights_texture.wgsl's texels as a read-only storage texture: what lavapipe loads fastest. Its compiler
// (gallivm) builds a sampled texture's fetch as a function of its own, called for each (unless the format is an
// RGBA8 one), and a storage texture's load in line, where LLVM schedules a row's loads with the rest: one
// token's Q4_1 products 4.7 -> 6.3 GB/s, Q8_0's 6.9 -> 8.5-9.6 (benchmarks/NOTES.md, session 26).
@group(0) @binding(1) var w_texels: texture_storage_2d<rgba32uint, read>;

fn w4(i: u32) -> vec4<u32> { return textureLoad(w_texels, vec2<u32>(i % TEXELS_A_ROW, i / TEXELS_A_ROW)); }
