// The offscreen document as the local bridge's model provider (`python -m bridge`, see bridge/): one websocket
// to 127.0.0.1, opened again with back-off whenever the bridge is away. Each connection is a client of the same
// Python Host the side panel uses (engine/host.py routes replies by request id), so the model loads once.
// The bridge knows this document by its Origin (chrome-extension://<id>), which web pages cannot forge.
// Its port is a panel setting that the service worker passes in this document's URL.
import { DEFAULTS, Kind } from "./protocol.js";

const BRIDGE_PORT = Number(new URLSearchParams(location.search).get("bridge_port")) || DEFAULTS.bridge_port;
const BRIDGE_URL = `ws://127.0.0.1:${BRIDGE_PORT}`;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000]; // then 4 s between tries, for as long as it takes

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Python's Host exists once offscreen.js has unpacked the engine (before the model has loaded).
async function pythonHost() {
  while (!globalThis.pyodide?.globals.has("host")) await sleep(100);
  return globalThis.pyodide.globals.get("host");
}

// One connection's life: resolves when it closes (at once if the bridge is not there).
function connect(host) {
  return new Promise((resolve) => {
    const socket = new WebSocket(BRIDGE_URL);
    let link = null; // this connection's client of the Host
    socket.onopen = () => {
      link = host.connect_json((text) => socket.readyState === WebSocket.OPEN && socket.send(text));
      socket.send(JSON.stringify({ kind: Kind.HELLO, id: null, content: { role: "provider" } }));
    };
    socket.onmessage = (event) => link?.receive(event.data);
    socket.onclose = () => {
      link?.close(); // stop what it asked for: the model is free for the panel
      link?.destroy();
      resolve(link !== null);
    };
  });
}

async function main() {
  const host = await pythonHost();
  for (let failures = 0; ; ) {
    failures = (await connect(host)) ? 0 : failures + 1;
    await sleep(BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)]);
  }
}

main().catch((error) => console.error("bridge link:", error));
