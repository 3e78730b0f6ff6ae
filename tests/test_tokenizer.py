"""engine.tokenizer against Hugging Face `tokenizers` built from the very same vocabulary and merges, and
against llama.cpp's own tokenizer test set.

Byte-level BPE: SmolLM2's GGUF vocabulary, with its own pre-tokenizer ("smollm") and, to check the other
regexes, the same vocabulary under "gpt-2", "llama-bpe" and "qwen2". SentencePiece BPE: a small Llama-2-style
vocabulary made here (specials, <0xNN> byte tokens, "▁" pieces with scores) and turned into an HF tokenizer
the way `transformers`' converter does. Every family of llama.cpp's test-tokenizer-0 (tests/llama_sdist.py):
its vocabulary GGUF read with the engine's reader, and each text's ids exactly as llama.cpp expects them.
Run with -s to see the encode speed.
"""

from __future__ import annotations

import functools
import random
import time
import unicodedata
from pathlib import Path

import pytest
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from engine.errors import ModelFileError, UnsupportedModel
from engine.gguf import open_gguf
from engine.pretokenize import PRE_TYPES, PreTokenizer, bytes_to_unicode
from engine.tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, Tokenizer
from tests import llama_sdist

CORPUS = (Path(__file__).parent / "data" / "tokenizer_corpus.txt").read_text(encoding="utf-8")

# Cases a text editor would eat or that sit on a boundary of the rewritten regexes.
EDGE_CASES = [
    "", " ", "  ", "\n", "\r\n", "a\r\nb\r\n\r\n", " \n \n", "\t\n\t", "x   ", "x \t ", "   leading",
    "a 1", "a  1", "a   1", "a \n 1", "a\t1", " 1", "1 ", "12345 67", "a1b2c3", "x\u00a01", "\u00a0\u00a0a",
    "don't DON'T Don'T I'll I'LL 'S 's 'x '", "''s", "x''ll", "!'s", "ŝ'ŝ", "'1",
    "\x1c\x1e\x1f x \x1fy\x1e\x1e",  # ASCII separators: not White_Space for Oniguruma, though str.isspace says yes
    "\x85 \u2028 \u2029 \u3000 \u2003 \u205f x", "x\u2028\u2028y \u3000z",  # White_Space beyond ASCII
    "e\u0301 n\u0303 \u0301\u0301x", "\u200d\u200d", "a\u200db", "👍🏽👍🏽", "🏳️‍🌈x", "٣٤٥ ١٢", "x²³",
    "\tfoo", "\n\nfoo", " (foo", "(foo", "...foo", " ...\n\n", "?\r\n", "foo\r", "\r",
    " " * 1000 + "x", "=" * 500, "ab" * 300, "x" + "\t" * 50 + "y",
    "<|im_start|><|im_end|>", "<|im_start|> <|im_end|>", "a<|endoftext|>b", "<|im_start|",
]
TEXTS = [CORPUS, *EDGE_CASES]


@pytest.fixture(scope="session")
def smol_metadata(model_gguf) -> dict:
    """GGUF metadata of the default model, SmolLM2-135M-Instruct (`model_gguf`: tests/conftest.py)."""
    return model_gguf.metadata


@pytest.fixture(scope="session")
def smol(smol_metadata) -> Tokenizer:
    return Tokenizer.from_metadata(smol_metadata)


# ---- references ----

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)  # from Llama 3's tokenizer.json; Qwen2's has \p{N} instead of \p{N}{1,3}
HF_PRE = {
    "smollm": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ]),
    "gpt-2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "llama-bpe": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]),
    "qwen2": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]),
}


def hf_byte_level(meta: dict, pre: str, with_specials: bool = True) -> HFTokenizer:
    """A Hugging Face byte-level BPE tokenizer from a GGUF's tokens and merges."""
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre == "llama-bpe"))
    hf.pre_tokenizer = HF_PRE[pre]()
    hf.decoder = decoders.ByteLevel()
    if with_specials:
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False)
                               for t, k in zip(tokens, types, strict=True) if k == CONTROL])
    return hf


