"""Every architecture Hearth runs, end to end on a tiny random-weight file of that family (tests/arch_models.py):
its real tokenizer and chat template make the prompt, and the engine's logits and greedy tokens follow the
float64 reference (tests/reference.py, itself held to llama.cpp by tests/test_reference.py), in both kernel
variants (the GPUs' one folds the norms into one token's products). The prompt is longer than the sliding
windows, so the local layers' masks and RoPE bases matter."""

from __future__ import annotations

import numpy as np
import pytest

from engine.engine import Engine
from engine.gguf import open_gguf
from engine.sampler import SamplingOptions
from tests.arch_models import ARCHS, write_tiny_model
from tests.greedy_cases import compare_greedy

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the three primary colours, then count to five in French, please."},
]
STEPS = 16
N_CTX = 96  # below Phi 3's original context (4096): its short LongRoPE factors


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    folder, made = tmp_path_factory.mktemp("architectures"), {}

    def get(arch: str):
        if arch not in made:
            made[arch] = write_tiny_model(folder / f"{arch}.gguf", arch)
        return made[arch]

    return get


def _run(loop, agen) -> list[int]:
    async def collect():
        return [chunk.token_id async for chunk in agen if chunk.token_id is not None]

    return loop.run_until_complete(collect())


# The GPU variant for the families whose extra ops meet its folded norms and row-wise RMSNorm (llama's
# block alone is held to the scalar variant by tests/test_model.py).
CASES = [(arch, "scalar") for arch in ARCHS] + [(arch, "subgroup") for arch in ("qwen3", "phi3", "gemma2", "gemma3")]


@pytest.mark.parametrize("arch, variant", CASES, ids=[f"{a}-{v}" for a, v in CASES])
def test_architecture_follows_the_reference(engine, event_loop_session, tiny_models, arch, variant):
    check_against_reference(engine, event_loop_session, tiny_models(arch), arch, variant, N_CTX)


def test_phi3_past_its_original_context_uses_the_long_factors(engine, event_loop_session, tiny_models):
    check_against_reference(engine, event_loop_session, tiny_models("phi3"), "phi3", "scalar", 4100)


def check_against_reference(engine, event_loop_session, path, arch: str, variant: str, n_ctx: int) -> None:
    from tests.reference import ReferenceModel

    ours_engine = event_loop_session.run_until_complete(
        Engine.load(gguf=open_gguf(path), device=engine.model.device, n_ctx=n_ctx, max_batch=16, variant=variant)
    )
    ids = ours_engine.chat_prompt(MESSAGES)
    reference = ReferenceModel(str(path), n_ctx=n_ctx)  # the context picks Phi 3's LongRoPE factors
    assert len(ids) > 16, "the prompt must be longer than the sliding windows (8) and than one batch"

    ours = np.array(event_loop_session.run_until_complete(ours_engine.logits_all(ids)), dtype=np.float64)
    reference.reset()
    expected = reference.forward(ids, 0)
    errors = np.abs(ours - expected).max(axis=1) / np.abs(expected).max(axis=1)
    assert errors.max() < 1e-3, f"{arch}: position {errors.argmax()} has relative error {errors.max():.2e}"

    want, gaps = reference.greedy(ids, STEPS)
    got = _run(event_loop_session, ours_engine.generate(ids, SamplingOptions(temperature=0.0, max_tokens=STEPS)))
    eog = ours_engine.tokenizer.eog_ids
    answer = got[:-1] if got and got[-1] in eog else got  # the engine stops at end of generation; the reference not
    assert compare_greedy(want, gaps, answer, stop_ids=eog) is None
