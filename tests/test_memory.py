"""Memory fit: the plan of what a model needs, reckoned before any upload, agrees with the tensor table,
the formulas and what the device really allocates; a model that cannot fit is refused in one line,
before anything reaches the GPU."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from engine.config import ModelConfig
from engine.errors import InvalidRequest, UnsupportedModel
from engine.gguf import open_gguf
from engine.gpu import STORAGE, TEXEL_BYTES, TEXELS_A_ROW, AdapterInfo, texel_rows
from engine.memory import format_bytes, model_buffers, parse_size, plan_memory, row_ranges
from engine.model import Model
from engine.products import DOT4_FEW, dot4_x_nbytes, tiles_fit
from engine.weight_types import TEXEL_GAPS, texel_layout_bytes
from tests.test_cli import _error_of

ROOMY = AdapterInfo("test", "stand-in", False, frozenset(), max_storage_binding=1 << 40, max_buffer_size=1 << 40)
# The plan counts every buffer Model.load makes; this much slack is room for a small constant (a uniform,
# a RoPE table: a few KiB) added to the kernels without changing any fit. Anything that grows with the
# model, the context or the batch is far larger.
TOLERANCE = 4096


class _NoUploads:
    """A stand-in device: a model it is given must be refused before it asks for any buffer."""

    def __init__(self, info: AdapterInfo):
        self.info = info

    def create_buffer(self, size, role="storage", label=""):
        raise AssertionError(f"buffer {label!r} ({size} bytes) was created before the model was refused")


def _config(gguf) -> ModelConfig:
    return ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors))


def test_the_default_models_plan_adds_up(model_gguf):
    """The sums again, from the tensor table and the formulas (SmolLM2-135M: tied head, every tensor used)."""
    t, n_ctx, T = model_gguf.tensors, 2048, 64
    n_layers, n_heads = model_gguf.metadata["llama.block_count"], model_gguf.metadata["llama.attention.head_count"]
    dim, vocab = t["token_embd.weight"].shape
    q_dim, kv_dim, ffn_dim = t["blk.0.attn_q.weight"].shape[1], t["blk.0.attn_k.weight"].shape[1], \
        t["blk.0.ffn_gate.weight"].shape[1]  # fmt: skip
    assert all(info.nbytes % 16 == 0 for info in t.values())  # so no padded copies
    weights = sum(info.nbytes for info in t.values())
    kv_cache = n_layers * 2 * n_ctx * kv_dim * 4
    activations = (
        T * 4 + 2 * T * dim * 4 + T * (q_dim + 2 * kv_dim) * 4 + T * q_dim * 4 + T * ffn_dim * 4  # ids .. hb
        + dim * 4 + vocab * 4 + 4 + 16 * 4  # x_last, logits, token_out, tokens_ahead (16 ring steps)
        + 16 + 8 * 64 + 16 * 16  # step params (and its table of 64 places), the step ring
        + 256 * 8 + n_ctx * 8 + 16  # argmax partials, penalty entries and settings
        + 2 * (64 // 2) * 4  # RoPE's inverse frequencies and ones (no rope_freqs), of rope_dim // 2
    )  # fmt: skip
    scores = T * n_heads * n_ctx * 4  # attention scores: CPU adapters' (GPUs' attention keeps them in workgroups)
    gpu = dict(variant="subgroup", dot4=False)  # weights in buffers as the file holds them
    plan = plan_memory(_config(model_gguf), t, n_ctx, T, **gpu)
    attention_partials = plan.activations - activations  # (the GPU's attention: its own test below)
    assert (plan.weights, plan.kv_cache) == (weights, kv_cache) and attention_partials > 0
    assert plan.total == weights + kv_cache + activations + attention_partials
    assert (plan.largest_name, plan.largest) == ("token_embd.weight", t["token_embd.weight"].nbytes)
    assert plan_memory(_config(model_gguf), t, n_ctx, T, kv_f16=True, **gpu).kv_cache == kv_cache // 2
    # CPU adapters: the matrices in texels of whole 64 KiB rows (each rounded up by less than one), the rest alike
    cpu = plan_memory(_config(model_gguf), t, n_ctx, T)
    n_matrices = 1 + n_layers * 4  # the embedding (the head too), and a layer's qkv, o, gate_up and down
    assert 0 < cpu.weights - weights < n_matrices * TEXELS_A_ROW * TEXEL_BYTES
    assert (cpu.kv_cache, cpu.activations) == (kv_cache, activations + scores)


def test_a_stacked_buffer_is_one_binding_unless_its_types_differ(model_gguf):
    """Gate and up share a buffer (one binding of both) unless their types differ; then the model also
    needs hb2, the up product's own activations."""
    config, mib = _config(model_gguf), 1 << 20
    big = {name: dataclasses.replace(info, nbytes=64 * mib) for name, info in model_gguf.tensors.items()
           if name.endswith(("ffn_gate.weight", "ffn_up.weight"))}  # fmt: skip
    stacked = plan_memory(config, {**model_gguf.tensors, **big}, 256, 64)
    assert (stacked.largest_name, stacked.largest) == ("blk.0.ffn_gate.weight stacked", 128 * mib)
    mixed = {name: dataclasses.replace(info, type=8) if "up" in name else info for name, info in big.items()}
    separate = plan_memory(config, {**model_gguf.tensors, **mixed}, 256, 64)
    assert (separate.largest_name, separate.largest) == ("blk.0.ffn_gate.weight", 64 * mib)
    assert separate.weights == stacked.weights
    assert separate.activations - stacked.activations == 64 * config.ffn_dim * 4  # hb2


