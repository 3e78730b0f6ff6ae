"""Checks the float64 reference against llama.cpp, so the engine can later be checked against it: on the
default model, and on a toy model of every architecture (tests/arch_models.py)."""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from tests.arch_models import ARCHS, FAMILIES, write_tiny_model
from tests.gguf_files import read_gguf, write_gguf
from tests.greedy_cases import compare_greedy
from tests.llama_sdist import template, vocab_case
from tests.reference import ReferenceModel, UnsupportedModel, Weights, read_config

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


# ---------------------------------------------------------------- reading GGUF metadata as llama.cpp does


def test_read_gguf_agrees_with_gguf_reader(tmp_path):
    """The reference's own GGUF parser (gguf.GGUFReader is too slow for big vocabularies) reads the same."""
    import gguf

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((4, 64)).astype(np.float32)
    tensors = {"f32.weight": (matrix, 0), "f16.weight": (matrix.astype(np.float16), 1),
               "q8_0.weight": (gguf.quants.quantize(matrix, gguf.GGMLQuantizationType.Q8_0), 8),
               "vector.weight": (matrix[0], 0)}  # fmt: skip
    metadata = {"t.count": 7, "t.eps": 1e-6, "t.flag": True, "t.name": "tiny", "t.tokens": ["a", "", "▁b"],
                "t.types": [1, -3], "t.scores": [0.5, -1.0], "t.flags": [True, False]}  # fmt: skip
    path = write_gguf(tmp_path / "types.gguf", "llama", metadata, tensors)
    ours, theirs = read_gguf(path), gguf.GGUFReader(path)
    assert ours.metadata == {k: f.contents() for k, f in theirs.fields.items() if not k.startswith("GGUF.")}
    for t in theirs.tensors:
        np.testing.assert_array_equal(ours.tensor(t.name), gguf.quants.dequantize(t.data, t.tensor_type))


def _metadata(arch: str, n_layers: int = 6, **keys) -> dict:
    """A model's metadata with the keys every architecture needs; `keys` are {arch}.* ones, "." as "__"."""
    return {"general.architecture": arch, f"{arch}.block_count": n_layers, f"{arch}.context_length": 4096,
            f"{arch}.embedding_length": 64, f"{arch}.feed_forward_length": 128, f"{arch}.attention.head_count": 4,
            f"{arch}.attention.layer_norm_rms_epsilon": 1e-6, "tokenizer.ggml.tokens": ["a", "b"],
            **{f"{arch}.{k.replace('__', '.')}": v for k, v in keys.items()}}  # fmt: skip


T, F = True, False
SLIDING = [  # metadata -> (window, sliding layers), as llama.cpp's load_arch_hparams reads them
    (_metadata("gemma2"), 4096, (T, F, T, F, T, F)),  # always sliding, pattern 2, window 4096 unless set
    (_metadata("gemma2", attention__sliding_window=8), 8, (T, F, T, F, T, F)),
    (_metadata("gemma3"), 0, (F,) * 6),  # only with a window
    (_metadata("gemma3", attention__sliding_window=8), 8, (T, T, T, T, T, F)),  # pattern 6
    (_metadata("gemma3", attention__sliding_window=8, attention__sliding_window_pattern=3), 8, (T, T, F, T, T, F)),
    (_metadata("gemma3", attention__sliding_window=8, attention__sliding_window_pattern=[F, T, F, T, F, T]),
     8, (F, T, F, T, F, T)),
    (_metadata("phi3", attention__sliding_window=8), 0, (F,) * 6),  # read, then turned off
    (_metadata("llama", attention__sliding_window=8), 0, (F,) * 6),  # never read
]  # fmt: skip


@pytest.mark.parametrize(("metadata", "window", "layers"), SLIDING)
def test_sliding_layers_as_llama_cpp_reads_them(metadata, window, layers):
    config = read_config(metadata)
    assert (config.sliding_window, config.swa_layers) == (window, layers)


def test_gemma_query_scale_goes_by_depth_not_by_a_key():
    """llama.cpp reads no query_pre_attn_scalar: Gemma 2 27B (46 layers) scales by 1/sqrt(dim / n_heads)."""
    wide = read_config(_metadata("gemma2", n_layers=46, attention__key_length=32))
    assert wide.query_scale == pytest.approx(1 / math.sqrt(16))
    assert read_config(_metadata("gemma2", attention__key_length=32)).query_scale == pytest.approx(1 / math.sqrt(32))


def test_gemma3_local_layers_have_their_own_unscaled_rope():
    config = read_config(_metadata("gemma3", attention__sliding_window=8, rope__freq_base=1e6,
                                   rope__scaling__type="linear", rope__scaling__factor=8.0))  # fmt: skip
    assert (config.rope_theta, config.rope_scale, config.rope_theta_swa, config.rope_scale_swa) == (1e6, 8, 1e4, 1)
    gemma2 = read_config(_metadata("gemma2", rope__freq_base=1e6, rope__scaling__factor=8.0))
    assert (gemma2.rope_theta_swa, gemma2.rope_scale_swa) == (1e6, 8)  # the global ones


