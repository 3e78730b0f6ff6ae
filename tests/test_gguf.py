"""The GGUF reader against the `gguf` package's reader, and its errors on bad files."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from engine.errors import ModelFileError
from engine.gguf import BytesSource, open_gguf, parse_gguf
from tests.gguf_files import write_gguf


def test_tensor_table_and_metadata_match_the_reference_reader(model_path, model_gguf):
    ref = gguf.GGUFReader(model_path)
    assert len(model_gguf.tensors) == len(ref.tensors)
    for t in ref.tensors:
        ours = model_gguf.tensors[t.name]
        assert ours.shape == tuple(int(d) for d in t.shape)
        assert ours.type == int(t.tensor_type)
        assert ours.offset == t.data_offset
        assert ours.nbytes == t.n_bytes
        assert bytes(model_gguf.view(t.name)[:64]) == t.data.tobytes()[:64]
    for key in ("general.architecture", "llama.block_count", "llama.rope.freq_base", "tokenizer.ggml.merges"):
        assert model_gguf.metadata[key] == ref.fields[key].contents()


def test_tensor_views_do_not_copy(model_gguf):
    view = model_gguf.view("token_embd.weight")
    assert isinstance(view, memoryview) and view.readonly
    assert len(view) == model_gguf.tensors["token_embd.weight"].nbytes


def test_small_written_file_round_trips(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = write_gguf(tmp_path / "t.gguf", "llama", {"x.answer": 42, "x.name": "héllo"}, {"w": (data, 0)})
    g = open_gguf(path)
    assert g.metadata["x.answer"] == 42 and g.metadata["x.name"] == "héllo"
    assert g.tensors["w"].shape == (4, 3)
    assert np.frombuffer(g.view("w"), dtype=np.float32).tolist() == data.ravel().tolist()


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        open_gguf(tmp_path / "nope.gguf")


def test_empty_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ModelFileError):
        open_gguf(tmp_path / "empty.gguf")


def test_not_gguf(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ModelFileError, match="not a GGUF"):
        open_gguf(tmp_path / "x.gguf")


def test_directory(tmp_path):
    with pytest.raises(ModelFileError):
        open_gguf(tmp_path)


@pytest.mark.parametrize("keep", [10, 1000, 1_000_000, 50_000_000])
def test_truncated_file(model_path, keep):
    with open(model_path, "rb") as f:
        head = f.read(keep)
    with pytest.raises(ModelFileError, match="truncated"):
        parse_gguf(BytesSource(head))


@pytest.mark.parametrize("qtype, block_bytes", [(14, 210), (12, 144), (11, 110)])  # Q6_K, Q4_K, Q3_K
def test_truncated_k_quant_tensor_is_named(tmp_path, qtype, block_bytes):
    """A download cut short inside a K-quant tensor's superblocks: the tensor is named, nothing is read past."""
    blocks = np.random.default_rng(0).integers(0, 256, (4, 2 * block_bytes), dtype=np.uint8)  # 4 rows of 512
    path = write_gguf(tmp_path / "k.gguf", "llama", {}, {"blk.0.ffn_down.weight": (blocks, qtype)})
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - block_bytes // 2])
    with pytest.raises(ModelFileError, match="truncated: tensor blk.0.ffn_down.weight"):
        open_gguf(path)
