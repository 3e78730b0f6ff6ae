// The offscreen document as the local bridge's model provider (`python -m bridge`, see bridge/ and
// engine/api.py): one websocket to 127.0.0.1, opened again with back-off whenever the bridge is away.
// The bridge sends engine/host.py's own input messages (chat, stop); engine.host.SharedClient gives the
// bridge its share of the same Host the side panel uses, so the model stays loaded once.
// The bridge knows this document by its Origin (chrome-extension://<id>), which web pages cannot forge.
// Its port is a panel setting that the service worker passes in this document's URL.
const BRIDGE_PORT = Number(new URLSearchParams(location.search).get("bridge_port")) || 8741; // DEFAULT_PORT
const BRIDGE_URL = `ws://127.0.0.1:${BRIDGE_PORT}`;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000]; // then 4 s between tries, for as long as it takes

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Python's Host exists once offscreen.js has unpacked the engine (before the model has loaded).
async function sharedClient() {
  for (;;) {
    const pyodide = globalThis.pyodide;
    if (pyodide?.globals.has("host")) {
      pyodide.globals.set("bridge_send", (text) => socket?.readyState === WebSocket.OPEN && socket.send(text));
      pyodide.runPython(`
import json
from engine.host import SharedClient
bridge_link = SharedClient(host, lambda message: bridge_send(json.dumps(message)))

def bridge_receive(text):
    bridge_link.receive(json.loads(text))
`);
      return { receive: pyodide.globals.get("bridge_receive"), gone: pyodide.globals.get("bridge_link").gone };
    }
    await sleep(100);
  }
}

let socket = null;

// One connection's life: resolves when it closes (at once if the bridge is not there).
function connect(link) {
  return new Promise((resolve) => {
    socket = new WebSocket(BRIDGE_URL);
    let opened = false;
    socket.onopen = () => {
      opened = true;
      socket.send(JSON.stringify({ kind: "hello", id: null, content: { role: "provider" } }));
    };
    socket.onmessage = (event) => link.receive(event.data);
    socket.onclose = () => {
      if (opened) link.gone(); // stop what it asked for: the model is free for the panel
      resolve(opened);
    };
  });
}

async function main() {
  const link = await sharedClient();
  for (let failures = 0; ; ) {
    failures = (await connect(link)) ? 0 : failures + 1;
    await sleep(BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)]);
  }
}

main().catch((error) => console.error("bridge link:", error));
