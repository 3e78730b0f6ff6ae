"""Tokenizer built from GGUF metadata, in pure Python (it runs unchanged on Pyodide).

The families llama.cpp names by `tokenizer.ggml.model`:
- "gpt2": byte-level BPE (SmolLM2, Llama 3, Qwen2, DeepSeek, Falcon). Text is cut into words by the
  pre-tokenizer that `tokenizer.ggml.pre` names (`engine.pretokenize`), each word's UTF-8 bytes are written
  in GPT-2's printable byte alphabet, and adjacent symbols merge by the rank of the pair in
  `tokenizer.ggml.merges`.
- "gemma4": the same ranked merges on raw UTF-8 with spaces as "▁" (llama.cpp's "SPM-style BPE"); lines
  are the words, and characters outside the vocabulary fall back to `<0xNN>` byte tokens.
- "llama": SentencePiece-style BPE (Llama 2, Mistral, TinyLlama, Phi-3). Spaces become "▁", a space is put in
  front of each run of text, adjacent symbols merge while their concatenation is a token, highest score
  first, and characters outside the vocabulary fall back to `<0xNN>` byte tokens (or the unknown token).
In all, control and user-defined tokens written in the text (e.g. "<|im_start|>") are cut out first and
become their ids. Checked against Hugging Face `tokenizers` and llama.cpp's own tokenizer test set in
tests/test_tokenizer.py; BERT's WordPiece ("bert") is refused.
"""

from __future__ import annotations

import codecs
import re
from heapq import heapify, heappop, heappush

from .errors import ModelFileError, UnsupportedModel
from .pretokenize import PreTokenizer, bytes_to_unicode

# tokenizer.ggml.token_type values (llama.cpp `llama_token_type`)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_MODELS = ("gpt2", "gemma4", "llama")  # the tokenizer.ggml.model values this engine runs

# Tokens that end a turn although metadata does not say so: llama.cpp's list (`llama_vocab::impl::load`).
_EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>",
    "<|tool_response>",
})
_EOG_KEYS = ("eos_token_id", "eot_token_id", "eom_token_id")

# Encoding reads UTF-8 bytes as Latin-1 characters (ordinal = byte) and translates them to GPT-2's alphabet;
# decoding translates back and encodes as Latin-1. Both are one C-level str.translate per word or token.
_LATIN1_TO_GPT2 = bytes_to_unicode()
_GPT2_TO_LATIN1 = {ord(ch): b for b, ch in _LATIN1_TO_GPT2.items()}
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPACE = "▁"  # U+2581, SentencePiece's visible space
_WORD_CACHE_LIMIT = 1 << 16  # words kept per tokenizer before the cache starts over


def _merge(parts: list[str], table: dict, by_concat: bool) -> list[str]:
    """Merge adjacent symbols best-first until no pair is in `table`; returns the final symbols.

    `table` gives a pair's priority, lowest first: keyed by (left, right) for ranked merges, or by the
    concatenation when `by_concat` (SentencePiece, where priority is the negated score). Ties go to the
    leftmost pair, as in llama.cpp and Hugging Face. A heap of candidate pairs over a linked list of symbols
    makes this O(n log n), so long words (runs of spaces, a whole SentencePiece paragraph) stay fast; stale
    heap entries are recognised because a symbol's text only grows until it dies ("").
    """
    n = len(parts)
    nxt = [*range(1, n), -1]
    prv = list(range(-1, n - 1))
    heap = []
    for i in range(n - 1):
        a, b = parts[i], parts[i + 1]
        r = table.get(a + b) if by_concat else table.get((a, b))
        if r is not None:
            heap.append((r, i, a, b))
    heapify(heap)
    while heap:
        _, i, a, b = heappop(heap)
        j = nxt[i]
        if j < 0 or parts[i] != a or parts[j] != b:
            continue  # one side has merged with something else since this entry was pushed
        parts[i] = merged = a + b
        parts[j] = ""
        k = nxt[i] = nxt[j]
        if k >= 0:
            prv[k] = i
            c = parts[k]
            r = table.get(merged + c) if by_concat else table.get((merged, c))
            if r is not None:
                heappush(heap, (r, i, merged, c))
        h = prv[i]
        if h >= 0:
            c = parts[h]
            r = table.get(c + merged) if by_concat else table.get((c, merged))
            if r is not None:
                heappush(heap, (r, h, c, merged))
    return [p for p in parts if p]


