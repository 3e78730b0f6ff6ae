"""Pre-tokenizers of BPE: cut text into words before merges, as llama.cpp (`llm_tokenizer_bpe`) does.

A pre-tokenizer is a list of regexes, written as llama.cpp writes them in `src/llama-vocab.cpp`. Each one
splits every piece the previous ones left into its matches and the text between them (Hugging Face's
`Split` with behaviour "isolated"); most families need one regex, which cuts the whole text in one pass.

Python's `re` lacks Unicode classes (`\\p{L}`), and a per-character Python scanner is slow. So, like
llama.cpp (unicode.cpp `unicode_regex_split`), a regex that names a class runs on a "class view" of the
text: each non-ASCII character replaced by a stand-in of its class with one `str.translate`, and `\\p{X}`
rewritten as X's ASCII members plus its stand-in. A regex without classes (literal ranges such as
DeepSeek's CJK block) runs on the text itself, with only non-ASCII White_Space turned into "\\v", as
llama.cpp does. Both views have the text's length, so each match's span cuts the original text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

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


# ---- views of the text ----

# Stand-ins of the class view. An ASCII letter and digit stand for \p{L} and \p{N}, so a regex run on the
# class view must name letters and digits only through \p{L} and \p{N}; the other stand-ins are non-ASCII,
# so that no ASCII character a regex names ("!", "$") is mistaken for one, but Latin-1, so that the view
# stays a one-byte string (a wider one is slower to build and to match).
_WHITE_SPACE, _LETTER, _NUMBER, _MARK, _PUNCT, _OTHER = "\v", "a", "0", "\u00a8", "\u00a1", "\u00a4"  # ¨ ¡ ¤

# \p{X} in a regex -> what it matches in the class view (ASCII members as llama.cpp's `k_ucat_map` lists them)
_UNICODE_CLASSES = {
    "L": "A-Za-z",
    "N": "0-9",
    "M": _MARK,
    "P": r"!-#%-*,-/:;?@\[-\]_{}" + _PUNCT,
}


def _is_white_space(ch: str, category: str) -> bool:
    # White_Space (what Oniguruma and llama.cpp call \s) beyond ASCII: NEL plus the Z* categories
    return ch == "\x85" or category in ("Zs", "Zl", "Zp")


class _ClassMap(dict):
    """`str.translate` table from a character to its class stand-in, filled on first sight of each character."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if code < 128:
            out = ch  # the rewritten regexes spell out ASCII classes themselves
        else:
            category = unicodedata.category(ch)
            if _is_white_space(ch, category):
                out = _WHITE_SPACE
            elif category[0] == "L":
                out = _LETTER  # never a contraction letter (s t re ve m ll d), so "'ŝ" is not "'s"
            elif category[0] == "N":
                out = _NUMBER
            elif category[0] == "M":
                out = _MARK  # Hindi vowel signs, combining accents
            elif category[0] == "P":
                out = _PUNCT
            else:  # symbols (emoji), ZWJ and other format characters, controls, unassigned
                out = _OTHER
        self[code] = out
        return out


