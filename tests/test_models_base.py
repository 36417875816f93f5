"""Base-model loading: LoRA merging against an unmerged forward, adapter errors, atomic conversion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from octogram.octopus_models import base
from octogram.octopus_models.base import AdapterError, ModelLoadError, apply_lora, load_model


def _tiny_model_dir(path: Path) -> Path:
    """A random 2-layer Llama with a word-level tokenizer, saved as a HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(path)
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(60)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>", unk_token="<unk>").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return _tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _write_adapter(path: Path, model, targets, r=4, alpha=8.0, prefix="base_model.model.",
                   rslora=False, seed=1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    tensors, pairs = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            a = torch.randn(r, module.in_features, generator=gen) * 0.2
            b = torch.randn(module.out_features, r, generator=gen) * 0.2
            tensors[f"{prefix}{name}.lora_A.weight"] = a
            tensors[f"{prefix}{name}.lora_B.weight"] = b
            pairs[name] = (a, b)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps(
        {"r": r, "lora_alpha": alpha, "target_modules": list(targets), "use_rslora": rslora}))
    return pairs


@pytest.mark.parametrize("prefix, rslora", [("base_model.model.", False), ("", True)])
def test_merged_adapter_equals_unmerged_lora_forward(tiny_dir, tmp_path, prefix, rslora):
    base_model, _ = load_model(tiny_dir, quiet=True)
    r, alpha = 4, 8.0
    pairs = _write_adapter(tmp_path / "adapter", base_model, ["q_proj", "v_proj", "down_proj"],
                           r=r, alpha=alpha, prefix=prefix, rslora=rslora)
    scale = alpha / math.sqrt(r) if rslora else alpha / r

    # Reference: the base model with the LoRA branch added at run time, x A^T B^T scaled.
    modules = dict(base_model.named_modules())
    hooks = [modules[name].register_forward_hook(
        lambda mod, inp, out, a=a, b=b: out + scale * (inp[0] @ a.T @ b.T))
        for name, (a, b) in pairs.items()]
    ids = torch.randint(4, 64, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = base_model(ids).logits
        for h in hooks:
            h.remove()
        plain = base_model(ids).logits
    merged, _ = load_model(tiny_dir, adapter=tmp_path / "adapter" / "adapter_model.safetensors",
                           quiet=True)
    with torch.no_grad():
        got = merged(ids).logits
    assert not torch.allclose(plain, expected, atol=1e-3)  # the adapter does change the output
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_adapter_shape_mismatch_names_the_module_and_changes_nothing(tiny_dir, tmp_path):
    model, _ = load_model(tiny_dir, quiet=True)
    _write_adapter(tmp_path, model, ["q_proj", "v_proj"], r=4)
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    last = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"  # merged last
    tensors[last] = tensors[last][:, :3].contiguous()
    save_file(tensors, str(tmp_path / "adapter_model.safetensors"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterError, match=r"model\.layers\.1\.self_attn\.v_proj"):
        apply_lora(model, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(use_dora=True), "use_dora"),
    (lambda c: c.update(target_modules=["k_proj"]), "not in target_modules"),
    (lambda c: c.pop("lora_alpha"), "lora_alpha"),
])
def test_adapter_config_problems_are_refused(tiny_dir, tmp_path, edit, message):
    model, _ = load_model(tiny_dir, quiet=True)
    _write_adapter(tmp_path, model, ["q_proj"])
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    edit(config)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterError, match=message):
        apply_lora(model, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_adapter_with_unknown_tensor_is_refused(tiny_dir, tmp_path):
    model, _ = load_model(tiny_dir, quiet=True)
    _write_adapter(tmp_path, model, ["q_proj"])
    save_file({"base_model.model.lm_head.lora_embedding_A": torch.zeros(2, 2)},
              str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="lora_embedding_A"):
        apply_lora(model, tmp_path)


def test_missing_model_folder_is_a_typed_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope", quiet=True)
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path, quiet=True)


def test_interrupted_conversion_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))

    def killed(packaged, out, *, quiet):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(base, "_convert_gguf", killed)
    with pytest.raises(KeyboardInterrupt):
        base.default_model_dir(quiet=True)
    assert list((tmp_path / "models").iterdir()) == []

    def whole(packaged, out, *, quiet):
        (out / "config.json").write_text("{}")
        (out / base._MARKER).write_text("{}")

    monkeypatch.setattr(base, "_convert_gguf", whole)
    target = base.default_model_dir(quiet=True)
    assert target.parent == tmp_path / "models" and (target / "config.json").is_file()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [target.name]


def _fake_conversion(calls: list):
    def convert(packaged, out, *, quiet):
        calls.append(out)
        (out / "config.json").write_text("{}")
        save_file({"w": torch.arange(64, dtype=torch.float32)}, str(out / "model.safetensors"))
    return convert


@pytest.mark.parametrize("damage, problem", [
    ("cut", "model.safetensors"),
    ("resized", "config.json: 3 bytes, converted as 2"),
    ("no marker", None),
])
def test_damaged_model_cache_is_converted_again(tmp_path, monkeypatch, capsys, damage, problem):
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))
    calls: list = []
    monkeypatch.setattr(base, "_convert_gguf", _fake_conversion(calls))
    target = base.default_model_dir(quiet=True)
    assert base.model_cache_problem(target) is None
    assert base.default_model_dir(quiet=True) == target and len(calls) == 1  # a hit
    weights = target / "model.safetensors"
    if damage == "cut":
        weights.write_bytes(weights.read_bytes()[:-10])
    elif damage == "resized":
        (target / "config.json").write_text("{ }")
    else:
        (target / base._MARKER).unlink()
    if problem is not None:
        assert problem in base.model_cache_problem(target)
    assert base.default_model_dir(quiet=True) == target and len(calls) == 2
    assert base.model_cache_problem(target) is None
    if problem is not None:
        assert "damaged" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "models").iterdir()] == [target.name]


