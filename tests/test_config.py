"""Hyperparameters from GGUF metadata."""

from __future__ import annotations

import pytest

from engine.config import ModelConfig
from engine.errors import UnsupportedModel


def test_smollm2_hyperparameters(model_gguf):
    c = ModelConfig.from_gguf(model_gguf.metadata, set(model_gguf.tensors))
    assert (c.arch, c.n_layers, c.dim, c.ffn_dim) == ("llama", 30, 576, 1536)
    assert (c.n_heads, c.n_kv_heads, c.head_dim, c.kv_dim) == (9, 3, 64, 192)
    assert c.vocab_size == 49152 and c.rope_theta == 100000.0 and not c.rope_neox
    assert c.tied_output and not c.qkv_bias


def _llama_metadata(**extra):
    meta = {
        "general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 64,
        "llama.feed_forward_length": 128, "llama.attention.head_count": 4, "llama.context_length": 256,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
    }
    meta.update(extra)
    return meta


def test_defaults_and_linear_rope_scaling():
    c = ModelConfig.from_gguf(
        _llama_metadata(**{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 4.0}), {"output.weight"}
    )
    assert c.n_kv_heads == 4 and c.head_dim == 16 and c.rope_dim == 16
    assert c.rope_freq_scale == 0.25 and c.rope_theta == 10000.0 and not c.tied_output


def test_qwen2_uses_neox_rope_and_biases():
    meta = {k.replace("llama.", "qwen2."): v for k, v in _llama_metadata().items()}
    meta["general.architecture"] = "qwen2"
    c = ModelConfig.from_gguf(meta, {"blk.0.attn_q.bias"})
    assert c.rope_neox and c.qkv_bias


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"general.architecture": "gpt2"}, "unsupported architecture 'gpt2'"),
        (_llama_metadata(**{"llama.rope.scaling.type": "yarn"}), "unsupported RoPE scaling 'yarn'"),
        ({"general.architecture": "llama"}, "lacks llama.embedding_length"),
    ],
)
def test_unsupported_models_are_named(meta, message):
    with pytest.raises(UnsupportedModel, match=message):
        ModelConfig.from_gguf(meta, set())
