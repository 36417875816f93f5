"""LoRA fine-tuning on a tiny random causal LM (CPU, fp32, seconds): the target-only loss
against full logits, the loss falling, resume equal to an uninterrupted run, the adapter and
card round-tripping through `load_model`, and config errors."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from octogram.grammars import FunctionCall, FunctionSpec, Parameter  # noqa: E402
from octogram.octopus_models import finetune as ft  # noqa: E402
from octogram.octopus_models.base import load_model  # noqa: E402
from octogram.octopus_models.data.record import answer_text  # noqa: E402
from octogram.octopus_models.prompt import (PROMPT_FORMAT_VERSION, render_prompt,  # noqa: E402
                                            render_target)

END = "<eos>"
SPEC = FunctionSpec("get_weather", "Current weather for a city. Uses the public feed.", (
    Parameter("city", {"type": "string"}, description="City name."),
    Parameter("units", {"type": "string", "enum": ["c", "f"]}, required=False, default="c",
              description="Temperature units."),
))
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito"]


def _rows() -> list[dict]:
    """8 rows in the `octogram dataset build` format: 6 positives and 2 negatives."""
    queries = [(f"What is the weather in {c} today", (FunctionCall("get_weather", {"city": c}),))
               for c in CITIES]
    queries += [("Tell me a joke about cats", ()), ("Book a table for two", ())]
    rows = []
    for i, (query, calls) in enumerate(queries):
        rows.append({
            "prompt": render_prompt(query, [SPEC]),
            "target": render_target(answer_text(calls, query), END),
            "query": query, "candidates": [SPEC.to_tool()],
            "calls": [{"name": c.name, "arguments": dict(c.arguments)} for c in calls],
            "source": "hand" if i % 2 else "made", "api": "weather", "origin": f"test:{i}",
            "kind": "positive" if calls else "negative", "stage": 0 if i < 4 else 1,
            "prompt_format": PROMPT_FORMAT_VERSION,
        })
    return rows


def _tiny_model_dir(path: Path, texts: list[str]) -> Path:
    """A random 2-layer Llama with a word-level tokenizer knowing every word of `texts`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    words = ["<pad>", "<bos>", END, "<unk>"]
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text.replace(END, " ")):
            if piece not in words:
                words.append(piece)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                       special_tokens=[("<bos>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                            eos_token=END, unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # logits of a few units (not ~0.1), so that LoRA can move them
        model.lm_head.weight.mul_(25)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread is ~10x faster than two fighting over busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _rows()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, rows) -> Path:
    return _tiny_model_dir(tmp_path_factory.mktemp("tiny"),
                           [r["prompt"] + r["target"] for r in rows])


@pytest.fixture
def data(tmp_path, rows) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _fresh(tiny_dir):
    """A new model from the saved folder (finetune wraps, and so mutates, the model it gets)."""
    return load_model(tiny_dir, quiet=True)


def _config(data: Path, out: Path, **kw) -> ft.TrainConfig:
    base = dict(rank=4, alpha=8, dropout=0.0, lr=1e-2, batch_size=2, grad_accum=1, epochs=1.0,
                warmup_steps=1, seed=0, bf16="off", checkpoint_every=100, eval_every=1000,
                eval_rows=0)
    base.update(kw)
    return ft.TrainConfig(data=str(data), out=str(out), **base)


def _quiet(_message: str) -> None:
    pass


def _lora(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


# ------------------------------------------------------------------------------ answer_loss

def _gemma3(vocab: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(1)
    config = Gemma3TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              head_dim=8, max_position_embeddings=256, sliding_window=16,
                              final_logit_softcapping=2.0, pad_token_id=0,
                              tie_word_embeddings=False)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40)  # logits of a few units, where the cap bites
    return model


def _reference_loss(model, ids, attn, labels, cap_off: bool = False) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits.float()
    if cap_off:  # undo the soft-cap: a check that the cap matters in this test
        cap = model.config.final_logit_softcapping
        logits = torch.atanh(logits / cap) * cap
    where = labels[:, 1:]
    return torch.nn.functional.cross_entropy(logits[:, :-1][where], ids[:, 1:][where])


@pytest.mark.parametrize("kind", ["llama", "llama-peft", "gemma3-softcap"])
def test_answer_loss_equals_full_logits_loss_with_padding(tiny_dir, rows, kind):
    model, tokenizer = _fresh(tiny_dir)
    if kind == "gemma3-softcap":
        model = _gemma3(len(tokenizer))
    elif kind == "llama-peft":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(2)
        with ft._quiet_peft():  # peft's own deprecated call into transformers, as finetune() does
            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8,
                                                     target_modules=["q_proj", "v_proj"],
                                                     task_type="CAUSAL_LM", init_lora_weights=False))
        model.eval()
    encoded = ft._encode(tokenizer, rows, 512, Counter())
    batch = [0, 6, 7]  # positives and negatives: different lengths, so the batch is padded
    ids, attn, labels = ft._collate(encoded, batch, tokenizer.pad_token_id, "cpu")
    assert (attn == 0).any()
    with torch.no_grad():
        got, n = ft.answer_loss(model, ids, attn, labels)
        expected = _reference_loss(model, ids, attn, labels)
        assert n == int(labels[:, 1:].sum()) == sum(len(encoded[i][0]) - encoded[i][1] for i in batch)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        # padding changes nothing: the token-weighted mean of the rows taken one at a time
        alone = [ft.answer_loss(model, *ft._collate(encoded, [i], 0, "cpu")) for i in batch]
        torch.testing.assert_close(sum(l * k for l, k in alone) / n, got, atol=1e-5, rtol=1e-5)
        if kind == "gemma3-softcap":
            assert abs(float(_reference_loss(model, ids, attn, labels, cap_off=True)) - float(got)) > 1e-3


