"""llama.cpp (llama-cpp-python), the tests' second opinion, checked in a child process before any test uses it.

A llama.cpp built for CPU features the machine does not grant (AMX advertised inside a virtual machine that
does not pass it through) dies of SIGILL at its first decode, and in-process that would end the whole test run
without a word. One decode in a child process first turns that into a failed test with a reason.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

# One prompt of four tokens through a real context: the decode is where an illegal instruction shows.
_DECODE = """
import sys, llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=64, n_threads=2, verbose=False)
llm.eval(llm.tokenize(b"The capital of France is", add_bos=False))
print(len(llm.scores[0]))
"""


def decode_in_child(model: Path) -> str | None:
    """None when llama.cpp decodes `model` in a child process; otherwise why it could not, in one paragraph."""
    try:
        run = subprocess.run([sys.executable, "-c", _DECODE, str(model)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "llama.cpp did not finish one decode within 300 s in a child process"
    if run.returncode == 0:
        return None
    if run.returncode < 0:
        name = signal.Signals(-run.returncode).name
        cause = {"SIGILL": " (an illegal instruction: llama-cpp-python was built for CPU features this machine "
                           "does not grant; scripts/setup.sh builds it with CMAKE_ARGS=-DGGML_NATIVE=OFF)"}
        return f"llama.cpp died of {name} at its first decode{cause.get(name, '')}"
    tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
    return f"llama.cpp failed its first decode (exit status {run.returncode}): {' | '.join(tail)}"