def test_safetensors_cut_short_is_found_from_its_header(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(10), "b": torch.ones(3)}, str(path))
    assert base._safetensors_problem(path) is None
    whole = path.read_bytes()
    for cut in (4, 20, len(whole) - 1):
        path.write_bytes(whole[:cut])
        assert base._safetensors_problem(path) is not None, cut
    path.write_bytes(whole + b"\0")
    assert "its header needs" in base._safetensors_problem(path)


def test_only_dead_conversion_folders_are_removed(tmp_path):
    import os
    import time

    def folder(name: str, owner: bool) -> Path:
        f = tmp_path / f".gemma-3-270m-x-{name}"
        f.mkdir()
        (f / "model.safetensors").write_bytes(b"partial")
        if owner:
            (f / base._OWNER).write_bytes(b"")
        return f

    dead = folder("killed", owner=True)
    live = folder("running", owner=True)
    held = base._lock(live / base._OWNER, create=True)  # as the converting process holds it
    recent = folder("recent-no-owner", owner=False)
    old = folder("old-no-owner", owner=False)
    day_ago = time.time() - base._STALE_S - 60
    os.utime(old, (day_ago, day_ago))
    other = tmp_path / "gemma-3-270m-x"  # a finished cache is never a candidate
    other.mkdir()
    try:
        removed = base.remove_stale_conversions(tmp_path)
    finally:
        held.close()
    assert sorted(removed) == sorted([dead, old])
    assert live.is_dir() and recent.is_dir() and other.is_dir()
    assert not dead.exists() and not old.exists()


@pytest.fixture
def no_weights(monkeypatch):
    """Loading model weights fails the test: these errors must come before it."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the model weights were loaded before the error was found")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def _tiny_adapter(tiny_dir, path: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_dir))
    _write_adapter(path, model, ["q_proj"])
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\xff" * 8 + b[8:], "header of 18446744073709551615 bytes runs past the end"),
    (lambda b: b[: len(b) // 2], "its header needs"),
    (lambda b: b[:5], "too short for a safetensors header"),
    (lambda b: b[:8] + b"{" * (len(b) - 8), "unreadable safetensors header"),
])
def test_corrupt_adapter_weights_are_an_adapter_error_before_loading(
        tiny_dir, tmp_path, no_weights, damage, message):
    adapter = _tiny_adapter(tiny_dir, tmp_path / "adapter")
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(AdapterError, match=message):
        load_model(tiny_dir, adapter=adapter, quiet=True)
    with pytest.raises(AdapterError, match=message):
        apply_lora(torch.nn.Linear(2, 2), adapter)


@pytest.mark.parametrize("config, message", [
    ("[1, 2]", "expected a JSON object, got a JSON list"),
    ('"r"', "expected a JSON object, got a JSON str"),
    ("{", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ({"r": "4", "lora_alpha": 8}, "'r' must be an integer, got '4'"),
    ({"r": 4.5, "lora_alpha": 8}, "'r' must be an integer"),
    ({"r": True, "lora_alpha": 8}, "'r' must be an integer"),
    ({"r": 0, "lora_alpha": 8}, "'r' must be positive"),
    ({"r": 4, "lora_alpha": "8"}, "'lora_alpha' must be a number"),
    ({"r": 4, "lora_alpha": 1e999}, "'lora_alpha' must be finite"),
    ({"r": 4}, "'lora_alpha' is missing"),
    ({"r": 4, "lora_alpha": 8, "target_modules": 5}, "'target_modules' must be a list"),
    ({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", 1]}, "'target_modules' must be"),
    ({"r": 4, "lora_alpha": 8, "use_rslora": "yes"}, "'use_rslora' must be true or false"),
])
def test_bad_adapter_config_is_an_adapter_error_before_loading(tiny_dir, tmp_path, no_weights,
                                                               config, message):
    adapter = _tiny_adapter(tiny_dir, tmp_path / "adapter")
    target = adapter / "adapter_config.json"
    if isinstance(config, dict):
        target.write_text(json.dumps(config))
    elif isinstance(config, bytes):
        target.write_bytes(config)
    else:
        target.write_text(config)
    with pytest.raises(AdapterError, match=message):
        load_model(tiny_dir, adapter=adapter, quiet=True)
    with pytest.raises(AdapterError, match=message):
        apply_lora(torch.nn.Linear(2, 2), adapter)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "config.json").write_text("[1, 2]"), "holds a JSON list, not an object"),
    (lambda d: (d / "config.json").write_text("{"), "config.json is not readable JSON"),
    (lambda d: (d / "config.json").write_bytes(b"\xff"), "config.json is not readable JSON"),
    (lambda d: (d / "tokenizer.json").unlink(), "has no tokenizer files"),
])
def test_broken_model_folder_is_a_model_load_error_before_loading(tiny_dir, tmp_path, no_weights,
                                                                  damage, message):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    damage(folder)
    with pytest.raises(ModelLoadError, match=message):
        load_model(folder, quiet=True)


def test_tokenizer_of_only_special_tokens_is_refused(tmp_path, no_weights):
    """A Gemma folder whose tokenizer.json is gone still builds a GemmaTokenizer, of its 5
    special tokens; a vocabulary file of another name must not hide that."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "backend": "tokenizers", "bos_token": "<bos>",
        "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}))
    (folder / "vocab.txt").write_text("")  # not a file GemmaTokenizer reads
    with pytest.raises(ModelLoadError, match="holds only its 5 special tokens"):
        load_model(folder, quiet=True)
