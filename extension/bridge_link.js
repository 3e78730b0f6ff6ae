// The offscreen document as the local bridge's model provider (`python -m bridge`, see bridge/): one websocket
// to 127.0.0.1, opened again with back-off whenever the bridge is away. Each connection is a client of the same
// Python Host the side panel uses (engine/host.py routes replies by request id), so the model loads once.
// The bridge admits only its token, presented in the first frame (an Origin proves nothing). This document can
// read neither the token file nor chrome.storage: it asks the service worker, which asks the native-messaging
// host that the bridge installs and remembers what pairing gave; refused, it tries the next one, then asks
// again (the token may have changed).
// Pairing: the panel sends a one-time code, the next connection presents it instead of the token, and the
// bridge's hello answers with the token, which goes back to the panel to keep.
// Its port is a panel setting that the service worker passes in this document's URL.
import { DEFAULTS, ErrorType, Kind } from "./protocol.js";

const BRIDGE_PORT = Number(new URLSearchParams(location.search).get("bridge_port")) || DEFAULTS.bridge_port;
const BRIDGE_URL = `ws://127.0.0.1:${BRIDGE_PORT}`;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000]; // then 4 s between tries, for as long as it takes

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let token = null; // the token the next connection presents
let candidates = []; // the others the service worker gave, to try when that one is refused
let pairing = null; // {id, code} from the panel, for the next connection
let socket = null; // the connection now open, if any
let wake = null; // cuts the back-off short when a pairing code arrives

// Python's Host exists once offscreen.js has unpacked the engine (before the model has loaded).
async function pythonHost() {
  while (!globalThis.pyodide?.globals.has("host")) await sleep(100);
  return globalThis.pyodide.globals.get("host");
}

async function nextToken() {
  if (!candidates.length) {
    const answer = await chrome.runtime.sendMessage({ target: "worker", kind: Kind.TOKEN, id: null, content: null })
      .catch(() => null);
    candidates = answer?.tokens ?? [];
  }
  token = candidates.shift() ?? null;
}

function tellPanel(kind, id, content) {
  chrome.runtime.sendMessage({ target: "panel", kind, id, content }).catch(() => {}); // the panel may be closed
}

// One connection's life; resolves when it closes: "served" if the bridge took this document as its provider,
// "refused" if it answered the hello with an error, "absent" if nothing answered.
function connect(host) {
  return new Promise((resolve) => {
    const pair = pairing;
    pairing = null;
    const ws = (socket = new WebSocket(BRIDGE_URL));
    let link = null; // this connection's client of the Host, once the bridge has said hello
    let refusal = null;
    ws.onopen = () => {
      const content = pair ? { role: "provider", pairing_code: pair.code } : { role: "provider", token };
      ws.send(JSON.stringify({ kind: Kind.HELLO, id: null, content }));
    };
    ws.onmessage = (event) => {
      if (link) return link.receive(event.data);
      const reply = JSON.parse(event.data);
      if (reply.kind !== Kind.HELLO) {
        refusal = reply.content?.error?.message ?? "the bridge refused this extension";
        return;
      }
      if (pair) {
        token = reply.content.token;
        tellPanel(Kind.PAIR, pair.id, { token });
      }
      link = host.connect_json((text) => ws.readyState === WebSocket.OPEN && ws.send(text));
      link.receive(event.data); // the Host answers the bridge's hello with where loading stands
    };
    ws.onclose = () => {
      if (socket === ws) socket = null;
      link?.close(); // stop what it asked for: the model is free for the panel
      link?.destroy();
      if (pair && !link) {
        const message = refusal ?? `no bridge answers on 127.0.0.1:${BRIDGE_PORT} (is \`python -m bridge\` running?)`;
        tellPanel(Kind.ERROR, pair.id, { type: ErrorType.ExtensionError, message });
      }
      resolve(link ? "served" : refusal !== null ? "refused" : "absent");
    };
  });
}

// A pairing code from the panel: presented on a fresh connection, at once.
chrome.runtime.onMessage.addListener((message) => {
  if (message?.target !== "offscreen" || message.kind !== Kind.PAIR) return false;
  pairing = { id: message.id, code: String(message.content?.code ?? "") };
  if (socket) socket.close();
  else wake?.();
  return false;
});

async function main() {
  const host = await pythonHost();
  await nextToken();
  for (let failures = 0; ; ) {
    const withCode = pairing !== null; // this try presents a pairing code, not the token
    const outcome = await connect(host);
    failures = outcome === "served" ? 0 : failures + 1;
    if (outcome === "refused" && !withCode) await nextToken();
    if (pairing) continue;
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)]);
    });
    wake = null;
  }
}

main().catch((error) => console.error("bridge link:", error));
