"""The model's two layouts of a layer agree: stacked weights (qkv, GLU gate_up: 11 dispatches) and
the fallback for weights of different types (separate products into the qkv rows; gate, up, silu_mul);
and its two kernel variants agree (the GPUs' one folds the RMSNorms into one token's products)."""

from __future__ import annotations

import numpy as np

from engine import model as model_module
from engine.model import Model


def _logits(loop, engine, gguf, monkeypatch, separate: bool, variant: str = "scalar") -> tuple[np.ndarray, set[str]]:
    if separate:  # as if q, k, v (and gate, up) differed in type
        monkeypatch.setattr(
            model_module._Uploader,
            "stacked",
            lambda self, names, n_in, rows: tuple(self.tensor(n, (n_in, r)) for n, r in zip(names, rows, strict=True)),
        )
    model = Model.load(engine.model.device, gguf, n_ctx=64, max_batch=8, variant=variant)
    monkeypatch.undo()
    rows = []
    for tokens in ([1, 2, 3, 4, 5, 6, 7], [8], [9]):  # a prefill, then two decode steps
        model.forward(tokens)
        rows.append(np.frombuffer(bytes(loop.run_until_complete(model.device.read_buffer(model.logits))), np.float32))
    return np.array(rows), set(model.layers[0].ops)


def test_fallback_layout_matches_the_stacked_one(engine, event_loop_session, model_gguf, monkeypatch):
    stacked, ops = _logits(event_loop_session, engine, model_gguf, monkeypatch, separate=False)
    separate, fallback_ops = _logits(event_loop_session, engine, model_gguf, monkeypatch, separate=True)
    assert {"qkv", "gate_up"} <= ops and not {"q", "gate", "silu_mul"} & ops
    assert {"q", "k", "v", "gate", "up", "silu_mul"} <= fallback_ops and not {"qkv", "gate_up"} & fallback_ops
    scale = np.abs(stacked).max()
    assert np.abs(stacked - separate).max() <= 1e-4 * scale


def test_gpu_variant_with_folded_norms_matches_the_scalar_one(engine, event_loop_session, model_gguf, monkeypatch):
    scalar, _ = _logits(event_loop_session, engine, model_gguf, monkeypatch, separate=False)
    for separate in (False, True):  # folded into qkv and gate_up, or into q, k, v, gate and up
        gpu, _ = _logits(event_loop_session, engine, model_gguf, monkeypatch, separate=separate, variant="subgroup")
        assert np.abs(scalar - gpu).max() <= 1e-4 * np.abs(scalar).max(), f"separate={separate}"
        assert (scalar.argmax(axis=1) == gpu.argmax(axis=1)).all()
