"""Pre-tokenizers of byte-level BPE: cut text into words before merges, as llama.cpp and Hugging Face do.

The regexes in GGUF-era tokenizers use Unicode classes (`\\p{L}`, `\\p{N}`) that Python's `re` lacks, and a
per-character Python scanner is slow. Instead each character is first mapped to an ASCII stand-in of its
class (letters to "a", numbers to "0", other whitespace to "\\v", anything else to "!"; ASCII stays itself)
with one `str.translate`, then an ASCII-only rewrite of the model's regex runs on that string in the C regex
engine. Both strings have the same length, so each match's span cuts the original text.
Regexes: llama.cpp `src/llama-vocab.cpp` (`llm_tokenizer_bpe`), Hugging Face `tokenizer.json` files.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import UnsupportedModel


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map: byte-level BPE vocabularies are written in these characters."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:  # control bytes, space, DEL, NBSP, soft hyphen: shifted past Latin-1 so they stay printable
            table[b] = chr(256 + extra)
            extra += 1
    return table


class _ClassMap(dict):
    """`str.translate` table from a character to its ASCII stand-in, filled on first sight of each character."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if code < 128:
            out = ch  # the rewritten regexes spell out ASCII classes themselves
        else:
            major = unicodedata.category(ch)
            # White_Space (what Oniguruma and llama.cpp call \s) beyond ASCII: NEL plus the Z* categories
            if ch == "\x85" or major in ("Zs", "Zl", "Zp"):
                out = "\v"
            elif major[0] == "L":
                out = "a"  # never a contraction letter (s t re ve m ll d), so "'ŝ" is not "'s"
            elif major[0] == "N":
                out = "0"
            else:  # marks (Mn, Mc: Hindi vowel signs), ZWJ, emoji, punctuation, symbols
                out = "!"
        self[code] = out
        return out


_CLASSES = _ClassMap()

# ASCII rewrites, compiled with re.ASCII so \s is exactly [ \t\n\v\f\r] (Python's Unicode \s would add
# \x1c-\x1f, which are not White_Space). L = [A-Za-z], N = [0-9], other = [^\sA-Za-z0-9].

# GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
_GPT2 = r"'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"

# StarCoder / SmolLM: first every \p{N} alone (HF `Digits(individual_digits=True)`), then GPT-2 inside each
# piece between digits. In one pass that means: a digit is a word, no " ?" before digits, and a whitespace
# run just before a digit ends its piece, so it is kept whole as at a string's end (the lookahead admits 0-9).
_GPT2_DIGITS = r"[0-9]|'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+(?![^\s0-9])|\s+"

# Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
#          \s*[\r\n]+|\s+(?!\S)|\s+          (Qwen2: \p{N} one at a time)
_LLAMA3 = (
    r"'(?i:s|t|re|ve|m|ll|d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}"
    r"| ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = _LLAMA3.replace("[0-9]{1,3}", "[0-9]")

# tokenizer.ggml.pre -> (regex, ignore_merges). The names and groups are llama.cpp's; ignore_merges (a word
# that is itself a token is taken whole, HF "ignore_merges": true) is set where llama.cpp sets it.
_PRE_GROUPS: list[tuple[tuple[str, ...], str, bool]] = [
    (("default", "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4",
      "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "jina-v1-en", "jina-v2-code", "roberta-bpe",
      "gigachat", "a.x-4.0", "mellum", "modern-bert"), _GPT2, False),
    (("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"), _GPT2_DIGITS, False),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"), _LLAMA3, True),
    (("dbrx", "smaug-bpe", "chatglm-bpe", "glm4"), _LLAMA3, False),
    (("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "kormo", "f2llmv2", "hunyuan"), _QWEN2, False),
]
_PRE_TYPES = {name: (regex, ignore) for names, regex, ignore in _PRE_GROUPS for name in names}


class PreTokenizer:
    """Splits text into the words that byte-level BPE merges within, for one `tokenizer.ggml.pre` type."""

    def __init__(self, pre: str | None):
        # A GGUF without the key gets GPT-2's regex (llama.cpp warns and uses its own "default" set).
        name = pre or "default"
        if name not in _PRE_TYPES:
            raise UnsupportedModel(f"unsupported pre-tokenizer type {name!r} (tokenizer.ggml.pre)")
        regex, self.ignore_merges = _PRE_TYPES[name]
        self.name = name
        self._finditer = re.compile(regex, re.ASCII).finditer

    def split(self, text: str) -> list[str]:
        """The words of `text`, in order; joined they give `text` back."""
        classes = text if text.isascii() else text.translate(_CLASSES)
        # every character falls in some alternative of these regexes, so the matches tile the text
        return [text[m.start() : m.end()] for m in self._finditer(classes)]
