// The engine's prefill and decode speed inside the browser, as benchmarks/bench_engine.py measures them
// natively (its `measure`, copied next to this page). Boots Pyodide and the engine as the extension's
// offscreen document does, reads the model from ?model=URL in chunks as the extension does (model_bytes.js:
// weights go from there to WebGPU), and logs one line, "HEARTH_BENCH <json>", or "HEARTH_BENCH_ERROR <message>".
import { loadPyodide } from "./pyodide/pyodide.mjs";
import { download } from "./model_bytes.js"; // the extension's model download
import "./replay.js"; // the extension's hearthReplay

const query = new URLSearchParams(location.search);
const ENGINE_DIR = "/home/pyodide/hearth";

async function main() {
  const started = performance.now();
  const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", location.href).href });
  const build = await (await fetch("build.json")).json();
  await pyodide.loadPackage(build.wheels.map((name) => new URL(`wheels/${name}`, location.href).href));
  pyodide.unpackArchive(await (await fetch(build.engine)).arrayBuffer(), "zip", { extractDir: ENGINE_DIR });
  for (const name of ["bench_engine.py", "profile_decode.py", "check_tiles.py"]) {
    pyodide.FS.writeFile(`${ENGINE_DIR}/${name}`, await (await fetch(name)).text());
  }
  pyodide.globals.set("model_bytes", await download(query.get("model"), () => {}));
  const n_prompt = Number(query.get("prompt") || 128);
  const n_decode = Number(query.get("decode") || 64);
  const ignore_eos = query.get("ignore_eos") ? "True" : "False";
  const steps = Number(query.get("profile") || 0); // profile_decode.py's figures too, over this many steps
  const profileTokens = Number(query.get("profile_tokens") || 1); // tokens a step in its per-op figures
  const check = query.get("check_tiles") ? "True" : "False"; // check_tiles.py's products against plain Python
  const f16 = query.get("f16_prompts") ? "True" : "False"; // prompts' products in f16 tiles (Engine.load's f16_prompts)
  const q8 = query.get("q8_prompts") ? "True" : "False"; // or on x in 8 bits, integer tiles (q8_prompts)
  const result = await pyodide.runPythonAsync(`
import json, math, sys
sys.path.insert(0, "${ENGINE_DIR}")
from bench_engine import measure, prompt_logits
from profile_decode import profile_engine
from engine.engine import Engine
from engine.gguf import parse_gguf
from engine.gpu.browser import ModelBytesSource

n_ctx = max(512, ${n_prompt} + ${n_decode} + 8)
engine = await Engine.load(gguf=parse_gguf(ModelBytesSource(model_bytes)), n_ctx=n_ctx, f16_prompts=${f16},
                           q8_prompts=${q8})
prefill, decode = await measure(engine, ${n_prompt}, ${n_decode}, ${ignore_eos})
info, kernels = engine.model.device.info, engine.model.kernels
figures = {"prefill": prefill, "decode": decode, "device": info.device or info.vendor,
           "variant": kernels.variant, "dot4": kernels.dot4, "features": sorted(info.features),
           "tiles": kernels.tiles_module(engine.model.config.dim) if kernels.tiles else None}
logits = await prompt_logits(engine, ${n_prompt})  # its 256 largest, for bench_page to hold against native ones
finite = [(i, v) for i, v in enumerate(logits) if math.isfinite(v)]  # (JSON has no NaN: synthetic weights can
figures["top_logits"] = sorted(finite, key=lambda p: -p[1])[:256]     # overflow, in f16 above all)
figures["nonfinite_logits"] = len(logits) - len(finite)
if ${check}:
    from check_tiles import check_tiles
    figures["check_tiles"] = await check_tiles(engine.model.device, ${f16})
if ${steps}:
    engine.model.rewind(0)
    figures["profile"] = await profile_engine(engine, ${steps}, ${profileTokens})
json.dumps(figures)
`);
  const figures = JSON.parse(result);
  figures.boot_s = (performance.now() - started) / 1000;
  console.log(`HEARTH_BENCH ${JSON.stringify(figures)}`);
}

main().catch((error) => console.log(`HEARTH_BENCH_ERROR ${String(error?.message ?? error).replaceAll("\n", " | ")}`));
