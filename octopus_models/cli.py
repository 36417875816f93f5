"""The `octogram` command: `call` (one query), `generate` (a JSONL batch), `grammar`.

Results go to stdout, progress and diagnostics to stderr. Bad input (a missing file, an API
document that cannot be read, a malformed JSONL row, a bad option) is one line on stderr and
exit status 2; `call` exits with 1 when the output is not a valid call (possible only with
`--no-mask`, or when even the shortest completion of the call does not fit in
`--max-new-tokens`: a masked answer that would run past it is closed with that completion).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "InputError"]


class InputError(Exception):
    """Bad user input; reported as one line, exit status 2."""


def _err(message: str) -> None:
    print(f"octogram: error: {message}", file=sys.stderr, flush=True)


def _info(message: str) -> None:
    print(f"octogram: {message}", file=sys.stderr, flush=True)


def _load_functions(source: Any, where: str) -> list[Any]:
    """FunctionSpecs from an API file path or an inline tool JSON list."""
    from octogram.grammars import load

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{where}: API file {path} does not exist")
        source = path
    elif not isinstance(source, (list, dict)):
        raise InputError(f"{where}: 'functions' must be a path or a tool JSON list, got "
                         f"{type(source).__name__}")
    try:
        functions = load(source)
    except Exception as exc:  # the grammars layer's errors name the schema keyword and place
        raise InputError(f"{where}: {exc}") from exc
    if not functions:
        raise InputError(f"{where}: no functions found")
    return functions


def _call_json(calls: Sequence[Any]) -> Any:
    items = [{"name": c.name, "arguments": c.arguments} for c in calls]
    return items[0] if len(items) == 1 else items


def _generator(args: argparse.Namespace) -> Any:
    from .base import AdapterError, ModelLoadError, load_model
    from .generate import OctopusGenerator

    if args.model is not None and not Path(args.model).is_dir():
        raise InputError(f"--model: {args.model} is not a folder")
    if args.adapter is not None and not Path(args.adapter).exists():
        raise InputError(f"--adapter: {args.adapter} does not exist")
    try:
        model, tokenizer = load_model(args.model, adapter=args.adapter)
    except (ModelLoadError, AdapterError) as exc:
        raise InputError(str(exc)) from exc
    return OctopusGenerator(model, tokenizer, mask=not args.no_mask,
                            num_candidates=args.candidates)


def _check_options(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.candidates < 1:
        raise InputError(f"--candidates must be >= 1, got {args.candidates}")
    if args.temperature < 0:
        raise InputError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise InputError(f"--top-k must be >= 0, got {args.top_k}")
    if not 0 < args.top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1], got {args.top_p}")


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
            "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}


def _cmd_call(args: argparse.Namespace) -> int:
    functions = _load_functions(args.apis, "--apis")
    gen = _generator(args)
    offered = gen.candidates(args.query, functions)
    _info(f"{len(functions)} functions in {args.apis}; offered: "
          + ", ".join(f.name for f in offered) + ", no_relevant_function")
    start = time.perf_counter()
    result = gen.call(args.query, functions, **_sampling(args))
    seconds = time.perf_counter() - start
    _info(f"{result.num_tokens} tokens in {seconds:.2f} s ({result.forced_tokens} forced)"
          + ("" if gen.mask else ", unconstrained"))
    if result.error is not None:
        _err(f"the output is not a valid call: {result.error}")
        print(json.dumps({"text": result.text, "error": result.error}) if args.json
              else result.text.strip().replace("\n", "\\n"))
        return 1
    print(json.dumps(_call_json(result.calls)) if args.json else result.call_text)
    return 0


def _read_jsonl(path: Path) -> list[tuple[str, list[Any]]]:
    if not path.is_file():
        raise InputError(f"--input: {path} does not exist")
    requests: list[tuple[str, list[Any]]] = []
    loaded: dict[str, list[Any]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) \
                or not row["query"].strip():
            raise InputError(f"{where}: each row needs a non-empty string 'query'")
        if "functions" not in row:
            raise InputError(f"{where}: the row has no 'functions'")
        source = row["functions"]
        if isinstance(source, str):  # a path, relative to the JSONL file or the working dir
            relative = path.parent / source
            source = str(relative if relative.is_file() else Path(source))
            if source not in loaded:
                loaded[source] = _load_functions(source, where)
            functions = loaded[source]
        else:
            functions = _load_functions(source, where)
        requests.append((row["query"], functions))
    if not requests:
        raise InputError(f"--input: {path} holds no rows")
    return requests


def _cmd_generate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    requests = _read_jsonl(Path(args.input))
    gen = _generator(args)
    out = open(args.output, "w") if args.output else sys.stdout
    bar = tqdm(total=len(requests), desc="octogram: generating", unit="row", file=sys.stderr)
    tokens, valid = 0, 0
    start = time.perf_counter()
    try:
        for first in range(0, len(requests), args.batch_size):
            part = requests[first:first + args.batch_size]
            for res in gen.call_batch(part, batch_size=args.batch_size, **_sampling(args)):
                tokens += res.num_tokens
                valid += res.error is None
                out.write(json.dumps({
                    "query": res.query, "text": res.text,
                    "calls": [{"name": c.name, "arguments": c.arguments} for c in res.calls],
                    "error": res.error, "stop_reason": res.stop_reason,
                    "num_tokens": res.num_tokens}) + "\n")
            out.flush()
            bar.update(len(part))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    seconds = time.perf_counter() - start
    _info(f"{len(requests)} rows, {valid} valid calls, {tokens} tokens in {seconds:.1f} s: "
          f"{tokens / seconds:.1f} tokens/s, {len(requests) / seconds:.2f} rows/s "
          f"(batch size {args.batch_size}, grammar compiles {gen.compile_seconds:.1f} s)")
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="a Hugging Face causal-LM folder "
                   "(default: the embedded Gemma 3 270M)")
    p.add_argument("--adapter", metavar="FILE", help="a LoRA adapter (safetensors file or "
                   "folder, with adapter_config.json) merged into the model")
    p.add_argument("--no-mask", action="store_true", help="decode without grammar constraints")
    p.add_argument("--candidates", type=int, default=4, metavar="K",
                   help="functions offered per query, besides no_relevant_function (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N",
                   help="token limit; a masked call that would not fit is closed with the "
                   "grammar's shortest completion (default 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octogram", description="Grammar-constrained function calling with small models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    call = sub.add_parser("call", help="answer one query with a call to one of the APIs")
    call.add_argument("query")
    call.add_argument("--apis", required=True, metavar="FILE",
                      help="OpenAPI document, tool JSON list, or Python module of functions")
    call.add_argument("--json", action="store_true", help="print the parsed call as JSON")
    _model_options(call)
    generate = sub.add_parser("generate", help="answer a JSONL file of queries, in batches")
    generate.add_argument("--input", required=True, metavar="FILE.jsonl",
                          help='rows {"query": ..., "functions": <tool JSON list or API file>}')
    generate.add_argument("--output", metavar="FILE", help="JSONL output (default: stdout)")
    generate.add_argument("--batch-size", type=int, default=8, metavar="N")
    _model_options(generate)
    sub.add_parser("grammar", help="print the grammar of an API file (see `octogram grammar -h`)",
                   add_help=False)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Warnings about the API document (e.g. a schema keyword the grammar cannot express) are
    # diagnostics for the user, not for a developer: one line, no source location.
    print(f"octogram: warning: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    if argv[:1] == ["grammar"]:
        from octogram.grammars.cli import grammar_command

        return grammar_command(argv[1:])
    args = _parser().parse_args(argv)  # usage errors exit with status 2
    try:
        _check_options(args)
        if args.command == "call":
            return _cmd_call(args)
        return _cmd_generate(args)
    except InputError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
