"""The model's two layouts of a layer agree: stacked weights (qkv, GLU gate_up: 11 dispatches) and
the fallback for weights of different types (separate products into the qkv rows; gate, up, glu_mul);
and its two kernel variants agree (the GPUs' one folds the RMSNorms into one token's products).
Each layer's dispatch sequence is built once at load, in the order the forward pass runs it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine import kernels as K
from engine.errors import ContextTooLong
from engine.gguf import open_gguf
from engine.kernel_ops import Capture
from engine.model import Model
from engine.upload import Rows, Separate, Uploader, Weight
from tests.gguf_files import write_gguf

STACKED = ["attn_norm", "qkv", "rope", "store_kv", "attention", "o", "ffn_norm", "gate_up", "down"]
SEPARATE = ["attn_norm", "q", "k", "v", "rope", "store_kv", "attention", "o",
            "ffn_norm", "gate", "up", "glu_mul", "down"]  # fmt: skip
# A prefill (more tokens than products.DOT4_FEW: GPUs' batch products), a step of a few tokens (their
# matvec_dot4_few, folding the norms in and rotating q | k | v), then a decode step.
STEPS = ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15])


def _load(engine, gguf, monkeypatch, separate: bool, variant: str = "scalar", dot4: bool | None = None,
          **options) -> Model:
    if separate:  # as if q, k, v (and gate, up) differed in type
        monkeypatch.setattr(Uploader, "stacked", Uploader.separate)
    model = Model.load(engine.model.device, gguf, n_ctx=64, max_batch=12, variant=variant, dot4=dot4, **options)
    monkeypatch.undo()
    return model


def _logits(loop, model: Model, steps=STEPS) -> np.ndarray:
    rows = []
    for tokens in steps:
        model.forward(tokens)
        rows.append(np.frombuffer(bytes(loop.run_until_complete(model.device.read_buffer(model.logits))), np.float32))
    return np.array(rows)


def _names(model: Model) -> list[list[str]]:
    return [[layer_op.name for layer_op in layer.ops] for layer in model.layers]


def test_fallback_layout_matches_the_stacked_one(engine, event_loop_session, model_gguf, monkeypatch):
    stacked_model = _load(engine, model_gguf, monkeypatch, separate=False)
    separate_model = _load(engine, model_gguf, monkeypatch, separate=True)
    assert all(isinstance(layer.wqkv, Weight) and isinstance(layer.w_gate_up, Weight) for layer in stacked_model.layers)
    for layer in separate_model.layers:
        assert isinstance(layer.wqkv, Separate) and isinstance(layer.w_gate_up, Separate)
        assert [len(layer.wqkv.parts), len(layer.w_gate_up.parts)] == [3, 2]
    assert _names(stacked_model) == [STACKED] * stacked_model.config.n_layers
    assert _names(separate_model) == [SEPARATE] * separate_model.config.n_layers
    stacked, separate = _logits(event_loop_session, stacked_model), _logits(event_loop_session, separate_model)
    assert np.abs(stacked - separate).max() <= 1e-4 * np.abs(stacked).max()


class _Replays(Capture):
    """A recorder that keeps what it is asked to record: dispatches, and plans as their dispatches."""

    def replay(self, plan):
        self.dispatches += plan.dispatches


@pytest.mark.parametrize("T", [1, 5])
def test_a_step_replays_the_dispatches_its_ops_record(engine, model_gguf, monkeypatch, T):
    """A step's layers are recorded from a plan captured once per number of tokens: the ops' own
    dispatches, in order, the same plan every step of that size."""
    model = _load(engine, model_gguf, monkeypatch, separate=False, variant="subgroup")
    direct = _Replays()
    model.kernels.set_step(0, T)
    for op in model.ops_embed:
        op.record(direct, T)
    for layer in model.layers:
        for layer_op in layer.ops:
            layer_op.op.record(direct, T)
    model.op_final_norm.record(direct, T)
    replayed = _Replays()
    model._record_layers(T, replayed)
    plan = model._plans[T]
    model._record_layers(T, _Replays())
    assert model._plans[T] is plan and list(model._plans) == [T]
    assert replayed.dispatches == direct.dispatches
    assert len({groups for _p, _b, groups in direct.dispatches}) > 1  # (grids that differ: not one repeated)


def test_separate_products_of_one_x_quantise_it_once(engine, model_gguf, monkeypatch):
    """On GPUs one token's q, k and v (and gate, up) each read x as integers: the first quantises it and the
    others take it from there (Kernels.matmul's reuse_x), a dispatch each fewer; o takes its x as integers
    from attention (x_quantised), down quantises its own."""
    model = _load(engine, model_gguf, monkeypatch, separate=True, variant="subgroup", dot4=True)
    ops = {layer_op.name: layer_op.op for layer_op in model.layers[0].ops}
    assert all(model.kernels.uses_dot4(w.type) for w in model.layers[0].wqkv.parts)
    assert [len(ops[name].decode) for name in ("q", "k", "v", "gate", "up", "o", "down")] == [2, 1, 1, 2, 1, 1, 2]
    assert len(ops["attention"].one_steps) == 2 and ops["attention"].one_steps != ops["attention"].steps


def test_stacked_gate_up_quantises_downs_x(engine, model_gguf, monkeypatch):
    """On GPUs one token's stacked gate_up also puts its outputs into down's integer x (Kernels.matmul's
    quantise_out), so down takes them (x_quantised): a dispatch a layer fewer. Logits: the test below."""
    model = _load(engine, model_gguf, monkeypatch, separate=False, variant="subgroup", dot4=True)
    ops = {layer_op.name: layer_op.op for layer_op in model.layers[0].ops}
    assert [len(ops[name].decode) for name in ("qkv", "o", "gate_up", "down")] == [2, 1, 2, 1]


@pytest.mark.parametrize("mix", ["Q4_K_M", "Q3_K_M", "Q2_K", "Q5_0"])
def test_integer_products_follow_the_scalar_ones_on_real_k_quant_files(engine, event_loop_session, requantised, mix):
    """llama.cpp's own mixes (Q4_K + Q6_K with Q5_0/Q8_0 where rows are short; Q3_K, Q2_K) through the GPUs'
    integer products of one token: logits as close to the f32 kernels' as the products of f32 x."""
    gguf = open_gguf(requantised(mix))
    device = engine.model.device
    scalar = _logits(event_loop_session, Model.load(device, gguf, n_ctx=64, max_batch=12, variant="scalar"))
    gpu = _logits(event_loop_session, Model.load(device, gguf, n_ctx=64, max_batch=12, variant="subgroup", dot4=True))
    assert np.abs(scalar - gpu).max() <= 1e-4 * np.abs(scalar).max()
    assert (scalar.argmax(axis=1) == gpu.argmax(axis=1)).all()


def test_gpu_variant_with_folded_norms_matches_the_scalar_one(engine, event_loop_session, model_gguf, monkeypatch):
    scalar = _logits(event_loop_session, _load(engine, model_gguf, monkeypatch, separate=False))
    # folded into qkv and gate_up, or into q, k, v, gate and up; products of f32 x, or of integer x (dot4)
    for separate, dot4 in itertools.product((False, True), (False, True)):
        model = _load(engine, model_gguf, monkeypatch, separate, "subgroup", dot4)
        assert model.kernels.tiles  # (lavapipe's 32 KB: integer types' prompts in matmul_tiled.wgsl)
        gpu = _logits(event_loop_session, model)
        assert np.abs(scalar - gpu).max() <= 1e-4 * np.abs(scalar).max(), f"separate={separate} dot4={dot4}"
        assert (scalar.argmax(axis=1) == gpu.argmax(axis=1)).all()


def test_f16_prompts_follow_the_scalar_logits_to_f16s_precision(engine, event_loop_session, model_gguf, monkeypatch):
    """Asked for (the adapter has shader-f16: lavapipe has), a prompt's products are f16 tiles: its logits (and
    the next steps', which read its KV cache) stay within 2e-2 of the largest (f16 keeps 11 bits; the default
    model, whose outlier channels make it a hard case, moves ~6e-3), and the greedy token is the scalar one's
    wherever the top two lie further apart than that."""
    scalar = _logits(event_loop_session, _load(engine, model_gguf, monkeypatch, separate=False))
    model = _load(engine, model_gguf, monkeypatch, separate=False, variant="subgroup", dot4=True, f16_prompts=True)
    assert model.kernels.tiles_module(model.config.dim) == "matmul_tiled_f16.wgsl"
    gpu = _logits(event_loop_session, model)
    error = np.abs(scalar - gpu).max()
    assert 0 < error <= 2e-2 * np.abs(scalar).max()  # (0: not f16 at all)
    top_two = np.sort(scalar, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 2 * error
    assert (scalar.argmax(axis=1) == gpu.argmax(axis=1))[clear].all()


def test_q8_prompts_follow_the_scalar_logits_to_8_bits(engine, event_loop_session, model_gguf, monkeypatch):
    """Asked for, a prompt's products are integer tiles on x rounded to a byte, a scale each half block: on
    text, its logits and the next steps' stay within 2e-2 of the largest (the default model moves ~1.2e-2 so;
    2.5e-2 with llama.cpp's q8_1, a scale a block; f16 prompts ~3.5e-3: its outlier channels leave a half block's
    other values few of the 8 bits), the greedy token the scalar one's where the top two lie further apart.
    (Special tokens' activations are harder still: STEPS' ids move its logits ~0.5 of the largest.)"""
    ids = engine.tokenizer.encode("The quick brown fox jumps over the lazy dog, and then it ran far into the woods")
    steps = (ids[:11], ids[11:14], ids[14:15])
    scalar = _logits(event_loop_session, _load(engine, model_gguf, monkeypatch, separate=False), steps)
    model = _load(engine, model_gguf, monkeypatch, separate=False, variant="subgroup", dot4=True, q8_prompts=True)
    assert model.kernels.tiles_module(model.config.dim) == "matmul_tiled_dot4.wgsl"
    gpu = _logits(event_loop_session, model, steps)
    error = np.abs(scalar - gpu).max()
    assert 0 < error <= 2e-2 * np.abs(scalar).max()  # (0: not the integer tiles at all)
    top_two = np.sort(scalar, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 2 * error
    assert (scalar.argmax(axis=1) == gpu.argmax(axis=1))[clear].all()


def _tiny_qwen2(path, n_layers=2, dim=128, ffn_dim=256, n_heads=4, n_kv_heads=2, n_vocab=96, v_f16=False):
    """A Qwen2 GGUF (q, k and v biases, NeoX RoPE, tied head) of random f32 weights (v in f16 with v_f16)."""
    rng = np.random.default_rng(0)
    q_dim, kv_dim = dim, dim // n_heads * n_kv_heads
    meta = {"qwen2.block_count": n_layers, "qwen2.context_length": 64, "qwen2.embedding_length": dim,
            "qwen2.feed_forward_length": ffn_dim, "qwen2.attention.head_count": n_heads,
            "qwen2.attention.head_count_kv": n_kv_heads, "qwen2.attention.layer_norm_rms_epsilon": 1e-6,
            "qwen2.rope.freq_base": 10000.0, "tokenizer.ggml.tokens": [f"t{i}" for i in range(n_vocab)]}  # fmt: skip

    def f32(*shape, mean=0.0, std=0.05):
        return rng.normal(mean, std, shape).astype(np.float32), 0

    def f16(*shape):
        return rng.normal(0.0, 0.05, shape).astype(np.float16), 1

    tensors = {"token_embd.weight": f32(n_vocab, dim, std=1.0), "output_norm.weight": f32(dim, mean=1.0)}
    for i in range(n_layers):
        p = f"blk.{i}."
        tensors |= {p + "attn_norm.weight": f32(dim, mean=1.0), p + "ffn_norm.weight": f32(dim, mean=1.0),
                    p + "attn_q.weight": f32(q_dim, dim), p + "attn_k.weight": f32(kv_dim, dim),
                    p + "attn_v.weight": f16(kv_dim, dim) if v_f16 else f32(kv_dim, dim),
                    p + "attn_q.bias": f32(q_dim, std=0.5),
                    p + "attn_k.bias": f32(kv_dim, std=0.5), p + "attn_v.bias": f32(kv_dim, std=0.5),
                    p + "attn_output.weight": f32(dim, q_dim), p + "ffn_gate.weight": f32(ffn_dim, dim),
                    p + "ffn_up.weight": f32(ffn_dim, dim), p + "ffn_down.weight": f32(dim, ffn_dim)}  # fmt: skip
    return write_gguf(path, "qwen2", meta, tensors)


@pytest.mark.parametrize("separate", [False, True], ids=["stacked", "separate"])
def test_qwen2_biases_follow_the_qkv_products_and_match_the_reference(
    engine, event_loop_session, monkeypatch, tmp_path, separate
):
    from tests.reference import ReferenceModel

    path = _tiny_qwen2(tmp_path / "qwen2.gguf")
    model = _load(engine, open_gguf(path), monkeypatch, separate)
    names = SEPARATE if separate else STACKED
    after = names.index("v" if separate else "qkv") + 1
    assert _names(model) == [[*names[:after], "qkv_bias", *names[after:]]] * model.config.n_layers
    reference = ReferenceModel(path)
    expected = np.array([reference.forward(t, reference.n_past)[-1] for t in STEPS])
    ours = _logits(event_loop_session, model)
    assert np.abs(ours - expected).max() <= 1e-4 * np.abs(expected).max()


def test_q_and_k_of_one_type_stay_one_product_when_v_differs(engine, event_loop_session, monkeypatch, tmp_path):
    """Q4_K_M files keep v in Q6_K in some layers (q and k in Q4_K): q and k stay stacked, one product, and v
    takes its own, as memory.py plans the buffers; the logits still follow the float64 reference."""
    from engine.config import ModelConfig
    from engine.memory import model_buffers
    from tests.reference import ReferenceModel

    path = _tiny_qwen2(tmp_path / "qwen2.gguf", v_f16=True)
    model = _load(engine, open_gguf(path), monkeypatch, separate=False)
    c = model.config
    for layer in model.layers:
        assert isinstance(layer.wqkv, Separate) and layer.wqkv.rows == (c.q_dim + c.kv_dim, c.kv_dim)
        assert [w.type for w in layer.wqkv.parts] == [0, 1]
    names = ["attn_norm", "qk", "v", "qkv_bias", *STACKED[STACKED.index("rope"):]]
    assert _names(model) == [names] * c.n_layers
    gguf = open_gguf(path)
    planned = [label for _, label, _ in model_buffers(ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors)),
                                                       gguf.tensors, 64, 12)]
    assert {"blk.0.attn_q.weight stacked", "blk.0.attn_v.weight"} <= set(planned)
    reference = ReferenceModel(path)
    expected = np.array([reference.forward(t, reference.n_past)[-1] for t in STEPS])
    ours = _logits(event_loop_session, model)
    assert np.abs(ours - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("extra", ["blk.0.attn_output.bias", "blk.1.attn_q.weight", "v.blk.0.attn_q.weight"])
def test_a_tensor_the_block_would_not_read_is_refused_before_upload(engine, tmp_path, extra):
    """Running without it would answer, and wrongly; the refusal comes before any buffer is made."""
    from engine.errors import UnsupportedModel

    dim, n_vocab = 32, 8
    meta = {"llama.block_count": 1, "llama.embedding_length": dim, "llama.feed_forward_length": dim,
            "llama.attention.head_count": 2, "llama.context_length": 64, "llama.attention.layer_norm_rms_epsilon": 1e-5,
            "tokenizer.ggml.model": "llama"}  # fmt: skip
    vector, matrix = np.ones(dim, np.float32), np.zeros((dim, dim), np.float32)
    tensors = {"token_embd.weight": (np.zeros((n_vocab, dim), np.float32), 0), "output_norm.weight": (vector, 0)}
    for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        tensors[f"blk.0.{name}.weight"] = (matrix, 0)
    tensors.update({"blk.0.attn_norm.weight": (vector, 0), "blk.0.ffn_norm.weight": (vector, 0), extra: (vector, 0)})
    gguf = open_gguf(write_gguf(tmp_path / "extra.gguf", "llama", meta, tensors))
    device = engine.model.device
    made = []
    real = device.create_buffer
    device.create_buffer = lambda *a, **k: made.append(a) or real(*a, **k)
    try:
        with pytest.raises(UnsupportedModel, match=f"tensor {extra} is not part of the llama block"):
            Model.load(device, gguf, n_ctx=64, max_batch=4)
    finally:
        del device.create_buffer
    assert made == []


def test_embedding_and_head_split_past_a_binding_give_the_same_logits(engine, event_loop_session, model_gguf,
                                                                        monkeypatch):
    """On a GPU whose binding is smaller than the vocabulary's table (a 128k x 4096 embedding elsewhere), the
    table is uploaded as row ranges; lookups and the head run per range, and nothing else changes."""
    import dataclasses

    whole = _logits(event_loop_session, _load(engine, model_gguf, monkeypatch, separate=False))
    device = engine.model.device
    info = device.info
    table = model_gguf.tensors["token_embd.weight"].nbytes  # 28.7 MiB of Q8_0
    monkeypatch.setattr(device, "info", dataclasses.replace(info, max_storage_binding=table // 3 - 1))  # 4 parts
    split = Model.load(device, model_gguf, n_ctx=64, max_batch=12, variant="scalar")
    monkeypatch.undo()
    assert isinstance(split.token_embd, Rows) and len(split.token_embd.parts) == 4 and split.output is split.token_embd
    assert sum(n for _, _, n in split.token_embd.parts) == split.config.vocab_size
    np.testing.assert_array_equal(_logits(event_loop_session, split), whole)


@pytest.mark.parametrize("variant, dot4", [("scalar", None), ("subgroup", None), ("subgroup", True)])
def test_sequences_stepped_together_match_each_run_alone(engine, event_loop_session, model_gguf, variant, dot4):
    """Streams decoding together (forward_rows): two prompts prefilled in one step into sequences 2 and 1,
    then steps of a token of each, and a last step of one (the GPUs' one-token attention). Each sequence's
    last row of a step is sampled: its logits are those of the sequence run alone through `forward`, and
    row_tokens holds each sampled row's argmax."""
    device, read = engine.model.device, lambda buffer, n: np.frombuffer(
        bytes(event_loop_session.run_until_complete(device.read_buffer(buffer, 0, n * 4))), np.float32)
    prompts, n_steps = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 5, 4, 3, 2, 1]], 3
    alone = Model.load(device, model_gguf, n_ctx=64, max_batch=16, variant=variant, dot4=dot4)
    vocab = alone.config.vocab_size
    fed, want = [], []  # per prompt: the tokens fed after it (its greedy answer), and the logits of each step
    for prompt in prompts:
        alone.rewind(0)
        alone.forward(prompt)
        rows = [read(alone.logits, vocab)]
        for _ in range(n_steps):
            alone.forward([int(rows[-1].argmax())])
            rows.append(read(alone.logits, vocab))
        fed.append([int(row.argmax()) for row in rows[:-1]])
        want.append(np.array(rows))

    together = Model.load(device, model_gguf, n_ctx=64, max_batch=16, variant=variant, n_seqs=3, dot4=dot4)
    seqs = [2, 1]
    steps = [[(2, t) for t in prompts[0]] + [(1, t) for t in prompts[1]]]  # both prompts in one step
    steps += [[(2, fed[0][i]), (1, fed[1][i])] for i in range(n_steps - 1)] + [[(1, fed[1][-1])]]
    got: list[list[np.ndarray]] = [[], []]
    for rows in steps:
        lasts = {s: i for i, (s, _) in enumerate(rows)}  # each sequence's last row of the step
        sampled = [k for k, seq in enumerate(seqs) if seq in lasts]
        together.forward_rows(rows, [lasts[seqs[k]] for k in sampled])
        logits = read(together.row_logits, len(sampled) * vocab).reshape(len(sampled), vocab)
        tokens = np.frombuffer(bytes(event_loop_session.run_until_complete(
            device.read_buffer(together.row_tokens, 0, len(sampled) * 4))), np.uint32)  # fmt: skip
        assert (tokens == logits.argmax(axis=1)).all(), "row_tokens is not each sampled row's argmax"
        for j, k in enumerate(sampled):
            got[k].append(logits[j])
    assert together.past == [0, len(prompts[1]) + n_steps, len(prompts[0]) + n_steps - 1]
    for k in range(2):
        g, w = np.array(got[k]), want[k][: len(got[k])]
        assert np.abs(g - w).max() <= 1e-4 * np.abs(w).max(), f"sequence {seqs[k]}"


def test_forward_rows_refuses_what_a_step_cannot_hold(engine, model_gguf):
    device = engine.model.device
    with pytest.raises(ValueError, match="n_seqs > 1"):
        Model.load(device, model_gguf, n_ctx=16, max_batch=4).forward_rows([(0, 1)], [0])
    model = Model.load(device, model_gguf, n_ctx=16, max_batch=4, n_seqs=2)
    with pytest.raises(ValueError, match="1..4 tokens"):
        model.forward_rows([(0, 1)] * 5, [4])
    with pytest.raises(ValueError, match="sequence 2"):
        model.forward_rows([(2, 1)], [0])
    with pytest.raises(ValueError, match="not all among"):
        model.forward_rows([(0, 1), (1, 1)], [2])
    model.past[1] = 16
    with pytest.raises(ContextTooLong):
        model.forward_rows([(0, 1), (1, 1)], [1])
    assert model.past == [0, 16], "a refused step changed the sequences"


@pytest.mark.parametrize("variant", ["scalar", "subgroup"])
def test_a_prompts_steps_hold_the_variants_tokens_unless_told(engine, model_gguf, variant):
    """GPUs run prompts in steps of 256 tokens (their attention needs no scores buffer that grows with it),
    CPU adapters in steps of 64; a caller's max_batch wins."""
    device = engine.model.device
    assert Model.load(device, model_gguf, n_ctx=64, variant=variant).max_batch == K.STEP_TOKENS[variant]
    assert Model.load(device, model_gguf, n_ctx=64, variant=variant, max_batch=5).max_batch == 5