def _merge_ranks(merges: list[str] | None) -> dict[tuple[str, str], int]:
    """(left, right) -> rank from `tokenizer.ggml.merges` ("left right" strings, best first)."""
    if merges is None:
        # llama.cpp refuses such a file too ("cannot find tokenizer merges in model file")
        raise ModelFileError("this BPE vocabulary has no merges (tokenizer.ggml.merges is missing): "
                             "the GGUF is incomplete; convert the model again with llama.cpp")
    ranks = {}
    for rank, m in enumerate(merges):
        cut = m.find(" ", 1)  # a symbol may itself start with a space in some vocabularies
        if cut > 0:  # a merge without a separator can never apply (llama.cpp stores it as ("", ""))
            ranks.setdefault((m[:cut], m[cut + 1 :]), rank)
    return ranks


class Tokenizer:
    """Text <-> token ids for one model, built with `Tokenizer.from_metadata(gguf_metadata)`."""

    def __init__(self, model: str, tokens: list[str], token_types: list[int], metadata: dict):
        self.model = model  # one of _MODELS
        self.tokens = tokens  # vocabulary strings as stored in the GGUF
        self.token_types = token_types
        self.vocab_size = len(tokens)
        self._ids = {t: i for i, t in enumerate(tokens)}
        spm = model == "llama"

        def special(key: str, default: int | None = None) -> int | None:
            value = metadata.get(f"tokenizer.ggml.{key}", default)
            return value if value is not None and 0 <= value < self.vocab_size else None

        # llama.cpp's defaults for SentencePiece vocabularies without the keys
        self.bos_id = special("bos_token_id", 1 if spm else None)
        self.eos_id = special("eos_token_id", 2 if spm else None)
        self.unk_id = special("unknown_token_id", 0 if spm else None)
        # Gemma 4's GGUF names no pre-tokenizer: llama.cpp picks it by the model
        pre = "gemma4" if model == "gemma4" else metadata.get("tokenizer.ggml.pre")
        self.pre = None if spm else PreTokenizer(pre)
        self.byte_level = bool(self.pre and self.pre.byte_level)  # GPT-2's byte alphabet, else "▁" and <0xNN>
        default_bos = spm or bool(self.pre and self.pre.add_bos)  # llama.cpp: SPM and the Llama 3 group add BOS
        self.add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", default_bos))
        self.add_space_prefix = spm and bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
        self.eog_ids = self._find_eog([special(k) for k in _EOG_KEYS])

        # Text cut out before pre-tokenization. llama.cpp matches user-defined tokens always and control
        # and unknown ones only when asked to parse special tokens; longest first so "<|im_start|>" wins.
        user = [i for i, t in enumerate(token_types) if t == USER_DEFINED]
        ctrl = [i for i, t in enumerate(token_types) if t in (CONTROL, UNKNOWN)]
        self._special_re = self._alternation(user + ctrl)
        self._user_re = self._alternation(user)

        self._byte_ids = [self._ids.get(f"<0x{b:02X}>") for b in range(256)]
        if spm:
            scores = metadata.get("tokenizer.ggml.scores") or [0.0] * self.vocab_size
            # merge priority: higher score first; byte and control tokens are never built from characters
            mergeable = (NORMAL, USER_DEFINED)
            self._merge_priority = {t: -scores[i] for i, t in enumerate(tokens) if token_types[i] in mergeable}
        else:
            self._merge_priority = _merge_ranks(metadata.get("tokenizer.ggml.merges"))
        self._word_cache: dict[str, list[int]] = {}
        self._piece_cache: dict[int, bytes] = {}

    @classmethod
    def from_metadata(cls, metadata: dict) -> Tokenizer:
        """Build the tokenizer a GGUF describes.

        Raises UnsupportedModel for a tokenizer type or pre-tokenizer this engine lacks (BERT's WordPiece
        among them), ModelFileError for a BPE vocabulary that comes without its merges.
        """
        model = metadata.get("tokenizer.ggml.model")
        if model == "bert":
            raise UnsupportedModel("unsupported tokenizer model 'bert' (tokenizer.ggml.model): "
                                   "BERT's WordPiece vocabularies (embedding models) are not supported")
        if model not in _MODELS:
            raise UnsupportedModel(f"unsupported tokenizer model {model!r} (tokenizer.ggml.model)")
        tokens = list(metadata["tokenizer.ggml.tokens"])
        types = list(metadata.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
        return cls(model, tokens, types, metadata)

    def _find_eog(self, from_metadata: list[int | None]) -> frozenset[int]:
        """End-of-generation ids: eos/eot/eom from metadata plus tokens named like a turn's end (llama.cpp).

        As in llama.cpp, a token so named is made a control token whatever its stored type (Gemma 4 stores
        "<|tool_response>" as user-defined), so that plain text never turns into it.
        """
        ids = {i for i in from_metadata if i is not None}
        for i, (text, kind) in enumerate(zip(self.tokens, self.token_types, strict=True)):
            if text in _EOG_TEXTS or (text == "</s>" and kind == CONTROL):
                ids.add(i)
                self.token_types[i] = CONTROL
        return frozenset(ids)

    def _alternation(self, ids: list[int]) -> re.Pattern | None:
        texts = sorted({self.tokens[i] for i in ids if self.tokens[i]}, key=len, reverse=True)
        return re.compile("|".join(map(re.escape, texts))) if texts else None

    # ---- encode ----

    def encode(self, text: str, *, add_bos: bool = False, parse_special: bool = True) -> list[int]:
        """Token ids of `text`; `parse_special`: control tokens written in the text become their ids."""
        out = [self.bos_id] if add_bos and self.bos_id is not None else []
        pattern = self._special_re if parse_special else self._user_re
        pos = 0
        for m in pattern.finditer(text) if pattern else ():
            if m.start() > pos:
                self._encode_text(text[pos : m.start()], out)
            out.append(self._ids[m.group()])
            pos = m.end()
        if pos < len(text):
            self._encode_text(text[pos:], out)
        return out

    def _encode_text(self, text: str, out: list[int]) -> None:
        """Encode a run of text that holds no special token; it starts the input or follows a special."""
        if self.pre is None:
            self._encode_spm(text, out)
            return
        if not self.byte_level:
            text = text.replace(" ", _SPACE)  # only the space: llama.cpp's escape leaves tabs as they are
        cache = self._word_cache
        if len(cache) > _WORD_CACHE_LIMIT:
            cache.clear()  # bounds memory in a long-running server; hot words come straight back
        for word in self.pre.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = cache[word] = self._encode_word(word)
            out.extend(ids)

    def _encode_word(self, word: str) -> list[int]:
        """BPE of one pre-tokenized word (llama.cpp `llm_tokenizer_bpe_session`)."""
        ids = self._ids
        if self.byte_level:
            # "replace": a lone surrogate (possible in text from JSON) becomes "?" rather than an exception
            symbols = word.encode("utf-8", "replace").decode("latin-1").translate(_LATIN1_TO_GPT2)
            if self.pre.ignore_merges and symbols in ids:
                return [ids[symbols]]
        else:
            symbols = word
            # Gemma 4 has tokens for runs of newlines but no merges that build them (llama.cpp PR 21343)
            if not word.strip("\n") and word in ids:
                return [ids[word]]
        parts = _merge(list(symbols), self._merge_priority, False) if len(symbols) > 1 else [symbols]
        if all(p in ids for p in parts):
            return [ids[p] for p in parts]
        if not self.byte_level:  # each byte of what is not a token as <0xNN>, dropped where there is none
            return [t for p in parts for t in self._piece_ids(p) if t is not None]
        # SmolLM2's vocabulary lacks some bytes (rare controls, bytes UTF-8 never uses): like llama.cpp and
        # Hugging Face, fall back byte by byte and drop what is missing
        return [ids[c] for p in parts for c in ([p] if p in ids else p) if c in ids]

    def _piece_ids(self, piece: str) -> list[int | None]:
        """The id of a piece, or its UTF-8 bytes as <0xNN> ids (None where the vocabulary lacks the byte)."""
        tid = self._ids.get(piece)
        return [tid] if tid is not None else [self._byte_ids[b] for b in piece.encode("utf-8", "replace")]

    def _encode_spm(self, text: str, out: list[int]) -> None:
        """SentencePiece BPE of a run of text (llama.cpp `llm_tokenizer_spm_session`)."""
        if self.add_space_prefix:
            # every run gets the prefix, also after a special token: llama.cpp does, and so does Hugging
            # Face, whose normalizer sees each run between special tokens on its own
            text = " " + text
        ids = self._ids
        for piece in _merge(list(text.replace(" ", _SPACE)), self._merge_priority, True):
            tid = ids.get(piece)
            if tid is not None:
                out.append(tid)
                continue
            # a character outside the vocabulary: its UTF-8 bytes as <0xNN> tokens (byte fallback),
            # or one unknown token where the vocabulary lacks byte tokens
            byte_ids = [self._byte_ids[b] for b in piece.encode("utf-8", "replace")]
            if None in byte_ids:
                byte_ids = [self.unk_id] if self.unk_id is not None else []
            out.extend(byte_ids)

    # ---- decode ----

    def _piece(self, token_id: int) -> bytes:
        """The bytes one token stands for."""
        piece = self._piece_cache.get(token_id)
        if piece is not None:
            return piece
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} outside the vocabulary (size {self.vocab_size})")
        text, kind = self.tokens[token_id], self.token_types[token_id]
        if kind in (CONTROL, USER_DEFINED, UNKNOWN, UNUSED):
            piece = text.encode("utf-8")  # stored as plain text in every family
        elif not self.byte_level:
            byte = _BYTE_TOKEN.fullmatch(text) if kind == BYTE else None
            piece = bytes([int(byte.group(1), 16)]) if byte else text.replace(_SPACE, " ").encode("utf-8")
        else:
            try:
                piece = text.translate(_GPT2_TO_LATIN1).encode("latin-1")
            except UnicodeEncodeError:  # a character outside GPT-2's alphabet: keep it as UTF-8
                piece = b"".join(
                    bytes([_GPT2_TO_LATIN1[ord(c)]]) if ord(c) in _GPT2_TO_LATIN1 else c.encode("utf-8")
                    for c in text
                )
        self._piece_cache[token_id] = piece
        return piece

    def _skipped(self, token_id: int) -> bool:
        return self.token_types[token_id] in (CONTROL, UNKNOWN, UNUSED)

    def decode(self, ids: list[int], *, skip_special: bool = False) -> str:
        """The text of `ids`; `skip_special` leaves out control and unknown tokens (BOS, <|im_end|>, <unk>).

        Invalid UTF-8 (a multi-byte character cut off) becomes U+FFFD. With SentencePiece's space prefix,
        the one leading space that encoding added is removed, as Hugging Face's Strip decoder does.
        """
        pieces = [self._piece(i) for i in ids if not (skip_special and self._skipped(i))]
        text = b"".join(pieces).decode("utf-8", "replace")
        return text[1:] if self.add_space_prefix and text.startswith(" ") else text

    def token_text(self, token_id: int) -> str:
        """What one token reads as (" the" for "Ġthe", "\\ufffd" for a lone byte of a longer character)."""
        return self._piece(token_id).decode("utf-8", "replace")

    def stream_decoder(self, *, skip_special: bool = False) -> StreamDecoder:
        """A decoder fed one id at a time that only ever returns whole characters."""
        return StreamDecoder(self, skip_special)


class StreamDecoder:
    """Incremental decode: `feed(id)` returns the text completed so far, holding back a partial character."""

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        self._tok = tokenizer
        self._skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._strip_space = tokenizer.add_space_prefix  # same leading-space rule as Tokenizer.decode

    def feed(self, token_id: int) -> str:
        """Add one token; returns the newly completed text (possibly "")."""
        if self._skip_special and self._tok._skipped(token_id):
            return ""
        return self._strip(self._utf8.decode(self._tok._piece(token_id)))

    def flush(self) -> str:
        """End of stream: whatever bytes are still held, a cut-off character as U+FFFD."""
        return self._strip(self._utf8.decode(b"", final=True))

    def _strip(self, text: str) -> str:
        if self._strip_space and text:
            self._strip_space = False
            if text[0] == " ":
                return text[1:]
        return text
