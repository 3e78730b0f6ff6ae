// hearthReplay: records a plan of dispatches ([pipeline, bind group, x, y, z] each) into a compute pass. The
// engine (engine/gpu/browser.py) calls it once a step: from Python each dispatch would cross Pyodide's FFI
// three times, ~300 dispatches a token. Pages that run the engine import this module (offscreen.js, and
// benchmarks/page): an extension's CSP forbids making the function from a string in Python.
globalThis.hearthReplay = (pass, plan) => {
  for (const [pipeline, bindGroup, x, y, z] of plan) {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
  }
};
