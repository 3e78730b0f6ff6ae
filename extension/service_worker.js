// Hearth's service worker: owns the offscreen document's life, the context menu and the side panel,
// and routes messages. MV3 kills it when idle, so it keeps nothing that matters: a pending summary
// waits in chrome.storage.session for the panel to pick up.
//
// Messages are engine/protocol.py's envelope {kind, id, content} plus `target` ("worker" | "offscreen" |
// "panel"), which only the JavaScript reads.

import { engineSettings } from "./engine_settings.js";
import { DEFAULTS, ErrorType, Kind } from "./protocol.js";

const OFFSCREEN_URL = "offscreen.html";
const MENU = { page: "hearth-summarize-page", selection: "hearth-summarize-selection" };
const BRIDGE_ALARM = "hearth-look-for-bridge";
const NATIVE_HOST_MS = 5000; // a native host that has not answered by then is taken as missing

let creating = null; // one createDocument at a time: a second call would fail

async function ensureOffscreen() {
  const contexts = await chrome.runtime.getContexts({ contextTypes: ["OFFSCREEN_DOCUMENT"] });
  if (contexts.length) return;
  // The engine's settings travel in the URL: the offscreen document cannot read chrome.storage.
  const query = new URLSearchParams(await engineSettings());
  creating ??= chrome.offscreen
    .createDocument({
      url: `${OFFSCREEN_URL}?${query}`,
      reasons: ["WORKERS"],
      justification: "Runs the Python engine (Pyodide) and its WebGPU model in the background.",
    })
    .finally(() => (creating = null));
  await creating;
}

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU.page, title: "Summarize page", contexts: ["page"] });
    chrome.contextMenus.create({ id: MENU.selection, title: "Summarize selection", contexts: ["selection"] });
  });
  lookForBridge();
});
chrome.runtime.onStartup.addListener(lookForBridge);
chrome.alarms.onAlarm.addListener((alarm) => alarm.name === BRIDGE_ALARM && serveWaitingBridge());

// A local bridge (`python -m bridge`) gets the model without the panel being opened: the offscreen document,
// which is what connects to the bridge (and reconnects while it lives), starts when a probe finds one — at
// browser start, then every 30 s (the shortest alarm) while no document runs. The probe is one request to
// 127.0.0.1: when nothing listens, nothing is loaded. It carries no token: any answer (401 included) says a
// bridge listens, and the document asks for the token itself (bridgeTokens below).
function lookForBridge() {
  chrome.alarms.create(BRIDGE_ALARM, { periodInMinutes: 0.5 });
  serveWaitingBridge();
}

async function serveWaitingBridge() {
  const contexts = await chrome.runtime.getContexts({ contextTypes: ["OFFSCREEN_DOCUMENT"] });
  if (contexts.length) return; // it is connected, or reconnecting by itself
  const { bridge_port } = await engineSettings();
  try {
    await fetch(`http://127.0.0.1:${bridge_port}/v1/models`, { signal: AbortSignal.timeout(3000) });
  } catch {
    return; // no bridge: the model loads when the panel asks for it
  }
  await ensureOffscreen().catch((error) => reportError(null, error));
}

chrome.sidePanel.setPanelBehavior({ openPanelOnActionClick: true }).catch(() => {});

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (message?.target !== "worker") return false;
  if (message.kind === Kind.TOKEN) {
    bridgeTokens().then((tokens) => sendResponse({ tokens }));
    return true; // the offscreen document waits for this answer
  }
  if (message.kind === Kind.RELOAD) {
    // New engine settings: start a fresh offscreen document (and so a fresh model load).
    chrome.offscreen.closeDocument().catch(() => {}).then(ensureOffscreen).catch((e) => reportError(null, e));
  } else {
    // Everything for the offscreen document passes here first, so the document exists when it arrives.
    ensureOffscreen()
      .then(() => chrome.runtime.sendMessage({ ...message, target: "offscreen" }))
      .catch((error) => reportError(message.id, error));
  }
  return false; // never answer: replies to the offscreen document's messages are its own
});

// The bridge admits only its token (bridge/security.py), and the offscreen document can read neither its file
// nor chrome.storage. The native-messaging host that `python -m bridge` installs (bridge/native_host.py) reads
// the file for us; where none is installed, the panel's pairing got the token from the bridge and kept it.
// Both, when both are there: the document tries them in turn (the host may serve another bridge's token file).
async function bridgeTokens() {
  const asked = chrome.runtime.sendNativeMessage(DEFAULTS.native_host, { kind: Kind.TOKEN }).catch(() => null);
  const answer = await Promise.race([asked, new Promise((resolve) => setTimeout(resolve, NATIVE_HOST_MS, null))]);
  const { bridge_token } = await chrome.storage.local.get("bridge_token");
  return [...new Set([answer?.token, bridge_token])].filter((token) => typeof token === "string" && token);
}

function reportError(id, error) {
  const content = { type: ErrorType.ExtensionError, message: String(error?.message ?? error) };
  chrome.runtime.sendMessage({ target: "panel", kind: Kind.ERROR, id, content }).catch(() => {});
}

// ---------------------------------------------------------------- summaries from the context menu

chrome.contextMenus.onClicked.addListener((info, tab) => {
  if (info.menuItemId !== MENU.page && info.menuItemId !== MENU.selection) return;
  // sidePanel.open needs the click's user gesture: call it before anything is awaited.
  chrome.sidePanel.open({ windowId: tab.windowId }).catch(() => {});
  summarize(info, tab).catch((error) => reportError(null, error));
});

async function summarize(info, tab) {
  const selection = info.menuItemId === MENU.selection;
  ensureOffscreen(); // start loading the model while the page is read
  const [{ result }] = await chrome.scripting.executeScript({
    target: { tabId: tab.id },
    func: readableText,
    args: [selection],
  });
  const text = (selection && !result.text ? info.selectionText : result.text) ?? "";
  const pending = { id: crypto.randomUUID(), source: selection ? "selection" : "page", title: result.title,
                    url: result.url, text, at: Date.now() };
  await chrome.storage.session.set({ pendingSummary: pending });
}

// Runs in the page: the selection, or the page's readable text without menus, scripts and forms.
function readableText(selectionOnly) {
  const out = { title: document.title, url: location.href, text: "" };
  if (selectionOnly) {
    out.text = String(window.getSelection() ?? "").trim();
    return out;
  }
  const root = (document.querySelector("article, main, [role=main]") ?? document.body).cloneNode(true);
  const noise = "script, style, noscript, template, svg, canvas, iframe, nav, header, footer, aside, form, "
    + "button, select, [role=navigation], [role=banner], [role=contentinfo], [aria-hidden=true], [hidden]";
  root.querySelectorAll(noise).forEach((el) => el.remove());
  // innerText of a detached node has no layout: textContent with block breaks kept by hand.
  root.querySelectorAll("p, div, li, h1, h2, h3, h4, h5, h6, br, tr, pre, blockquote, section")
    .forEach((el) => el.append("\n"));
  out.text = root.textContent.replace(/[ \t\u00a0]+/g, " ").replace(/\s*\n\s*/g, "\n").trim();
  return out;
}
