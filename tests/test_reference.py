"""Checks the float64 reference against llama.cpp, so the engine can later be checked against it."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from tests.reference import ReferenceModel

FRANCE_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
)
GGML_TYPE_F32 = 0  # ggml.h
LLAMA_FTYPE_ALL_F32 = 0  # llama.h


@pytest.fixture(scope="module")
def vocab(llama_cpp, model_path):
    """llama.cpp's tokenizer alone, until engine.tokenizer exists."""
    return llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False)


@pytest.fixture(scope="module")
def prompt_ids(vocab) -> list[int]:
    return vocab.tokenize(FRANCE_PROMPT.encode(), add_bos=False, special=True)


@pytest.fixture(scope="module")
def model(model_path) -> ReferenceModel:
    return ReferenceModel(model_path)


def llama_cpp_logits(llama_cpp, path: Path, ids: list[int], **kwargs) -> np.ndarray:
    """llama.cpp's logits for every position of `ids` (no BOS added: eval takes ids as they are)."""
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_threads=2, logits_all=True, verbose=False, **kwargs)
    llm.eval(ids)
    return np.asarray(llm.scores[: len(ids)], dtype=np.float64)


def quantize(llama_cpp, source: Path, out: Path, ftype: int) -> None:
    """llama.cpp's quantiser: `source` rewritten in the mix `ftype` (LLAMA_FTYPE_* of llama.h) as `out`."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = ftype, True, 2
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    assert status == 0, f"llama.cpp could not quantise {source} as ftype {ftype}"


def top2_gap(logits: np.ndarray) -> np.ndarray:
    """Per row, the distance between the largest and second-largest logit."""
    top2 = np.partition(logits, -2, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def test_answers_paris(model, vocab, prompt_ids):
    ids, gaps = model.greedy(prompt_ids, 12)
    assert len(ids) == len(gaps) == 12 and min(gaps) >= 0
    assert "Paris" in vocab.detokenize(ids).decode("utf-8", errors="replace")


def test_logits_follow_llama_cpp_q4(llama_cpp, model, model_path, prompt_ids):
    """Q4_1 weights: llama.cpp quantises activations to 8 bits, so only near agreement is expected."""
    model.reset()
    ref = model.forward(prompt_ids, 0)
    theirs = llama_cpp_logits(llama_cpp, model_path, prompt_ids)
    for pos in range(len(prompt_ids)):
        assert np.corrcoef(ref[pos], theirs[pos])[0, 1] > 0.99, pos
    # Where the reference's top two are close, 8-bit activations may flip the choice (the last
    # position of this very prompt has a gap of ~0.08: "The" vs "L"), so compare argmax only where
    # the choice is clear.
    clear = top2_gap(ref) > 0.5
    assert clear.sum() > len(prompt_ids) // 2
    np.testing.assert_array_equal(ref[clear].argmax(-1), theirs[clear].argmax(-1))


def test_matches_llama_cpp_exactly_on_f32(llama_cpp, model_path, prompt_ids, tmp_path):
    """F32 weights and an F32 KV cache: llama.cpp quantises nothing, only float32 rounding is left."""
    f32_path = tmp_path / "model-f32.gguf"
    quantize(llama_cpp, model_path, f32_path, LLAMA_FTYPE_ALL_F32)
    model = ReferenceModel(f32_path)
    ref = model.forward(prompt_ids, 0)
    theirs = llama_cpp_logits(llama_cpp, f32_path, prompt_ids, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    np.testing.assert_allclose(ref, theirs, atol=1e-3, rtol=0)


def test_chunked_prefill_equals_whole(model, prompt_ids):
    """Splitting the prompt exercises the KV cache and the causal mask across forward calls."""
    model.reset()
    whole = model.forward(prompt_ids, 0)
    model.reset()
    cut = len(prompt_ids) - 5
    head = model.forward(prompt_ids[:cut], 0)
    tail = np.concatenate([model.forward([t], cut + i) for i, t in enumerate(prompt_ids[cut:])])
    np.testing.assert_allclose(np.concatenate([head, tail]), whole, atol=1e-9)


def test_start_pos_must_follow_the_cache(model, prompt_ids):
    model.reset()
    with pytest.raises(ValueError, match="start_pos"):
        model.forward(prompt_ids[:3], 2)