@pytest.mark.parametrize(
    ("metadata", "named"),
    [(_metadata("falcon"), "falcon"), (_metadata("llama", rope__scaling__type="yarn"), "yarn")],
)
def test_unsupported_models_are_named(metadata, named):
    with pytest.raises(UnsupportedModel, match=named):
        read_config(metadata)


def test_tensors_the_reference_would_ignore_fail_loudly(tmp_path):
    """A llama with an attn_output bias (llama.cpp would add it): refused, not silently run without it."""
    shapes = {"token_embd.weight": (2, 64), "output_norm.weight": (64,), "blk.0.attn_norm.weight": (64,),
              "blk.0.attn_q.weight": (64, 64), "blk.0.attn_k.weight": (64, 64), "blk.0.attn_v.weight": (64, 64),
              "blk.0.attn_output.weight": (64, 64), "blk.0.attn_output.bias": (64,), "blk.0.ffn_norm.weight": (64,),
              "blk.0.ffn_gate.weight": (128, 64), "blk.0.ffn_up.weight": (128, 64),
              "blk.0.ffn_down.weight": (64, 128)}  # fmt: skip
    tensors = {name: (np.ones(shape, np.float32), 0) for name, shape in shapes.items()}
    path = write_gguf(tmp_path / "biased.gguf", "llama", _metadata("llama", n_layers=1), tensors)
    with pytest.raises(UnsupportedModel, match="attn_output.bias"):
        ReferenceModel(path)


# ---------------------------------------------------------------- every architecture, on toy models

TINY_PROMPT = (
    "In a small village by the sea, an old fisherman told the children a story about a whale, "
    "a storm and a lighthouse that never went dark. When the story ended, the youngest child asked"
)
TINY_PROMPT_MAX = 40  # tokens: well past the toy models' sliding windows of 8
GREEDY_STEPS = 16
# (arch, n_ctx); phi3 twice: LongRoPE's short factors below its original context 4096, its long ones above.
TINY_CASES = [*((arch, 512) for arch in ARCHS), ("phi3", 8192)]
# Allowed max |reference - llama.cpp| over max |logit|. Float32 rounding alone leaves ~1e-6 (measured
# 4e-7..1.3e-6); Gemma's GeGLU ~1e-3 (measured 4e-4 and 1e-3), as ggml's CPU GELU rounds its input to f16
# and reads the result from an f16 table (ggml-cpu/vec.h, GGML_GELU_FP16).
TINY_RTOL = {"gemma2": 3e-3, "gemma3": 3e-3}
TINY_RTOL_DEFAULT = 1e-5


@dataclass(frozen=True)
class Tiny:
    """One toy model with llama.cpp and the reference loaded on it, and the reference's prompt logits."""

    arch: str  # a key of tests.arch_models.FAMILIES
    n_ctx: int
    llm: object  # llama_cpp.Llama, logits of every position kept
    model: ReferenceModel
    prompt_ids: list[int]
    logits: np.ndarray  # (len(prompt_ids), vocab) the reference's
    atol: float  # the largest |reference - llama.cpp| a logit may show


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """arch -> the toy model's path, written on first use, once per session (and removed after it: the
    262k-token vocabularies make some files 70 MB)."""
    directory = tmp_path_factory.mktemp("arch_models")
    yield functools.cache(lambda arch: write_tiny_model(directory / f"{arch}.gguf", arch))
    for written in directory.glob("*.gguf"):
        written.unlink()


@pytest.fixture(scope="module", params=TINY_CASES, ids=lambda case: f"{case[0]}-ctx{case[1]}")
def tiny(request, llama_cpp, tiny_model_path):
    arch, n_ctx = request.param
    path = tiny_model_path(arch)
    # One thread: the toy graphs are tiny, and two threads on a busy 2-core machine wait on each other at
    # every op (seconds per decode step).
    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=64, n_ubatch=64, n_threads=1, n_threads_batch=1,
                          logits_all=True, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False)  # fmt: skip
    prompt_ids = llm.tokenize(TINY_PROMPT.encode(), add_bos=True, special=True)[:TINY_PROMPT_MAX]
    assert len(prompt_ids) >= 24
    model = ReferenceModel(path, n_ctx=n_ctx)
    logits = model.forward(prompt_ids, 0)
    atol = TINY_RTOL.get(arch, TINY_RTOL_DEFAULT) * float(np.abs(logits).max())
    yield Tiny(arch, n_ctx, llm, model, prompt_ids, logits, atol)
    llm.close()


