// The engine's own settings (chrome.storage.local "engine"): changing one reloads the model. The panel edits
// them; the service worker hands them to the offscreen document in its URL (it cannot read chrome.storage).
import { DEFAULTS } from "./protocol.js";

// kv_f16: the KV cache in f16 (half its memory); f16_prompts: prompts' products in f16 where the GPU has
// shader-f16 (faster prompts, slightly less exact logits); q8_prompts: on x in 8 bits, as llama.cpp's (the
// fastest prompts on GPUs, less exact still; before f16's). All off: f32 follows the engine's float64 reference.
export const ENGINE_DEFAULTS = {
  n_ctx: DEFAULTS.n_ctx,
  seats: DEFAULTS.seats,
  bridge_port: DEFAULTS.bridge_port,
  kv_f16: false,
  f16_prompts: false,
  q8_prompts: false,
};

export async function engineSettings() {
  const { engine } = await chrome.storage.local.get("engine");
  return { ...ENGINE_DEFAULTS, ...engine };
}
