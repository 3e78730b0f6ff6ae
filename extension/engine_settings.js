// The engine's own settings (chrome.storage.local "engine"): changing one reloads the model. The panel edits
// them; the service worker hands them to the offscreen document in its URL (it cannot read chrome.storage).
import { DEFAULTS } from "./protocol.js";

export const ENGINE_DEFAULTS = { n_ctx: DEFAULTS.n_ctx, seats: DEFAULTS.seats, bridge_port: DEFAULTS.bridge_port };

export async function engineSettings() {
  const { engine } = await chrome.storage.local.get("engine");
  return { ...ENGINE_DEFAULTS, ...engine };
}
