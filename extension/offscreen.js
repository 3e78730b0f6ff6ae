// Hearth's offscreen document: hosts Pyodide and the Python engine, keeps the model resident, and forwards
// every message between the extension and Python's Host (engine/host.py), which owns the protocol
// (engine/protocol.py), the queue and the logic. Messages carry `target`, which only the JavaScript reads.
import { loadPyodide } from "./pyodide/pyodide.mjs";
import { DEFAULTS, ErrorType, Kind } from "./protocol.js";
import { download } from "./model_bytes.js";
import "./replay.js"; // hearthReplay, which the engine records each step's dispatches with

const SETTINGS = new URLSearchParams(location.search); // the engine settings, from the worker
const N_CTX = Number(SETTINGS.get("n_ctx")) || DEFAULTS.n_ctx;
const SEATS = Number(SETTINGS.get("seats")) || DEFAULTS.seats; // requests answered at once
const KV_F16 = SETTINGS.get("kv_f16") === "true"; // the KV cache in f16
const F16_PROMPTS = SETTINGS.get("f16_prompts") === "true"; // prompts in f16 where the GPU has shader-f16
const Q8_PROMPTS = SETTINGS.get("q8_prompts") === "true"; // prompts on x in 8 bits (GPUs that tile prompts)
const py = (flag) => (flag ? "True" : "False");
const ENGINE_DIR = "/home/pyodide/hearth"; // engine/ and shaders/ side by side, as engine.kernels expects

let panels = null; // the panels' connection to Python's Host (JSON text in), once the engine is unpacked
const early = []; // messages that arrive before it

function post(message) {
  chrome.runtime.sendMessage({ ...message, target: "panel" }).catch(() => {}); // no panel open: nothing to do
}

// Before Python runs, this document reports its own progress; from then on the Host does.
const progress = (stage) => post({ kind: Kind.PROGRESS, id: null, content: { stage, done: 0, total: 1 } });

chrome.runtime.onMessage.addListener((message) => {
  if (message?.target !== "offscreen" || message.kind === Kind.PAIR) return false; // PAIR: bridge_link.js's
  if (panels) panels.receive(JSON.stringify(message));
  else early.push(message);
  return false;
});

async function main() {
  progress("pyodide");
  const pyodide = await loadPyodide({ indexURL: chrome.runtime.getURL("pyodide/") });
  globalThis.pyodide = pyodide; // for DevTools, bridge_link.js (and tests that reach this document over CDP)
  const build = await (await fetch("build.json")).json();
  progress("packages");
  await pyodide.loadPackage(build.wheels.map((name) => chrome.runtime.getURL(`wheels/${name}`)), {
    messageCallback: () => {},
  });
  pyodide.unpackArchive(await (await fetch(build.engine)).arrayBuffer(), "zip", { extractDir: ENGINE_DIR });
  pyodide.globals.set("post_json", (text) => post(JSON.parse(text)));
  pyodide.runPython(`
import sys
sys.path.insert(0, "${ENGINE_DIR}")
from engine.errors import LoadError
from engine.gpu.browser import ModelBytesSource
from engine.host import Host
from engine.protocol import progress

host = Host()
panels = host.connect_json(post_json)

def announce_download(done, total):
    host.announce(progress("download", done, total))

def fail(message):
    host.fail(LoadError(message))
`);
  panels = pyodide.globals.get("panels");
  early.splice(0).forEach((message) => panels.receive(JSON.stringify(message)));
  pyodide.globals.set("model_bytes", await download(build.model, pyodide.globals.get("announce_download")));
  // (the bytes are on the GPU after the load: dropping the last reference frees the file's copy in JS memory)
  await pyodide.runPythonAsync(`
await host.load(ModelBytesSource(model_bytes), n_ctx=${N_CTX}, seats=${SEATS}, kv_f16=${py(KV_F16)},
                f16_prompts=${py(F16_PROMPTS)}, q8_prompts=${py(Q8_PROMPTS)})
del model_bytes
`);
}

main().catch((error) => {
  console.error(error);
  const message = String(error?.message ?? error);
  if (panels) globalThis.pyodide.globals.get("fail")(message);
  else post({ kind: Kind.ERROR, id: null, content: { type: ErrorType.LoadError, message } });
});