def test_targets_are_the_call_and_the_end_token(tiny_dir, rows):
    _, tokenizer = _fresh(tiny_dir)
    encoded = ft._encode(tokenizer, rows, 512, Counter())
    ids, start, index = encoded[0]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[start:]).replace(" ", "") == rows[index]["target"].replace(" ", "")
    assert tokenizer.unk_token_id not in ids


# ------------------------------------------------------------------------------ training

def _steps(tokenizer, rows, config) -> int:
    """Optimizer steps of a run, from the module's own batching (batches never mix stages)."""
    encoded = ft._encode(tokenizer, rows, config.max_len, Counter())
    stages = [int(rows[i].get("stage", 0)) for _, _, i in encoded]
    batches = ft._batches(encoded, stages, config.batch_size, config.seed)
    return max(1, math.ceil(math.ceil(len(batches) / config.grad_accum) * config.epochs))


@pytest.fixture(scope="module")
def trained(tiny_dir, rows, tmp_path_factory):
    """One short run (8 steps, lr 2e-2), shared by the loss and the adapter tests."""
    tmp = tmp_path_factory.mktemp("trained")
    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, tokenizer = _fresh(tiny_dir)
    encoded = ft._encode(tokenizer, rows, 512, Counter())
    before = ft._val_loss(model, encoded, 0, 8, "cpu", lambda: torch.autocast("cpu", enabled=False))
    config = _config(data, tmp / "out", val_data=str(data), val_rows=8, lr=2e-2, batch_size=4,
                     epochs=4, eval_every=2)
    out = ft.finetune(config, model=model, tokenizer=tokenizer, log=_quiet)
    return model, tokenizer, config, out, before