def spm_metadata(smol_meta: dict, n_merges: int = 6000) -> dict:
    """A Llama-2-style SentencePiece vocabulary as GGUF metadata.

    Its pieces are the text of SmolLM2's first merges with spaces as "▁" (score: minus the merge's rank), so it
    covers English and code well, other scripts partly, and emoji only through <0xNN> byte fallback.
    """
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    pieces: dict[str, None] = {}
    for m in smol_meta["tokenizer.ggml.merges"][:n_merges]:
        try:
            text = bytes(byte_of[c] for c in m.replace(" ", "")).decode("utf-8")
        except UnicodeDecodeError:
            continue  # half a character: not a SentencePiece piece
        if not any(c in text for c in "\n\r\t"):  # Llama 2 writes these as byte tokens
            pieces.setdefault(text.replace(" ", "▁"), None)
    chars = sorted({c for p in pieces for c in p} | {chr(c) for c in range(33, 127)} | {"▁"})
    multi = [p for p in pieces if len(p) > 1]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *chars, *multi]
    scores = [0.0] * 259 + [-1e6 - i for i in range(len(chars))] + [-float(i) for i in range(len(multi))]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * (len(chars) + len(multi))
    return {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_space_prefix": True,
    }


def hf_spm(meta: dict) -> HFTokenizer:
    """Hugging Face's Llama 2 tokenizer.json layout for the same pieces (merges as transformers derives them)."""
    tokens, scores, types = (meta[f"tokenizer.ggml.{k}"] for k in ("tokens", "scores", "token_type"))
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    normal = sorted((i for i, k in enumerate(types) if k == NORMAL), key=lambda i: -scores[i])
    for i in normal:  # transformers' SentencePieceExtractor: every split of a piece into two pieces
        piece = tokens[i]
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        merges += sorted(local, key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    hf.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    hf.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    return hf


# ---- comparison helpers ----

def pieces(tok: Tokenizer, ids: list[int]) -> list[str]:
    return [tok.tokens[i] for i in ids]


def first_difference(ours: list, ref: list) -> int:
    """Index of the first place two lists differ (the shorter one's length if one extends the other)."""
    return next((i for i, (a, b) in enumerate(zip(ours, ref, strict=False)) if a != b), min(len(ours), len(ref)))


def assert_same_words(ours: list, ref: list, what: str) -> None:
    if ours != ref:
        k = first_difference(ours, ref)
        pytest.fail(f"{what}: first different word {k}: {ours[k : k + 5]} != {ref[k : k + 5]}")


def assert_same_ids(tok: Tokenizer, text: str, ours: list[int], ref: list[int], what: str) -> None:
    """Equal id lists, or a message showing the first difference with the text and tokens around it."""
    if ours == ref:
        return
    k = first_difference(ours, ref)
    offset = len(tok.decode(ours[:k]))
    pytest.fail(
        f"{what}: first mismatch at token {k} (char {offset}) of {len(ref)}\n"
        f"  text there: {text[max(0, offset - 30) : offset + 40]!r}\n"
        f"  ours: {ours[k : k + 8]} {pieces(tok, ours[k : k + 8])}\n"
        f"  ref : {ref[k : k + 8]} {pieces(tok, ref[k : k + 8])}"
    )


def chunks(text: str) -> list[str]:
    """The corpus cut per line and per paragraph, plus the edge cases."""
    return [*text.splitlines(keepends=True), *text.split("\n\n"), *EDGE_CASES]


def hf_ids(hf: HFTokenizer, text: str) -> list[int]:
    return hf.encode(text, add_special_tokens=False).ids


# ---- byte-level BPE ----

def test_corpus_is_big_and_mixed():
    assert len(CORPUS) >= 20_000
    for needle in ("👨‍👩‍👧‍👦", "👍🏿", "中文", "العربية", "हिन्दी", "ñ", "I'LL", "don't", "https://", "\t\t", "   \n",
                   "<|im_start|>", "<|endoftext|>", "def ", "=>", "3.14159265358979323846"):
        assert needle in CORPUS, needle


@pytest.mark.parametrize("pre", ["smollm", "gpt-2", "llama-bpe", "qwen2"])
def test_pretokenizer_words_match_hugging_face(pre):
    # Words, not ids: a vocabulary that never merges across a boundary (SmolLM2 has no multi-digit
    # tokens) would hide a wrong split from the id comparison below.
    splitter, hf = PreTokenizer(pre), HF_PRE[pre]()
    to_gpt2 = bytes_to_unicode()
    for i, text in enumerate([CORPUS, *chunks(CORPUS)]):
        ours = ["".join(to_gpt2[b] for b in w.encode()) for w in splitter.split(text)]
        ref = [w for w, _ in hf.pre_tokenize_str(text)]
        assert_same_words(ours, ref, f"{pre}: chunk {i} {text[:40]!r}")


def test_every_character_classifies_as_oniguruma_does():
    # Each assigned code point as a letter, number, space or other would be: after "y" (letters join), after
    # " " (numbers don't take the space), doubled before a space (whitespace runs). Code points that this
    # Python's unicodedata does not know yet are left out: they are "other" here, maybe not in HF's tables.
    chars = [chr(c) for c in range(0x80, 0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs", "Co")]
    text = "".join(f"x{c}1 {c}y{c}{c} {c}\n" for c in chars)
    ours = [w.encode() for w in PreTokenizer("smollm").split(text)]
    from_gpt2 = {ord(ch): b for b, ch in bytes_to_unicode().items()}
    ref = [w.translate(from_gpt2).encode("latin-1") for w, _ in HF_PRE["smollm"]().pre_tokenize_str(text)]
    assert_same_words(ours, ref, "all of Unicode")


@pytest.mark.parametrize("pre", ["smollm", "gpt-2", "llama-bpe", "qwen2"])
def test_byte_level_matches_hugging_face(smol_metadata, pre):
    meta = {**smol_metadata, "tokenizer.ggml.pre": pre}
    tok, hf = Tokenizer.from_metadata(meta), hf_byte_level(meta, pre)
    assert_same_ids(tok, CORPUS, tok.encode(CORPUS), hf_ids(hf, CORPUS), f"{pre}: whole corpus")
    for i, chunk in enumerate(chunks(CORPUS)):
        assert_same_ids(tok, chunk, tok.encode(chunk), hf_ids(hf, chunk), f"{pre}: chunk {i} {chunk[:40]!r}")


def test_byte_level_matches_llama_cpp(smol, model_path, llama_cpp):
    ll = llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False)
    for i, text in enumerate([CORPUS, *chunks(CORPUS)]):
        ref = ll.tokenize(text.encode(), add_bos=False, special=True) if text else []
        assert_same_ids(smol, text, smol.encode(text), ref, f"llama.cpp: chunk {i} {text[:40]!r}")


def test_parse_special_off_keeps_control_tokens_as_text(smol, smol_metadata):
    plain = hf_byte_level(smol_metadata, "smollm", with_specials=False)
    text = "<|im_start|>user\nhi<|im_end|><|endoftext|>"
    ids = smol.encode(text, parse_special=False)
    assert ids == hf_ids(plain, text)
    assert not set(ids) & {0, 1, 2}
    assert smol.encode(text)[:1] == [1] and smol.decode(ids) == text


def test_byte_level_decode_round_trip(smol, smol_metadata):
    hf = hf_byte_level(smol_metadata, "smollm")
    for text in TEXTS:
        ids = smol.encode(text)
        assert smol.decode(ids) == text
        assert smol.decode(ids) == hf.decode(ids, skip_special_tokens=False)
    ids = smol.encode("<|im_start|>user\nhi<|im_end|>")
    assert smol.decode(ids, skip_special=True) == "user\nhi"


def stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    dec = tok.stream_decoder()
    return [dec.feed(i) for i in ids] + [dec.flush()]


def test_stream_decoder_never_splits_a_character(smol):
    text = "👨‍👩‍👧‍👦 家族 🏳️‍🌈"
    ids = smol.encode(text)
    partial = [i for i in ids if "\ufffd" in smol.token_text(i)]
    assert partial, "the test needs a character split across tokens"
    out = stream(smol, ids)
    assert "".join(out) == text and "\ufffd" not in "".join(out)
    assert "" in out  # a token that ends mid-character yields nothing yet
    for text in TEXTS:
        out = stream(smol, smol.encode(text))
        assert "".join(out) == smol.decode(smol.encode(text))
        assert all("\ufffd" not in piece for piece in out)


def test_stream_decoder_flushes_a_cut_off_character(smol):
    ids = smol.encode("🙂")
    dec = smol.stream_decoder()
    assert [dec.feed(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert dec.flush() == "\ufffd"


def test_special_ids_and_end_of_generation(smol):
    assert smol.vocab_size == 49152
    assert smol.tokens[smol.bos_id] == "<|im_start|>" and smol.tokens[smol.eos_id] == "<|im_end|>"
    im_end, eot = smol.encode("<|im_end|><|endoftext|>")
    assert smol.token_text(im_end) == "<|im_end|>"
    assert {im_end, eot} <= smol.eog_ids and smol.encode("<|im_start|>")[0] not in smol.eog_ids
    assert isinstance(smol.eog_ids, frozenset)
    assert smol.add_bos is False
    assert smol.encode("hi", add_bos=True) == [smol.bos_id, *smol.encode("hi")]
    assert smol.token_text(smol.encode(" the")[0]) == " the"
    dec = smol.stream_decoder(skip_special=True)
    assert "".join(dec.feed(i) for i in smol.encode("<|im_start|>hi<|im_end|>")) == "hi"


def test_unknown_tokenizer_model_is_named(smol_metadata):
    with pytest.raises(UnsupportedModel, match="'bert'"):
        Tokenizer.from_metadata({**smol_metadata, "tokenizer.ggml.model": "bert"})
    with pytest.raises(UnsupportedModel, match="'ugm-like'"):
        Tokenizer.from_metadata({**smol_metadata, "tokenizer.ggml.model": "ugm-like"})
    with pytest.raises(UnsupportedModel, match="'no-such-pre'"):
        Tokenizer.from_metadata({**smol_metadata, "tokenizer.ggml.pre": "no-such-pre"})


@pytest.mark.parametrize("model", ["gpt2", "gemma4"])
def test_bpe_vocabulary_without_merges_is_refused(smol_metadata, model):
    meta = {k: v for k, v in smol_metadata.items() if k != "tokenizer.ggml.merges"}
    with pytest.raises(ModelFileError, match=r"no merges \(tokenizer\.ggml\.merges is missing\)"):
        Tokenizer.from_metadata({**meta, "tokenizer.ggml.model": model})


@pytest.mark.parametrize("pre", sorted(PRE_TYPES))
def test_every_pretokenizer_gives_the_text_back(pre):
    # A one-regex type is cut in a single pass that trusts the regex to cover every character; a regex
    # that did not would lose text here.
    splitter = PreTokenizer(pre)
    for text in [CORPUS, *EDGE_CASES]:
        words = splitter.split(text)
        assert "".join(words) == text and all(words), f"{pre}: {text[:40]!r}"


def test_encode_speed(smol_metadata):
    tok = Tokenizer.from_metadata(smol_metadata)  # cold word cache
    t0 = time.perf_counter()
    n = len(tok.encode(CORPUS))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok.encode(CORPUS)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    spm = Tokenizer.from_metadata(spm_metadata(smol_metadata))
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_spm = len(spm.encode(CORPUS))
    spm_time = time.perf_counter() - t0
    print(f"\nencode {len(CORPUS)} chars -> {n} tokens: {cold * 1e3:.1f} ms cold cache, {warm * 1e3:.1f} ms warm;"
          f" SentencePiece -> {n_spm} tokens: {spm_time * 1e3:.1f} ms (built in {built * 1e3:.1f} ms)")


# ---- SentencePiece BPE ----

@pytest.fixture(scope="module")
def spm_pair(smol_metadata) -> tuple[Tokenizer, HFTokenizer]:
    meta = spm_metadata(smol_metadata)
    return Tokenizer.from_metadata(meta), hf_spm(meta)


SPM_EXTRA = ["<s>hello</s>", "a <s> b</s>c", "<unk>x", "  two leading", "tail  ", "😀 🇫🇷 ᚠᛇᚻ"]


def test_sentencepiece_matches_hugging_face(spm_pair):
    tok, hf = spm_pair
    assert_same_ids(tok, CORPUS, tok.encode(CORPUS), hf_ids(hf, CORPUS), "spm: whole corpus")
    for i, chunk in enumerate(chunks(CORPUS) + SPM_EXTRA):
        assert_same_ids(tok, chunk, tok.encode(chunk), hf_ids(hf, chunk), f"spm: chunk {i} {chunk[:40]!r}")


def test_sentencepiece_byte_fallback_and_specials(spm_pair):
    tok, _ = spm_pair
    assert tok.encode("😀") == [tok.tokens.index("▁")] + [3 + b for b in "😀".encode()]
    assert tok.encode("<s>hi</s>")[0] == 1 and tok.encode("<s>hi</s>")[-1] == 2
    assert tok.encode("hi", add_bos=True)[0] == 1 and tok.add_bos
    assert tok.eog_ids == {2}


def test_sentencepiece_round_trip_and_stream(spm_pair):
    tok, hf = spm_pair
    for text in TEXTS + SPM_EXTRA[3:]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=False)
        assert "".join(stream(tok, ids)) == text
    ids = tok.encode("<s>hi</s><unk>", add_bos=True)
    assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=False) == "<s><s> hi</s><unk>"
    assert tok.decode(ids, skip_special=True) == hf.decode(ids, skip_special_tokens=True) == "hi"


# ---- llama.cpp's tokenizer test set ----

# Every family of test-tokenizer-0 but BERT's WordPiece, which the engine refuses (tested apart). The sdist is
# part of the set-up (scripts/setup.sh): without it collection fails, naming it.
FAMILIES = [f for f in llama_sdist.vocab_families() if f != "bert-bge"]


@functools.cache
def _family(family: str) -> tuple[llama_sdist.VocabCase, Tokenizer]:
    """One family's test case and the tokenizer its vocabulary GGUF makes, read and built once (up to 262k
    tokens and 515k merges)."""
    case = llama_sdist.vocab_case(family)
    return case, Tokenizer.from_metadata(open_gguf(case.gguf).metadata)


@pytest.fixture(scope="module", params=FAMILIES)
def vocab(request) -> tuple[llama_sdist.VocabCase, Tokenizer]:
    return _family(request.param)


def test_llama_cpp_vocab_families_are_all_there():
    # so that the tests over them cannot pass by finding none
    families = set(llama_sdist.vocab_families())
    assert {"qwen35", "gemma-4", "deepseek-llm", "deepseek-coder", "falcon", "llama-spm", "bert-bge"} <= families


def test_llama_cpp_vocab_ids(vocab):
    # test-tokenizer-0: add_special and parse_special off
    case, tok = vocab
    for text, expected in case.cases:
        ours = tok.encode(text, add_bos=False, parse_special=False)
        assert_same_ids(tok, text, ours, list(expected), f"{case.family}: first differing text {text[:80]!r}")


def _unwritable_bytes(tok: Tokenizer) -> set[int]:
    """Bytes the vocabulary has no token for (Falcon lacks some controls): text holding one cannot come back."""
    vocab = set(tok.tokens)
    if tok.byte_level:
        return {b for b, ch in bytes_to_unicode().items() if ch not in vocab}
    return {b for b in range(256) if f"<0x{b:02X}>" not in vocab}


def test_llama_cpp_vocab_round_trip(vocab):
    case, tok = vocab
    unwritable = _unwritable_bytes(tok)
    texts = [*(t for t, _ in case.cases), *TEXTS]
    writable = [t for t in texts if not unwritable.intersection(t.encode())]
    assert CORPUS in writable and len(writable) >= len(texts) - 1
    for text in writable:
        ids = tok.encode(text, parse_special=False)
        assert tok.decode(ids) == text, f"{case.family}: {text[:80]!r}"
        assert "".join(stream(tok, ids)) == text, f"{case.family}: streamed {text[:80]!r}"


# Characters on which the pre-tokenizers' classes part ways: White_Space beyond ASCII, the ASCII separators,
# contraction letters, punctuation and symbols, DeepSeek's cased letters, CJK and fullwidth forms, marks,
# digits of other scripts, emoji and ZWJ, private use and unassigned code points.
MIXED = [
    *"aZ09 \t\n\r\x0b\x0c\x1c\x1f\x00'sStTrRevVmMlLdD!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~",
    *"\x85\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000", *"µÀßſΩжＡｚ！～‘‟、。「中文龥一가힣ㄱࠀ",
    *"अि्०४٣²½Ⅻ①〇\u0301\u0300\u20dd\u200d\u200b\ufeff😀🏽🦙€©°±¡¿·…—–𐐀𝔘𑢠\ue000\U000e0001\u0378",
]
# Families whose pre-tokenizer takes several regexes or combining marks: their classes are the most varied,
# so they get llama.cpp's own answer on random mixtures too (loading a vocabulary into llama.cpp costs up to
# 2 s, so not every family does).
MIXED_FAMILIES = {"deepseek-coder", "deepseek-llm", "falcon", "qwen35"}


@pytest.mark.parametrize("family", sorted(MIXED_FAMILIES))
def test_llama_cpp_vocab_matches_llama_cpp_on_mixed_text(family, llama_cpp):
    case, tok = _family(family)
    ll = llama_cpp.Llama(str(case.gguf), vocab_only=True, verbose=False)
    rng = random.Random(0)
    texts = ["".join(rng.choices(MIXED, k=rng.randint(1, 24))) for _ in range(400)]
    for text in [CORPUS, *texts]:
        ref = ll.tokenize(text.encode(), add_bos=False, special=False)
        assert_same_ids(tok, text, tok.encode(text, parse_special=False), ref, f"{case.family}: {text[:40]!r}")


def test_bert_wordpiece_is_refused_by_name():
    case = llama_sdist.vocab_case("bert-bge")
    with pytest.raises(UnsupportedModel, match="'bert'.*WordPiece"):
        Tokenizer.from_metadata(open_gguf(case.gguf).metadata)