class _SpaceMap(dict):
    """`str.translate` table that turns non-ASCII White_Space into "\\v" and keeps every other character."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        out = _WHITE_SPACE if code >= 128 and _is_white_space(ch, unicodedata.category(ch)) else ch
        self[code] = out
        return out


_CLASSES = _ClassMap()
_SPACES = _SpaceMap()


def _rewrite_classes(regex: str) -> str:
    """`\\p{X}` -> its members in the class view, bracketed unless it already sits inside a [...] set."""
    out, inside = [], False
    for part in re.split(r"(\\p\{\w+\}|\\.|\[|\])", regex):
        if part.startswith("\\p{"):
            members = _UNICODE_CLASSES[part[3:-1]]
            part = members if inside else f"[{members}]"
        elif part in ("[", "]"):
            inside = part == "["
        out.append(part)
    return "".join(out)


# ---- regexes (llama.cpp's; Python's \Z for its end-of-piece $) ----

# GPT-2. llama.cpp's lacks the final \s+ but keeps the whitespace it leaves as a piece, which is the same.
_GPT2 = r"'(?:s|t|re|ve|m|ll|d)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# StarCoder / SmolLM: first every \p{N} alone, then GPT-2 inside each piece between digits. In one pass
# that means: a digit is a word, no " ?" before digits, and a whitespace run just before a digit ends its
# piece, so it is kept whole as at a string's end (the lookahead admits digits).
_GPT2_DIGITS = r"\p{N}|'(?:s|t|re|ve|m|ll|d)| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"

# Llama 3 (Qwen2: \p{N} one at a time). The case-insensitive contractions are ASCII-only, as in llama.cpp.
_LLAMA3 = (
    r"'(?i:s|t|re|ve|m|ll|d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
# Qwen3.5: a letter run also takes combining marks
_QWEN35 = _QWEN2.replace(r"\p{L}+", r"[\p{L}\p{M}]+").replace(r"[^\s\p{L}\p{N}]", r"[^\s\p{L}\p{M}\p{N}]")

_DEEPSEEK_CJK = r"[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_DEEPSEEK_LETTERS = (  # llama.cpp's literal list of cased letters, as code points
    r"\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    r"\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    r"\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    r"\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    r"\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    r"\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102"
    r"\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    r"\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    r"\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    r"\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    r"\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    r"\U0001e900-\U0001e943]+"
)


@dataclass(frozen=True)
class _Spec:
    """How one `tokenizer.ggml.pre` type cuts text, and the flags llama.cpp sets with it."""

    regexes: tuple[str, ...]  # applied in turn, each splitting the pieces the previous ones left
    ignore_merges: bool = False  # a word that is itself a token is taken whole (HF "ignore_merges": true)
    add_bos: bool = False  # llama.cpp's default for `tokenizer.ggml.add_bos_token`
    byte_level: bool = True  # False: raw UTF-8 with "▁" for spaces and <0xNN> byte tokens (Gemma 4)


# tokenizer.ggml.pre -> spec. The names and groups are llama.cpp's (`llama_vocab::impl::load`).
_PRE_GROUPS: list[tuple[tuple[str, ...], _Spec]] = [
    # llama.cpp's fallback, also for a byte-level GGUF without the key (it warns that quality will suffer)
    (("default",), _Spec((r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"))),
    (("gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4", "jina-es",
      "jina-de", "jina-v2-es", "jina-v2-de", "jina-v1-en", "jina-v2-code", "roberta-bpe", "gigachat",
      "a.x-4.0", "mellum", "modern-bert"), _Spec((_GPT2,))),
    (("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"), _Spec((_GPT2_DIGITS,))),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"),
     _Spec((_LLAMA3,), ignore_merges=True, add_bos=True)),
    (("dbrx", "smaug-bpe", "chatglm-bpe"), _Spec((_LLAMA3,))),
    (("glm4",), _Spec((_LLAMA3,), ignore_merges=True)),
    (("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "kormo", "f2llmv2", "hunyuan"), _Spec((_QWEN2,))),
    (("qwen35",), _Spec((_QWEN35,))),
    (("falcon",), _Spec((r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]"))),
    (("deepseek-coder",), _Spec((r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _DEEPSEEK_CJK, r"\p{N}"))),
    (("deepseek-llm",), _Spec((
        r"[\r\n]", _DEEPSEEK_LETTERS, r"\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
        r"\s+\Z", _DEEPSEEK_CJK, r"\p{N}+"))),
    # SentencePiece-style BPE: merges run on whole lines; llama.cpp only keeps newlines apart
    (("gemma4",), _Spec((r"[^\n]+|\n+",), byte_level=False)),
]  # fmt: skip
PRE_TYPES = {name: spec for names, spec in _PRE_GROUPS for name in names}


class PreTokenizer:
    """Splits text into the words that BPE merges within, for one `tokenizer.ggml.pre` type."""

    def __init__(self, pre: str | None):
        name = pre or "default"  # what llama.cpp uses for a GGUF without the key
        if name not in PRE_TYPES:
            raise UnsupportedModel(f"unsupported pre-tokenizer type {name!r} (tokenizer.ggml.pre)")
        spec = PRE_TYPES[name]
        self.name = name
        self.ignore_merges, self.add_bos, self.byte_level = spec.ignore_merges, spec.add_bos, spec.byte_level
        # (finditer, runs on the class view); re.ASCII makes \s exactly [ \t\n\v\f\r], as in llama.cpp
        # (Python's Unicode \s would add \x1c-\x1f, which are not White_Space)
        self._steps = [(re.compile(_rewrite_classes(r), re.ASCII).finditer, "\\p{" in r) for r in spec.regexes]

    def split(self, text: str) -> list[str]:
        """The words of `text`, in order; joined they give `text` back."""
        ascii_only = text.isascii()
        if len(self._steps) == 1:
            # one regex, whose alternatives cover every character (tests hold each type to it), so its
            # matches tile the text: the common case, and the one pass the encode speed rests on
            finditer, on_classes = self._steps[0]
            view = text if ascii_only else text.translate(_CLASSES if on_classes else _SPACES)
            return [text[m.start() : m.end()] for m in finditer(view)]
        classes = text if ascii_only else text.translate(_CLASSES)
        spaces = text if ascii_only else text.translate(_SPACES)
        spans = [(0, len(text))] if text else []
        for finditer, on_classes in self._steps:
            spans = _split_spans(finditer, classes if on_classes else spaces, spans)
        return [text[start:end] for start, end in spans]


def _split_spans(finditer, view: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each span cut into the regex's matches and the runs between them (llama.cpp `unicode_regex_split_stl`)."""
    out = []
    for start, end in spans:
        pos = start
        for m in finditer(view, start, end):
            s, e = m.span()
            if s > pos:
                out.append((pos, s))
            out.append((s, e))
            pos = e
        if pos < end:
            out.append((pos, end))
    return out
