// Hearth's offscreen document: hosts Pyodide and the Python engine, keeps the model resident, and moves
// messages between the extension and Python's Host (engine/host.py), which owns the queue and the logic.
// Messages are the envelope {kind, id, content} plus `target`, which only the JavaScript reads.
import { loadPyodide } from "./pyodide/pyodide.mjs";

const N_CTX = Number(new URLSearchParams(location.search).get("n_ctx")) || 2048; // set by the service worker
const ENGINE_DIR = "/home/pyodide/hearth"; // engine/ and shaders/ side by side, as engine.kernels expects

let receive = null; // Python's Host.receive (JSON in), once the engine is unpacked
const early = []; // requests that arrive before it
let loadState = progressMessage("start", 0, 1); // the last load message, re-sent to panels that ask

function post(message) {
  const out = { ...message, target: "panel" };
  if (out.id === null && ["progress", "ready", "error"].includes(out.kind)) loadState = out;
  chrome.runtime.sendMessage(out).catch(() => {}); // no panel open: nothing to do
}

function progressMessage(stage, done, total) {
  return { kind: "progress", id: null, content: { stage, done, total } };
}

chrome.runtime.onMessage.addListener((message) => {
  if (message?.target !== "offscreen") return false;
  switch (message.kind) {
    case "status": // a panel opened: tell it where loading stands
      post({ ...loadState });
      break;
    default:
      if (receive) receive(JSON.stringify(message));
      else early.push(message);
  }
  return false;
});

async function main() {
  post(progressMessage("pyodide", 0, 1));
  const pyodide = await loadPyodide({ indexURL: chrome.runtime.getURL("pyodide/") });
  globalThis.pyodide = pyodide; // for DevTools (and tests that reach this document over CDP)
  const build = await (await fetch("build.json")).json();
  post(progressMessage("packages", 0, 1));
  await pyodide.loadPackage(build.wheels.map((name) => chrome.runtime.getURL(`wheels/${name}`)), {
    messageCallback: () => {},
  });
  pyodide.unpackArchive(await (await fetch(build.engine)).arrayBuffer(), "zip", { extractDir: ENGINE_DIR });
  pyodide.globals.set("post_json", (text) => post(JSON.parse(text)));
  pyodide.runPython(`
import json, sys
sys.path.insert(0, "${ENGINE_DIR}")
from engine.gpu.browser import ArrayBufferSource
from engine.host import Host

host = Host(lambda message: post_json(json.dumps(message)))

def receive_json(text):
    host.receive(json.loads(text))
`);
  receive = pyodide.globals.get("receive_json");
  early.splice(0).forEach((message) => receive(JSON.stringify(message)));
  pyodide.globals.set("model_buffer", await download(build.model));
  await pyodide.runPythonAsync(`await host.load(ArrayBufferSource(model_buffer), n_ctx=${N_CTX})`);
}

// The model file into one ArrayBuffer, with progress: Python reads its header and hands views of it to WebGPU.
async function download(path) {
  const response = await fetch(path);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const parts = [];
  let done = 0;
  let shown = 0;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    parts.push(value);
    done += value.length;
    if (done - shown > 4 << 20) {
      shown = done;
      post(progressMessage("download", done, total || done));
    }
  }
  const bytes = new Uint8Array(done);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  post(progressMessage("download", done, done));
  return bytes.buffer;
}

main().catch((error) => {
  console.error(error);
  post({ kind: "error", id: null, content: { type: "LoadError", message: String(error?.message ?? error) } });
});
