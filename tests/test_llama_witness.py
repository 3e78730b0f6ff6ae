"""The tests' llama.cpp decodes in a child process, or says plainly why it cannot (tests/llama_witness.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.llama_witness import decode_in_child


def test_llama_cpp_decodes_in_a_child_process(model_path):
    why = decode_in_child(model_path)
    assert why is None, why


def test_a_crash_is_reported_with_its_signal(tmp_path, monkeypatch):
    """A child that dies of SIGILL (as an over-tuned build does) is named, with what to do about it."""
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: real_run([sys.executable, "-c", crash], **kw))
    why = decode_in_child(tmp_path / "model.gguf")
    assert why is not None and "SIGILL" in why and "GGML_NATIVE=OFF" in why
