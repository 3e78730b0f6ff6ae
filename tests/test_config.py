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


def _family(arch: str, **extra):
    meta = {k.replace("llama.", f"{arch}."): v for k, v in _llama_metadata().items()}
    meta["general.architecture"] = arch
    meta.update({f"{arch}.{k}": v for k, v in extra.items()})
    return meta


def test_gemma2_as_llama_cpp_reads_it():
    c = ModelConfig.from_gguf(_family("gemma2", block_count=5), set())
    assert c.embed_scale == pytest.approx(8.0) and c.glu == "gelu" and c.post_norms and c.rope_neox
    assert c.attn_scale == pytest.approx(1 / 4) and (c.attn_softcap, c.final_softcap) == (50.0, 30.0)
    assert c.sliding_window == 4096 and c.sliding_layers == (True, False, True, False, True)
    assert not c.qk_norm and c.rope_base(0) == c.rope_base(1) == (10000.0, 1.0)
    declared = ModelConfig.from_gguf(_family("gemma2", attn_logit_softcapping=20.0, final_logit_softcapping=10.0,
                                             **{"attention.sliding_window": 8}), set())  # fmt: skip
    assert (declared.attn_softcap, declared.final_softcap, declared.sliding_window) == (20.0, 10.0, 8)


def test_gemma2_27b_scales_queries_by_dim_over_heads():
    c = ModelConfig.from_gguf(_family("gemma2", block_count=46, **{"attention.key_length": 32}), set())
    assert c.head_dim == 32 and c.attn_scale == pytest.approx(1 / (64 / 4) ** 0.5)


def test_gemma3_slides_five_of_six_layers_with_a_local_rope():
    meta = _family("gemma3", block_count=7, **{"attention.sliding_window": 16, "rope.freq_base": 1e6,
                                               "rope.scaling.type": "linear", "rope.scaling.factor": 8.0})
    c = ModelConfig.from_gguf(meta, {"blk.0.attn_q_norm.weight"})
    assert c.sliding_layers == (True, True, True, True, True, False, True) and c.sliding_window == 16
    assert c.qk_norm and c.post_norms and c.glu == "gelu" and (c.attn_softcap, c.final_softcap) == (0.0, 0.0)
    assert c.rope_base(0) == (10000.0, 1.0) and c.rope_base(5) == (1e6, 0.125)
    no_window = ModelConfig.from_gguf(_family("gemma3"), set())
    assert no_window.sliding_layers == () and not no_window.slides(0) and no_window.rope_base(0) == (10000.0, 1.0)
    flags = ModelConfig.from_gguf(_family("gemma3", **{"attention.sliding_window": 4,
                                                       "attention.sliding_window_pattern": [False, True]}), set())
    assert flags.sliding_layers == (False, True)


def test_phi3_long_rope_picks_factors_by_context():
    meta = _family("phi3", **{"rope.scaling.type": "longrope", "rope.scaling.attn_factor": 1.19,
                              "rope.scaling.original_context_length": 128, "attention.sliding_window": 64})
    c = ModelConfig.from_gguf(meta, set())
    assert c.rope_neox and c.rope_attn_factor == pytest.approx(1.19) and c.sliding_layers == ()
    assert c.rope_factors_tensor(128) == "rope_factors_short.weight"
    assert c.rope_factors_tensor(129) == "rope_factors_long.weight"
    assert ModelConfig.from_gguf(_llama_metadata(), set()).rope_factors_tensor(4096) == "rope_freqs.weight"


def test_qwen3_norms_q_and_k_and_mistral_may_slide():
    assert ModelConfig.from_gguf(_family("qwen3"), {"blk.0.attn_q_norm.weight"}).qk_norm
    c = ModelConfig.from_gguf(_llama_metadata(**{"llama.attention.sliding_window": 32}), set())
    assert c.sliding_window == 32 and c.sliding_layers == (True, True)


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