def test_training_lowers_the_loss(trained, rows):
    _, tokenizer, config, out, before = trained
    card = json.loads((out / ft.CARD_NAME).read_text())
    history = card["history"]
    assert card["steps"] == _steps(tokenizer, rows, config) == 8
    assert [h["step"] for h in history] == [2, 4, 6, 8]
    val = [h["val_loss"] for h in history]
    assert val[-1] < 0.6 * before, (before, val)
    assert val == sorted(val, reverse=True), val
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert card["final_train_loss"] < 0.8 * before
    lines = (out / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history


@pytest.mark.parametrize("dropout, stop_after, checkpoint_every", [
    (0.0, 2, 100),   # the only checkpoint is the interruption's
    (0.1, 3, 2),     # dropout draws from the restored RNG; a periodic checkpoint came before
])
def test_resumed_run_equals_uninterrupted_run(tiny_dir, rows, data, tmp_path, dropout,
                                              stop_after, checkpoint_every):
    kw = dict(dropout=dropout, batch_size=2, grad_accum=2, epochs=2, warmup_steps=2,
              checkpoint_every=checkpoint_every, eval_every=2)
    model_a, tok = _fresh(tiny_dir)
    total = _steps(tok, rows, _config(data, tmp_path / "a", **kw))
    assert total == 4 > stop_after
    ft.finetune(_config(data, tmp_path / "a", **kw), model=model_a, tokenizer=tok, log=_quiet)

    model_b1, tok = _fresh(tiny_dir)
    out_b = tmp_path / "b"
    ft.finetune(_config(data, out_b, **kw), model=model_b1, tokenizer=tok, log=_quiet,
                stop_after=stop_after)
    assert (out_b / "checkpoint" / "state.pt").is_file()
    assert not (out_b / "adapter_model.safetensors").exists()
    state = torch.load(out_b / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == stop_after and len(state["losses"]) == stop_after

    model_b2, tok = _fresh(tiny_dir)
    messages: list[str] = []
    ft.finetune(_config(data, out_b, **kw), model=model_b2, tokenizer=tok, log=messages.append)
    assert any(f"at step {stop_after}/{total}" in m for m in messages), messages
    assert not (out_b / "checkpoint").exists()

    a, b = _lora(model_a), _lora(model_b2)
    assert a and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert not all(torch.equal(a[k], _lora(model_b1)[k]) for k in a)  # B did train after resuming
    fa = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    fb = load_file(str(out_b / "adapter_model.safetensors"))
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    card_a = json.loads((tmp_path / "a" / ft.CARD_NAME).read_text())
    card_b = json.loads((out_b / ft.CARD_NAME).read_text())
    assert card_a["final_train_loss"] == card_b["final_train_loss"]
    assert card_a["steps"] == card_b["steps"] == total
    assert card_a["history"] == card_b["history"]  # entries before the interruption too
    lines = (out_b / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == card_b["history"]


# ------------------------------------------------------------------------------ the adapter

def test_adapter_round_trips_through_load_model(trained, tiny_dir, rows):
    model, tokenizer, config, out, _ = trained
    assert {p.name for p in out.iterdir()} >= {"adapter_model.safetensors", "adapter_config.json",
                                               ft.CARD_NAME}
    assert not (out / "checkpoint").exists()
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert tensors and all(t.dtype == torch.bfloat16 for t in tensors.values())
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == 8
    assert sorted(adapter_config["target_modules"]) == sorted(ft.TARGET_MODULES)
    assert len(tensors) == 2 * 2 * len(ft.TARGET_MODULES)  # A and B, 2 layers, 7 projections

    card = json.loads((out / ft.CARD_NAME).read_text())
    assert card["prompt_format"] == PROMPT_FORMAT_VERSION
    assert card["steps"] == 8
    assert card["data"]["file"] == config.data
    assert card["data"]["rows"] == card["data"]["trained_rows"] == len(rows)
    assert card["data"]["skipped"] == {}
    assert card["data"]["kinds"] == {"positive": 6, "negative": 2}
    assert card["data"]["sources"] == {"made": 4, "hand": 4}
    assert card["hyperparameters"]["lr"] == 2e-2 and card["hyperparameters"]["rank"] == 4
    assert card["bf16"] is False and card["target_modules"] == sorted(ft.TARGET_MODULES)

    # The trained PEFT model (its LoRA weights rounded to bf16, as written) against the merge.
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(p.to(torch.bfloat16).float())
    encoded = ft._encode(tokenizer, rows, 512, Counter())
    ids, attn, _ = ft._collate(encoded, [0, 7], 0, "cpu")
    merged, _ = load_model(tiny_dir, adapter=out, quiet=True)
    plain, _ = load_model(tiny_dir, quiet=True)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=attn).logits
        got = merged(input_ids=ids, attention_mask=attn).logits
        untrained = plain(input_ids=ids, attention_mask=attn).logits
    assert (untrained - expected).abs().max() > 0.1  # training changed the model
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------ errors

def test_missing_data_file_is_refused(tmp_path, tiny_dir):
    model, tokenizer = _fresh(tiny_dir)
    with pytest.raises(ValueError, match=r"training data .*nope\.jsonl does not exist"):
        ft.finetune(_config(tmp_path / "nope.jsonl", tmp_path / "out"), model=model,
                    tokenizer=tokenizer, log=_quiet)
    with pytest.raises(ValueError, match=r"validation data .*gone\.jsonl does not exist"):
        _config(Path(__file__), tmp_path / "out", val_data=str(tmp_path / "gone.jsonl")).check()


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "batch_size must be at least 1, got 0"),
    ("grad_accum", 0, "grad_accum must be at least 1"),
    ("rank", -1, "rank must be at least 1"),
    ("lr", 0.0, "lr and epochs must be positive"),
    ("epochs", -1.0, "lr and epochs must be positive"),
    ("bf16", "yes", "bf16 must be auto, on or off"),
])
def test_bad_numbers_are_refused(data, tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        ft.finetune(_config(data, tmp_path / "out", **{field: value}), log=_quiet)


def test_rows_of_another_prompt_format_are_refused(rows, tmp_path, tiny_dir):
    path = tmp_path / "old.jsonl"
    old = [dict(r) for r in rows]
    old[3]["prompt_format"] = PROMPT_FORMAT_VERSION - 1
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    model, tokenizer = _fresh(tiny_dir)
    with pytest.raises(ValueError, match=rf"old\.jsonl:4: prompt format {PROMPT_FORMAT_VERSION - 1}.*rebuild"):
        ft.finetune(_config(path, tmp_path / "out"), model=model, tokenizer=tokenizer, log=_quiet)


@pytest.mark.parametrize("text, message", [
    ("", "no rows"),
    ('{"prompt": "p"}\n', "string 'prompt' and 'target'"),
    ("not json\n", "not a JSON row"),
])
def test_malformed_row_files_are_refused(tmp_path, text, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        ft.read_rows(path)


def test_rows_longer_than_max_len_are_skipped_and_counted(tiny_dir, data, tmp_path):
    model, tokenizer = _fresh(tiny_dir)
    with pytest.raises(ValueError, match="no row .* fits in max_len=5"):
        ft.finetune(_config(data, tmp_path / "none", max_len=5), model=model, tokenizer=tokenizer,
                    log=_quiet)
    lengths = sorted(len(e[0]) for e in ft._encode(tokenizer, _rows(), 512, Counter()))
    cut = lengths[3]  # the 4 shortest rows fit (lengths may tie: count exactly)
    fits = sum(1 for n in lengths if n <= cut)
    model, tokenizer = _fresh(tiny_dir)
    ft.finetune(_config(data, tmp_path / "some", max_len=cut, epochs=1), model=model,
                tokenizer=tokenizer, log=_quiet)
    card = json.loads((tmp_path / "some" / ft.CARD_NAME).read_text())
    assert card["data"]["trained_rows"] == fits
    assert card["data"]["skipped"] == {"longer than max_len": 8 - fits}


def test_training_continues_from_an_adapter(trained, tiny_dir, rows, data, tmp_path):
    """`init_adapter` starts from the adapter's weights and takes its rank and alpha."""
    _, _, _, first, _ = trained
    model, tokenizer = _fresh(tiny_dir)
    config = _config(data, tmp_path / "next", init_adapter=str(first), rank=8, alpha=16,
                     lr=1e-12, epochs=0.25)
    out = ft.finetune(config, model=model, tokenizer=tokenizer, log=_quiet)
    before = load_file(str(first / "adapter_model.safetensors"))
    after = load_file(str(out / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    # lr ~0: one step leaves the adapter's weights (bf16 on disk both times) where they were
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    card = json.loads((out / ft.CARD_NAME).read_text())
    assert card["init_adapter"] == str(first)


def test_a_bad_init_adapter_is_refused_before_loading(data, tmp_path, trained):
    with pytest.raises(ValueError, match=r"is not an adapter folder"):
        _config(data, tmp_path / "o", init_adapter=str(tmp_path)).check()
    _, _, _, first, _ = trained
    other = tmp_path / "old"
    other.mkdir()
    for f in first.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    card = json.loads((other / ft.CARD_NAME).read_text())
    card["prompt_format"] = PROMPT_FORMAT_VERSION - 1
    (other / ft.CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"trained for prompt format"):
        _config(data, tmp_path / "o", init_adapter=str(other)).check()