def test_a_model_over_the_budget_is_refused_before_any_upload(model_gguf):
    plan = plan_memory(_config(model_gguf), model_gguf.tensors, 2048, 64)
    with pytest.raises(UnsupportedModel) as refused:
        Model.load(_NoUploads(ROOMY), model_gguf, n_ctx=2048, memory_budget=1 << 20)
    message = str(refused.value)
    assert "\n" not in message
    assert f"needs {format_bytes(plan.total)} " in message and "more than the 1.0 MiB budget" in message
    assert "of KV cache for 2048 tokens" in message
    plan.check(ROOMY, budget=plan.total)  # exactly the budget fits
    with pytest.raises(UnsupportedModel, match="of KV cache for 4 sequences of 2048 tokens"):
        Model.load(_NoUploads(ROOMY), model_gguf, n_ctx=2048, memory_budget=plan.total, n_seqs=4)


@pytest.mark.parametrize("limit, size, name, needs", [
    ("max_buffer_size", 16 << 20, "token_embd.weight", "28.7 MiB"),  # a table is one buffer, bound or not
    ("max_storage_binding", 1 << 20, "blk.0.ffn_gate.weight stacked", "1.1 MiB"),  # only vocab tables split
])  # fmt: skip
def test_a_buffer_over_the_adapters_limits_is_refused_before_any_upload(model_gguf, limit, size, name, needs):
    small = dataclasses.replace(ROOMY, **{limit: size})
    with pytest.raises(UnsupportedModel) as refused:
        Model.load(_NoUploads(small), model_gguf, n_ctx=256)
    message = str(refused.value)
    assert name in message and needs in message and f"({format_bytes(size)})" in message
    assert ("binding" if limit == "max_storage_binding" else "buffer") in message


def test_a_vocabulary_table_past_a_binding_is_planned_in_row_ranges(model_gguf):
    """The embedding (28.7 MiB) on a 16 MiB binding: two ranges of whole 16-row groups, nothing refused."""
    table = model_gguf.tensors["token_embd.weight"]
    row_bytes = table.nbytes // table.shape[1]
    assert row_ranges(table.shape[1], row_bytes, 16 << 20) == [(0, 27408), (27408, 21744)]
    gpu = dict(variant="subgroup")  # buffers, as the file holds them (texels would round each part up to a row)
    plan = plan_memory(_config(model_gguf), model_gguf.tensors, 256, 64, max_binding=16 << 20, **gpu)
    whole = plan_memory(_config(model_gguf), model_gguf.tensors, 256, 64, **gpu)
    assert plan.largest <= 16 << 20 and plan.weights == whole.weights  # same bytes, in parts
    assert plan.largest_name.startswith("token_embd.weight rows ")
    with pytest.raises(UnsupportedModel, match="16 times"):
        row_ranges(100, 1000, 15_999)


def _load_counting(device, gguf, monkeypatch, texel_sizes: dict | None = None, **load) -> list[tuple[str, int]]:
    """Model.load of `gguf` on the real device, and the (label, bytes) of every buffer and texels it creates
    (reads' staging buffers are made apart, by the backend itself; a matrix's on its way to texels is freed at
    once). texel_sizes: filled with the bytes each texels were asked to hold, by label."""
    made, texel_sizes = [], {} if texel_sizes is None else texel_sizes
    create, create_texels = device.create_buffer, device.create_texels

    def counted(size, role=STORAGE, label=""):
        buffer = create(size, role, label)
        if not label.endswith("(staging)"):
            made.append((label, buffer.size))
        return buffer

    def counted_texels(size, label=""):
        texels = create_texels(size, label)
        made.append((label, texel_rows(size) * TEXELS_A_ROW * TEXEL_BYTES))
        texel_sizes[label] = size
        return texels

    monkeypatch.setattr(device, "create_buffer", counted)
    monkeypatch.setattr(device, "create_texels", counted_texels)
    Model.load(device, gguf, **load)
    monkeypatch.undo()
    return made


def _check_plan(made: list[tuple[str, int]], gguf, n_ctx: int, max_batch: int, **kw) -> None:
    """What the device allocated (_load_counting) against plan_memory and model_buffers of the same load."""
    plan = plan_memory(_config(gguf), gguf.tensors, n_ctx, max_batch, **kw)
    planned = Counter((label, n) for _, label, n in model_buffers(_config(gguf), gguf.tensors, n_ctx, max_batch, **kw))
    diff = f"made, not planned: {Counter(made) - planned}; planned, not made: {planned - Counter(made)}"
    assert abs(sum(n for _, n in made) - plan.total) <= TOLERANCE, diff
    assert max(n for _, n in made) == plan.largest


