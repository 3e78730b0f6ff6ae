"""The toy-model writer itself; tests/test_reference.py runs every toy model in llama.cpp and the reference."""

from __future__ import annotations

import numpy as np

from tests import arch_models
from tests.gguf_files import read_gguf, write_gguf
from tests.llama_sdist import template, vocab_case


def test_array_writer_writes_the_bytes_gguf_writes(tmp_path):
    metadata = {"t.strings": ["", "a", "héllo", "▁the", "<0x0A>"], "t.ints": [3, -1, 7], "t.floats": [0.5, -2.0],
                "t.flags": [True, False, True], "t.count": 5, "t.name": "x", "t.eps": 1e-6, "t.on": True}  # fmt: skip
    tensors = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b.weight": np.ones(5, np.float32)}
    ours = arch_models.write_gguf_fast(tmp_path / "ours.gguf", "llama", metadata, tensors)
    theirs = write_gguf(tmp_path / "theirs.gguf", "llama", metadata, {k: (v, 0) for k, v in tensors.items()})
    assert ours.read_bytes() == theirs.read_bytes()


def test_phi3_file_holds_its_family_tokenizer_keys_and_tensors(tmp_path):
    """The smallest vocabulary's file read back: the tokenizer copied whole, the converter's tensor names."""
    family = arch_models.FAMILIES["phi3"]
    f = read_gguf(arch_models.write_tiny_model(tmp_path / "phi3.gguf", "phi3"))
    vocab = read_gguf(vocab_case(family.vocab).gguf).metadata
    for key, value in vocab.items():
        if key.startswith("tokenizer.") and key != "tokenizer.chat_template":
            assert f.metadata[key] == value, key
    assert f.metadata["tokenizer.chat_template"] == template(family.template)
    assert f.metadata["general.architecture"] == "phi3"
    layer = {"attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"}
    expected = {"token_embd", "output_norm", "output", "rope_factors_short", "rope_factors_long"}
    expected |= {f"blk.{i}.{name}" for i in range(family.n_layers) for name in layer}
    assert set(f.tensors) == {f"{name}.weight" for name in expected}
    assert f.tensors["blk.0.ffn_up.weight"].shape == (family.dim, 2 * family.hidden_dim)


def test_llama3_rope_freqs_follow_the_converter_formula():
    """Llama 3.1's own rope_scaling (factor 8, low 1, high 4, original 8192): 1 for the fast pairs, 8 for the
    slow ones, a smooth blend between."""
    factors = arch_models.llama3_rope_freqs(500000.0, 128, original_context=8192)
    wavelen = 2 * np.pi * 500000.0 ** (np.arange(0, 128, 2) / 128)
    assert factors.shape == (64,) and np.all(np.diff(factors) >= 0)
    np.testing.assert_array_equal(factors[wavelen < 2048], 1.0)
    np.testing.assert_array_equal(factors[wavelen > 8192], 8.0)
    between = factors[(wavelen >= 2048) & (wavelen <= 8192)]
    assert len(between) > 0 and np.all((between > 1.0) & (between < 8.0))
