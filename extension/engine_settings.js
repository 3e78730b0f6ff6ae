// The engine's own settings (chrome.storage.local "engine"): changing one reloads the model. The panel edits
// them; the service worker hands them to the offscreen document in its URL (it cannot read chrome.storage).
export const ENGINE_DEFAULTS = { n_ctx: 2048, bridge_port: 8741 }; // bridge_port: bridge.server.DEFAULT_PORT

export async function engineSettings() {
  const { engine } = await chrome.storage.local.get("engine");
  return { ...ENGINE_DEFAULTS, ...engine };
}