@pytest.mark.parametrize("variant, dot4, n_seqs, q8", [("scalar", False, 1, False), ("subgroup", False, 1, False),
                                                       ("subgroup", True, 1, False), ("scalar", False, 3, False),
                                                       ("subgroup", True, 1, True)])
def test_the_plan_matches_what_the_device_allocates(engine, model_gguf, monkeypatch, variant, dot4, n_seqs, q8):
    """Load the default model again on the real device, counting the buffers it creates; the GPU variant adds
    attention's partial sums, with dot4 the integer x of one token's products, with q8 prompts the batches' x
    as bytes, and several sequences their caches and every row's logits; the scalar variant's matrices are
    texels (whole rows of them)."""
    n_ctx, max_batch = engine.model.n_ctx, engine.model.max_batch  # the fixture's: its pipelines are compiled
    kw = dict(variant=variant, dot4=dot4, n_seqs=n_seqs, q8_prompts=q8)
    made = _load_counting(engine.model.device, model_gguf, monkeypatch, n_ctx=n_ctx, max_batch=max_batch, **kw)
    assert ("attention partials" in dict(made)) == (variant == "subgroup")
    assert ("dot4 x q" in dict(made)) == dot4
    assert ("tile x q" in dict(made)) == q8
    tiles = tiles_fit(engine.model.device.info, variant)  # (lavapipe's subgroup variant: prompts in tiles)
    assert tiles == (variant == "subgroup")
    if dot4:  # batches in tiles read f32 x: the integer x holds a few tokens, not max_batch
        width = _config(model_gguf).dim
        assert ("dot4 x q", dot4_x_nbytes(width)[0] * DOT4_FEW) in made
    kw["tiles"] = tiles
    assert ("row_tokens" in dict(made)) == (n_seqs > 1)
    texel_row = TEXELS_A_ROW * TEXEL_BYTES
    downs = [n for label, n in made if label.endswith("ffn_down.weight")]
    assert downs and all((n % texel_row == 0) == (variant == "scalar") for n in downs)
    plan = plan_memory(_config(model_gguf), model_gguf.tensors, n_ctx, max_batch, **kw)
    assert plan.kv_cache == n_seqs * plan_memory(_config(model_gguf), model_gguf.tensors, n_ctx, max_batch).kv_cache
    _check_plan(made, model_gguf, n_ctx, max_batch, **kw)


@pytest.mark.parametrize("mix", ["Q4_K_M", "Q2_K"])
def test_the_plan_counts_padded_texels(engine, requantised, monkeypatch, mix):
    """CPU adapters hold Q6_K's, Q3_K's and Q5_0's matrices in texels with a gap in every block
    (texel_layout_bytes): the plan counts them as the uploader makes them, in llama.cpp's K-quant mixes of the
    default model (Q6_K and Q3_K ffn_down, Q5_0 where rows are not whole superblocks)."""
    gguf = open_gguf(requantised(mix))
    padded = [t for t in gguf.tensors.values() if t.type in TEXEL_GAPS and len(t.shape) == 2]
    assert padded
    assert all(texel_layout_bytes(t.type, t.nbytes) > t.nbytes for t in padded)
    n_ctx, max_batch, sizes = engine.model.n_ctx, engine.model.max_batch, {}
    made = _load_counting(engine.model.device, gguf, monkeypatch, sizes, n_ctx=n_ctx, max_batch=max_batch,
                          variant="scalar")
    matrices = [t for t in gguf.tensors.values() if len(t.shape) == 2]  # each in texels once (stacked or alone)
    assert sum(sizes.values()) == sum(texel_layout_bytes(t.type, t.nbytes) for t in matrices)
    _check_plan(made, gguf, n_ctx, max_batch, variant="scalar")


@pytest.mark.parametrize(("text", "n"), [("6GiB", 6 << 30), ("512 MiB", 512 << 20), ("1.5G", 3 << 29),
                                         ("4096", 4096), ("2GB", 2 * 10**9), ("64k", 64 << 10)])  # fmt: skip
def test_sizes_as_people_write_them(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["abc", "-1GiB", "0", "", "6 GiBs", "1.2.3M"])
def test_a_bad_size_is_refused(text):
    with pytest.raises(InvalidRequest, match="not a positive size"):
        parse_size(text)


def test_the_cli_refuses_a_model_over_its_budget_in_one_line():
    err = _error_of("generate", "--memory-budget", "1MiB", "hi")
    assert err.count("error:") == 1
    line = err.splitlines()[-1]
    assert line.startswith("error: this model needs ") and line.endswith("more than the 1.0 MiB budget")


@pytest.mark.parametrize("text", ["abc", "-1GiB"])
def test_the_cli_refuses_a_bad_budget_in_one_line(text):
    err = _error_of("generate", f"--memory-budget={text}", "hi")
    assert err == f"error: memory budget {text!r} is not a positive size such as 6GiB or 512MiB"
