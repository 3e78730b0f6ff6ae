// weights_texture.wgsl's texels as a sampled texture: what SwiftShader (Chromium's CPU adapter) loads fastest
// (its products 22-25 % slower from a storage texture, NOTES.md session 26).
@group(0) @binding(1) var w_texels: texture_2d<u32>;

fn w4(i: u32) -> vec4<u32> { return textureLoad(w_texels, vec2<u32>(i % TEXELS_A_ROW, i / TEXELS_A_ROW), 0); }
