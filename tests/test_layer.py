"""A block's weights as load_layer reads them from a file: stacked where the file splits them, as they lie
where it fuses them (Phi 3), each family's extra tensors only where its config asks for them, the caches at
the size asked, and a matrix of a type Hearth cannot run named before anything else the block misses."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import ModelConfig
from engine.errors import UnsupportedModel
from engine.gguf import open_gguf
from engine.layer import load_layer
from engine.upload import Uploader, Weight
from tests.arch_models import write_tiny_model
from tests.gguf_files import write_gguf

EXTRAS = ("bqkv", "q_norm", "k_norm", "attn_post_norm", "ffn_post_norm")


def _layer(device, gguf, i: int = 0, cache_bytes: int = 4096):
    config = ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors))
    return load_layer(Uploader(device, gguf, None, frozenset(), None), config, i, cache_bytes)


@pytest.mark.parametrize(
    ("arch", "present"),
    [("llama", ()), ("qwen2", ("bqkv",)), ("qwen3", ("q_norm", "k_norm")), ("phi3", ()),
     ("gemma2", ("attn_post_norm", "ffn_post_norm")),
     ("gemma3", ("q_norm", "k_norm", "attn_post_norm", "ffn_post_norm"))],
)  # fmt: skip
def test_each_family_brings_its_own_tensors_and_no_others(engine, tmp_path, arch, present):
    gguf = open_gguf(write_tiny_model(tmp_path / f"{arch}.gguf", arch))
    layer = _layer(engine.model.device, gguf, i=1)
    assert {name for name in EXTRAS if getattr(layer, name) is not None} == set(present)
    # q | k | v and gate | up one weight each: stacked from the file's three and two, or Phi 3's as they lie
    assert isinstance(layer.wqkv, Weight) and isinstance(layer.w_gate_up, Weight)
    assert layer.wqkv.type == gguf.tensors["blk.1.attn_qkv.weight" if arch == "phi3" else "blk.1.attn_q.weight"].type
    assert layer.ops == ()  # Model binds them


def test_the_caches_are_the_size_asked(engine, model_gguf):
    layer = _layer(engine.model.device, model_gguf, i=2, cache_bytes=12288)
    assert layer.key_cache.size == layer.value_cache.size == 12288
    assert layer.key_cache is not layer.value_cache


def test_a_matrix_hearth_cannot_run_is_named_before_a_missing_norm(engine, tmp_path):
    dim = 256  # a superblock a row
    meta = {"llama.block_count": 1, "llama.embedding_length": dim, "llama.feed_forward_length": dim,
            "llama.attention.head_count": 2, "llama.context_length": 64, "llama.attention.layer_norm_rms_epsilon": 1e-5,
            "tokenizer.ggml.model": "llama"}  # fmt: skip
    matrix = np.zeros((dim, dim), np.float32)
    tensors = {f"blk.0.{name}.weight": (matrix, 0) for name in ("attn_q", "attn_k", "attn_v", "attn_output",
                                                                 "ffn_gate", "ffn_up", "ffn_down")}
    tensors["blk.0.ffn_down.weight"] = (np.zeros((dim, 66), np.uint8), 16)  # IQ2_XXS: 66 bytes a superblock
    tensors["token_embd.weight"] = (np.zeros((8, dim), np.float32), 0)  # no attn_norm, no ffn_norm
    gguf = open_gguf(write_gguf(tmp_path / "iq2.gguf", "llama", meta, tensors))
    with pytest.raises(UnsupportedModel, match="blk.0.ffn_down.weight has type IQ2_XXS"):
        _layer(engine.model.device, gguf)