def llama_cpp_greedy(llm, prompt_ids: list[int], n: int) -> list[int]:
    """llama.cpp's argmax continuation of the prompt, n tokens."""
    llm.reset()
    llm.eval(prompt_ids)
    ids: list[int] = []
    for step in range(n):
        ids.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        if step + 1 < n:
            llm.eval(ids[-1:])
    return ids


def test_tiny_model_tokenizes_like_its_vocabulary(tiny):
    """The toy model carries its family's tokenizer whole: llama.cpp's tokenizer tests pass on it."""
    family = FAMILIES[tiny.arch]
    for text, expected in vocab_case(family.vocab).cases:
        assert tiny.llm.tokenize(text.encode(), add_bos=False, special=False) == list(expected), text
    assert tiny.llm.metadata["tokenizer.chat_template"] == template(family.template)


def test_tiny_logits_match_llama_cpp(tiny):
    """F32 weights and KV cache: the prompt's logits at every position agree to rounding."""
    ours = tiny.logits
    tiny.llm.reset()
    tiny.llm.eval(tiny.prompt_ids)
    theirs = np.asarray(tiny.llm.scores[: len(tiny.prompt_ids)], dtype=np.float64)
    err = np.abs(ours - theirs).max()
    print(f"{tiny.arch} n_ctx={tiny.n_ctx}: max |diff| {err:.2e}, relative {err / np.abs(ours).max():.2e}")
    assert err <= tiny.atol, f"{tiny.arch}: max |reference - llama.cpp| {err:.3g} > {tiny.atol:.3g}"
    clear = top2_gap(ours) > 2 * tiny.atol
    np.testing.assert_array_equal(ours[clear].argmax(-1), theirs[clear].argmax(-1))


def test_tiny_greedy_matches_llama_cpp(tiny):
    """The reference's KV-cached decode steps and llama.cpp's pick the same tokens up to a near tie."""
    expected, gaps = tiny.model.greedy(tiny.prompt_ids, GREEDY_STEPS)
    got = llama_cpp_greedy(tiny.llm, tiny.prompt_ids, GREEDY_STEPS)
    assert compare_greedy(expected, gaps, got) is None, (expected, got)


def _config(**changes):
    return lambda w: replace(w, config=replace(w.config, **changes))


def _layers(**changes):
    return lambda w: replace(w, layers=tuple(replace(layer, **changes) for layer in w.layers))


def _wide_query(w: Weights) -> Weights:  # Gemma 27B's q.k scale instead of 1/sqrt(head_dim)
    return _config(query_scale=1 / math.sqrt(w.config.dim // w.config.n_heads))(w)


def _swap_longrope_factors(w: Weights) -> Weights:
    return replace(w, rope_factors_short=w.rope_factors_long, rope_factors_long=w.rope_factors_short)


# Each feature, taken out of the reference, moves the logits far beyond the tolerance of the comparison
# with llama.cpp: so that comparison vouches for it.
FEATURES = {
    "llama": {"rope_freqs": lambda w: replace(w, rope_freqs=None)},
    "mistral": {"own output head": lambda w: replace(w, wcls=w.token_embedding_table)},
    "qwen2": {"q/k/v biases": _layers(bq=None, bk=None, bv=None)},
    "qwen3": {"q/k norms": _layers(q_norm=None, k_norm=None)},
    "phi3": {
        "rope attn_factor": _config(rope_attn_factor=1.0),
        "LongRoPE short/long choice": _swap_longrope_factors,
    },
    "gemma2": {
        "sliding window": _config(sliding_window=0),
        "attention soft-cap": _config(attn_softcap=0.0),
        "final soft-cap": _config(final_softcap=0.0),
        "embedding scale": _config(embedding_scale=1.0),
        "query scale": _wide_query,
        "post-norms": _layers(post_att_norm=None, post_ffn_norm=None),
        "GeGLU": _config(activation="silu"),
    },
    "gemma3": {
        "sliding window": _config(sliding_window=0),
        "local rope base": lambda w: _config(rope_theta_swa=w.config.rope_theta)(w),
        "global rope scale": _config(rope_scale=1.0),
        "q/k norms": _layers(q_norm=None, k_norm=None),
    },
}


def test_tiny_features_reach_the_logits(tiny):
    head_rows = 4096  # logits compared per position: enough, and Gemma's 262k-row head is slow
    for feature, take_out in FEATURES[tiny.arch].items():
        weights = take_out(tiny.model.weights)
        weights = replace(weights, wcls=weights.wcls[:head_rows])
        without = ReferenceModel.from_weights(weights, tiny.n_ctx).forward(tiny.prompt_ids, 0)
        moved = np.abs(without - tiny.logits[:, :head_rows]).max()
        assert moved > 20 * tiny.atol, f"{tiny.arch}: without {feature} the logits move only {moved:.3g}"
