"""The exact byte string of every token id of a tokenizer.

A token FSM is the byte-level DFA of a grammar crossed with these byte strings, so they must be
exact: the bytes a token contributes in the middle of a text, not what `decode([id])` prints.

How token text becomes bytes is read from the tokenizer's own configuration (its decoder, then
its normalizer, pre-tokenizer and model), never guessed from what token text looks like:

* byte-level BPE (GPT-2, Llama 3, Qwen, DeepSeek, tiktoken conversions): each character stands
  for one byte through the GPT-2 byte <-> unicode table;
* SentencePiece style (Gemma, Llama 2, Mistral): the space marker (`▁`) is a space and, with
  byte fallback, `<0xNN>` is the single byte NN. Decoders that strip the leading space of a
  text (`Strip` after `Fuse`, `Metaspace`) only touch the first token of a text and are ignored;
  `Vocabulary.adds_prefix_space` says whether encoding a text prepends a space;
* special tokens (`<bos>`, `<eos>`, `<pad>`, control and unused pieces) are b"": they never
  appear inside a grammar. Non-special added tokens keep their text;
* ids past the tokenizer's last id (a model whose logits are wider) are b"".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["Vocabulary", "VocabularyError"]

# Above this many bytes the padded matrix behind the vectorized sort is not worth its memory.
_MAX_SORT_MATRIX_BYTES = 1 << 28


class VocabularyError(ValueError):
    """A tokenizer or token list that cannot be turned into an exact byte vocabulary."""


class Vocabulary:
    """Byte string of every token id, EOS ids and special ids, with array forms for compilers.

    `tokens[i]` is b"" for ids that are never allowed inside a grammar (special tokens, ids past
    the tokenizer). EOS ids are special too; the FSM allows them where the grammar may end.
    """

    def __init__(self, tokens: Sequence[bytes], eos_token_ids: Iterable[int],
                 special_token_ids: Iterable[int] = (), size: int | None = None, *,
                 adds_prefix_space: bool = False) -> None:
        tokens = list(tokens)
        if not set(map(type, tokens)) <= {bytes}:
            i = next(i for i, t in enumerate(tokens) if type(t) is not bytes)
            raise VocabularyError(f"Vocabulary: token {i} is {type(tokens[i]).__name__}, not bytes")
        if size is None:
            size = len(tokens)
        if size < len(tokens):
            raise VocabularyError(
                f"Vocabulary: size={size} is smaller than the {len(tokens)} token ids given")
        self.tokenizer_size: int = len(tokens)
        self.size: int = int(size)
        self.tokens: list[bytes] = tokens + [b""] * (self.size - len(tokens))
        self.eos_token_ids: list[int] = _unique_ids(eos_token_ids, self.size, "eos_token_ids")
        if not self.eos_token_ids:
            raise VocabularyError("Vocabulary: at least one EOS token id is required")
        self.special_token_ids: list[int] = sorted(
            set(_unique_ids(special_token_ids, self.size, "special_token_ids"))
            | set(self.eos_token_ids))
        for i in self.special_token_ids:
            if self.tokens[i]:
                raise VocabularyError(
                    f"Vocabulary: token {i} is listed as EOS/special but has bytes "
                    f"{self.tokens[i]!r}; special tokens must be b''")
        self.adds_prefix_space: bool = bool(adds_prefix_space)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, vocab_size: int | None = None, *,
                       eos_token_ids: Iterable[int] = ()) -> Vocabulary:
        """Exact bytes of every id of a Hugging Face tokenizer.

        `tokenizer`: a transformers tokenizer backed by `tokenizers` (fast) or by SentencePiece,
        or a bare `tokenizers.Tokenizer`. `vocab_size`: the model's logits width when larger than
        the tokenizer (extra ids are b""). `eos_token_ids`: EOS ids beyond
        `tokenizer.eos_token_id`, e.g. a generation config's list (`<end_of_turn>`, `<|eot_id|>`).
        """
        if hasattr(tokenizer, "sp_model") and not hasattr(tokenizer, "backend_tokenizer"):
            tokens, special, prefix = _from_sentencepiece(tokenizer)
        else:
            backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
            if not hasattr(backend, "get_added_tokens_decoder"):
                raise VocabularyError(
                    f"Vocabulary.from_tokenizer: unsupported tokenizer type "
                    f"{type(tokenizer).__name__}; pass a tokenizers-backed (fast) or "
                    f"SentencePiece transformers tokenizer, or a tokenizers.Tokenizer")
            tokens, special, prefix = _from_tokenizers(backend)
        special |= set(getattr(tokenizer, "all_special_ids", ()) or ())
        n = len(tokens)
        if vocab_size is not None and vocab_size < n:
            raise VocabularyError(
                f"Vocabulary.from_tokenizer: vocab_size={vocab_size} is smaller than the "
                f"tokenizer, which defines ids up to {n - 1}")
        eos = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
        eos = _unique_ids([*eos, *eos_token_ids], max(n, vocab_size or 0), "eos_token_ids")
        if not eos:
            raise VocabularyError(
                "Vocabulary.from_tokenizer: the tokenizer has no eos_token_id; pass eos_token_ids=")
        special.update(eos)
        for i in special:
            if i < n:
                tokens[i] = b""
        return cls(tokens, eos, sorted(special), vocab_size, adds_prefix_space=prefix)

    # -- identity -------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Stable hash of (tokens, EOS ids, size): a cache key for compiled FSMs."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256(b"octogram-vocabulary-v1\0")
        h.update(np.array([self.size, len(self.eos_token_ids), *self.eos_token_ids],
                          dtype="<i8").tobytes())
        h.update(self.token_lengths.astype("<i4").tobytes())
        h.update(self.token_buffer.tobytes())
        return h.hexdigest()

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"Vocabulary(size={self.size}, tokenizer_size={self.tokenizer_size}, "
                f"eos_token_ids={self.eos_token_ids}, special={len(self.special_token_ids)})")

    # -- array forms (computed once, read-only) --------------------------------------------

    @cached_property
    def token_lengths(self) -> np.ndarray:
        """int32 (size,): byte length of every token (0 for never-allowed ids)."""
        return _frozen(np.fromiter(map(len, self.tokens), dtype=np.int32, count=self.size))

    @cached_property
    def token_offsets(self) -> np.ndarray:
        """int64 (size + 1,): token i is token_buffer[offsets[i]:offsets[i + 1]]."""
        offsets = np.zeros(self.size + 1, dtype=np.int64)
        np.cumsum(self.token_lengths, out=offsets[1:])
        return _frozen(offsets)

    @cached_property
    def token_buffer(self) -> np.ndarray:
        """uint8: every token's bytes, concatenated in id order."""
        return _frozen(np.frombuffer(b"".join(self.tokens), dtype=np.uint8))

    @cached_property
    def sorted_ids(self) -> np.ndarray:
        """int32 (size,): ids in lexicographic order of their bytes (ties by id; b"" first)."""
        return self._sorted[0]

    @cached_property
    def sorted_lcp(self) -> np.ndarray:
        """int32 (size,): length of the common prefix of each sorted token and the one before it
        (0 for the first) — how far a trie walk in sorted order backs up between tokens."""
        return self._sorted[1]

    @cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        lengths = self.token_lengths
        width = int(lengths.max(initial=0))
        if width == 0 or self.size * width > _MAX_SORT_MATRIX_BYTES:
            return _sort_python(self.tokens)
        # Fixed-width bytes pad with NUL, so "a" and "a\0" compare equal: a stable sort by length
        # first makes the shorter one come first, which is the lexicographic order.
        padded = np.array(self.tokens, dtype=f"S{width}")
        by_length = np.argsort(lengths, kind="stable")
        order = by_length[np.argsort(padded[by_length], kind="stable")]
        matrix = padded[order].view(np.uint8).reshape(self.size, width)
        ordered_lengths = lengths[order]
        lcp = np.zeros(self.size, dtype=np.int32)
        step = max(1, (1 << 24) // width)
        for lo in range(1, self.size, step):
            hi = min(self.size, lo + step)
            differ = matrix[lo:hi] != matrix[lo - 1:hi - 1]
            first = np.where(differ.any(axis=1), differ.argmax(axis=1), width)
            lcp[lo:hi] = np.minimum(first, np.minimum(ordered_lengths[lo:hi],
                                                      ordered_lengths[lo - 1:hi - 1]))
        return _frozen(order.astype(np.int32)), _frozen(lcp)


# -- helpers ------------------------------------------------------------------------------

def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _unique_ids(ids: Iterable[int], size: int, what: str) -> list[int]:
    out: dict[int, None] = {}  # ordered and unique
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise VocabularyError(f"Vocabulary: {what} holds {i!r}, not an int")
        if not 0 <= i < size:
            raise VocabularyError(f"Vocabulary: {what} holds {i}, outside 0..{size - 1}")
        out[int(i)] = None
    return list(out)


def _sort_python(tokens: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    order = sorted(range(len(tokens)), key=tokens.__getitem__)
    lcp = np.zeros(len(tokens), dtype=np.int32)
    for k in range(1, len(order)):
        a, b = tokens[order[k - 1]], tokens[order[k]]
        n = min(len(a), len(b))
        j = 0
        while j < n and a[j] == b[j]:
            j += 1
        lcp[k] = j
    return _frozen(np.array(order, dtype=np.int32)), _frozen(lcp)


def _gpt2_byte_table() -> dict[int, int]:
    """str.translate table: GPT-2 byte-level character -> the code point of its byte.

    Code points below 256 that are not in the byte-level alphabet (a raw space, control
    characters) map to U+FFFF so that encoding to latin-1 fails: `tokenizers` then keeps the
    token's UTF-8 text, and so do we.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[256 + extra] = b
            extra += 1
    for c in range(256):
        if c not in printable:
            table[c] = 0xFFFF
    return table


_GPT2_TABLE = _gpt2_byte_table()


def _config(component: Any) -> dict | None:
    """JSON config of a tokenizers normalizer / pre-tokenizer / decoder (None when absent)."""
    if component is None:
        return None
    return json.loads(component.__getstate__())


def _flatten(node: dict | None, key: str) -> list[dict]:
    if node is None:
        return []
    if node.get("type") == "Sequence":
        return [leaf for child in node.get(key, []) for leaf in _flatten(child, key)]
    return [node]


class _Decoding:
    """How one token's text becomes bytes, read from a `tokenizers.Tokenizer`'s configuration."""

    def __init__(self, backend: Any) -> None:
        decoders = _flatten(_config(backend.decoder), "decoders")
        normalizers = _flatten(_config(backend.normalizer), "normalizers")
        pre_tokenizers = _flatten(_config(backend.pre_tokenizer), "pretokenizers")
        # Per-token steps, in decoder order: ("replace", old, new), ("strip", ch, start, stop),
        # ("bytelevel",), ("bytefallback",). After Fuse only single-character replacements
        # still act per token; a Strip there only trims the ends of a whole text.
        self.steps: list[tuple] = []
        fused = False
        for d in decoders:
            kind = d.get("type")
            if kind == "Fuse":
                fused = True
            elif kind == "ByteLevel":
                self.steps.append(("bytelevel",))
            elif kind == "ByteFallback":
                self.steps.append(("bytefallback",))
            elif kind == "Replace":
                pattern = d.get("pattern", {})
                if "String" not in pattern:
                    raise VocabularyError(
                        f"Vocabulary.from_tokenizer: decoder Replace with pattern {pattern} is "
                        f"not supported (only plain-string patterns)")
                if fused and len(pattern["String"]) != 1:
                    raise VocabularyError(
                        "Vocabulary.from_tokenizer: a multi-character decoder Replace after "
                        "Fuse can span tokens; token bytes would not be well defined")
                self.steps.append(("replace", pattern["String"], d.get("content", "")))
            elif kind == "Metaspace":
                self.steps.append(("replace", d.get("replacement", "\u2581"), " "))
            elif kind == "Strip":
                if not fused:
                    self.steps.append(("strip", d.get("content", " "), d.get("start", 0),
                                       d.get("stop", 0)))
            else:
                raise VocabularyError(
                    f"Vocabulary.from_tokenizer: decoder type {kind!r} is not supported (token "
                    f"bytes are exact only for byte-level, SentencePiece-style and byte-fallback "
                    f"decoders)")
        # Encoding-side evidence: the space marker a normalizer or pre-tokenizer writes.
        self.space_marker: str | None = None
        self.adds_prefix_space = False
        for n in normalizers:
            if (n.get("type") == "Replace" and n.get("pattern", {}).get("String") == " "
                    and n.get("content")):
                self.space_marker = n["content"]
            elif n.get("type") == "Prepend" and n.get("prepend"):
                self.adds_prefix_space = True
        byte_level_pre = False
        for p in pre_tokenizers:
            if p.get("type") == "Metaspace":
                self.space_marker = self.space_marker or p.get("replacement", "\u2581")
                scheme = p.get("prepend_scheme", "always" if p.get("add_prefix_space") else "never")
                self.adds_prefix_space |= scheme in ("always", "first")
            elif p.get("type") == "ByteLevel":
                byte_level_pre = True
                self.adds_prefix_space |= bool(p.get("add_prefix_space"))
        text_steps = [s[0] for s in self.steps if s[0] != "bytefallback"]
        byte_level = "bytelevel" in text_steps
        if byte_level and text_steps[-1] != "bytelevel":
            raise VocabularyError(
                "Vocabulary.from_tokenizer: decoder steps after ByteLevel are not supported")
        if not self.steps:
            # No decoder: fall back on what encoding does, or refuse.
            if byte_level_pre:
                self.steps.append(("bytelevel",))
            elif self.space_marker:
                self.steps.append(("replace", self.space_marker, " "))
            else:
                raise VocabularyError(
                    "Vocabulary.from_tokenizer: the tokenizer has no decoder and neither a "
                    "byte-level nor a space-marker pre-tokenizer/normalizer; cannot tell which "
                    "bytes its tokens stand for")
        elif byte_level and self.space_marker:
            raise VocabularyError(
                "Vocabulary.from_tokenizer: byte-level decoder combined with a space-marker "
                f"normalizer/pre-tokenizer ({self.space_marker!r}); unsupported mix")
        # A byte-fallback model emits <0xNN> for byte NN whatever its decoder says.
        if getattr(backend.model, "byte_fallback", False) and not any(
                s[0] == "bytefallback" for s in self.steps):
            self.steps.insert(0, ("bytefallback",))

    def apply(self, texts: list[str], vocab: dict[str, int]) -> list[bytes]:
        """Bytes of each token text (texts[i] is the model's text for id i, "" for none)."""
        # Byte-fallback tokens are exactly <0xNN>, which no other step changes, so they are found
        # by lookup (any hex case, as tokenizers accepts) and patched in at the end.
        fallback: dict[int, int] = {}
        if any(step[0] == "bytefallback" for step in self.steps):
            for b in range(256):
                hi, lo = f"{b:02X}", f"{b:02x}"
                for h in {hi, lo, hi[0] + lo[1], lo[0] + hi[1]}:
                    i = vocab.get(f"<0x{h}>")
                    if i is not None:
                        fallback[i] = b
        text_steps = [step for step in self.steps if step[0] != "bytefallback"]
        if all(step[0] == "replace" for step in text_steps):  # the common SentencePiece case
            out = _replace_and_encode_all(texts, [step[1:] for step in text_steps])
        else:
            items, out = texts, None
            for step in text_steps:  # ByteLevel, if present, is the last step (see __init__)
                if step[0] == "replace":
                    items = [t.replace(step[1], step[2]) for t in items]
                elif step[0] == "strip":
                    items = [_strip(t, *step[1:]) for t in items]
                else:
                    out = _byte_level_all(items)
            if out is None:
                out = _replace_and_encode_all(items, [])
        for i, b in fallback.items():
            out[i] = bytes([b])
        return out


# Whole-vocabulary string operations run once over the joined texts (C speed, not a Python loop
# per token) whenever the separator occurs in no token; otherwise token by token.
_SEP = "\x00"


def _joined(items: list[str]) -> str | None:
    text = _SEP.join(items)
    return text if text.count(_SEP) == len(items) - 1 else None


def _replace_and_encode_all(items: list[str], replacements: list[tuple[str, str]]) -> list[bytes]:
    """UTF-8 of every item after the (old, new) string replacements, in order."""
    text = _joined(items)
    if text is None or any(not old or _SEP in old + new for old, new in replacements):
        for old, new in replacements:
            items = [t.replace(old, new) for t in items]
        return [t.encode("utf-8") for t in items]
    for old, new in replacements:
        text = text.replace(old, new)
    return text.encode("utf-8").split(_SEP.encode())


def _byte_level_all(items: list[str]) -> list[bytes]:
    # In byte-level text one character is one byte, so the joined bytes split by text lengths.
    try:
        data = "".join(items).translate(_GPT2_TABLE).encode("latin-1")
    except UnicodeEncodeError:
        return [_byte_level(t) for t in items]
    ends = list(itertools.accumulate(map(len, items)))
    return list(map(data.__getitem__, map(slice, [0, *ends[:-1]], ends)))


def _byte_level(text: str) -> bytes:
    try:
        return text.translate(_GPT2_TABLE).encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")  # not byte-level text (e.g. an added token): as tokenizers does


def _strip(text: str, ch: str, start: int, stop: int) -> str:
    lo = 0
    while lo < min(start, len(text)) and text[lo] == ch:
        lo += 1
    hi = len(text)
    while len(text) - hi < stop and hi > lo and text[hi - 1] == ch:
        hi -= 1
    return text[lo:hi]


def _from_tokenizers(backend: Any) -> tuple[list[bytes], set[int], bool]:
    decoding = _Decoding(backend)
    model_vocab: dict[str, int] = backend.get_vocab(with_added_tokens=False)
    added = backend.get_added_tokens_decoder()
    n = max(max(model_vocab.values(), default=-1), max(added, default=-1)) + 1
    ids = np.fromiter(model_vocab.values(), dtype=np.int64, count=len(model_vocab))
    order = np.argsort(ids)
    if len(ids) > 1 and np.array_equal(ids[order], np.arange(len(ids))):
        # ids 0..m-1 (added tokens may follow): reorder at C speed
        texts = list(operator.itemgetter(*order.tolist())(list(model_vocab)))
        texts += [""] * (n - len(texts))
    else:  # ids with holes: fill one by one
        texts = [""] * n
        for text, i in model_vocab.items():
            texts[i] = text
    tokens = decoding.apply(texts, model_vocab)
    special: set[int] = set()
    for i, tok in added.items():
        if tok.special:
            special.add(i)
        elif model_vocab.get(tok.content) != i:
            # An added token outside the model's vocabulary is matched in the raw text, or in
            # the normalized text (where spaces are the space marker) when `normalized`.
            content = tok.content
            if tok.normalized and decoding.space_marker:
                content = content.replace(decoding.space_marker, " ")
            tokens[i] = content.encode("utf-8")
    return tokens, special, decoding.adds_prefix_space


def _from_sentencepiece(tokenizer: Any) -> tuple[list[bytes], set[int], bool]:
    sp = tokenizer.sp_model
    pieces = sp.get_piece_size()
    tokens: list[bytes] = []
    special: set[int] = set()
    for i in range(pieces):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            special.add(i)
            tokens.append(b"")
        elif sp.is_byte(i):
            tokens.append(bytes([int(sp.id_to_piece(i)[3:5], 16)]))
        else:
            tokens.append(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    if added:
        tokens += [b""] * max(0, max(added) + 1 - len(tokens))
    for i, tok in added.items():
        if tok.special:
            special.add(i)
        elif i >= pieces:
            tokens[i] = tok.content.encode("utf-8")
    probe = sp.encode("a", out_type=str)
    adds_prefix = bool(probe) and probe[0].startswith("\u2581")
    return tokens, special, adds_prefix
