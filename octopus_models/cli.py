"""The `octogram` command: `call` (one query), `generate` (a JSONL batch), `grammar`.

Results go to stdout, progress and diagnostics to stderr. Bad input (a missing file, an API
document that cannot be read, a malformed JSONL row, a bad option) is one line on stderr and
exit status 2; `call` exits with 1 when the output is not a valid call (possible only with
`--no-mask`, or when even the shortest completion of the call does not fit in
`--max-new-tokens`: a masked answer that would run past it is closed with that completion,
and a warning on stderr says so, as does `"closed_at_limit": true` in `--json` and `generate`
rows). Calls are printed in the API's own names; `call --request` prints the HTTP request of an
OpenAPI call instead and exits 1 when the answer is `no_relevant_function`. `generate` writes a
row per input row (one that fails is an error row, `"stop_reason":
"error"`) into a temporary file that replaces `--output` when the run ends (a pipe or a device,
such as `/dev/stdout`, is written to directly); an output that cannot be written (a full disk)
is one line and exit 2, leaving the old file as it was. When the reader of stdout goes away
(`octogram generate ... | head -1`), the command stops quietly with exit status 141 (128 +
SIGPIPE), as a shell reports for other tools.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
        if not path.exists():
            raise InputError(f"{where}: API file {path} does not exist")
        if path.is_dir():
            raise InputError(f"{where}: {path} is a folder, not an API file")
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
    from .prompt import functions_text_problem

    problem = functions_text_problem(functions)  # the tokenizer would refuse it mid-run
    if problem is not None:
        shown = f"{where}: {source}" if isinstance(source, Path) else where
        raise InputError(f"{shown}: {problem}")
    return functions


def _call_json(calls: Sequence[Any], grammar_calls: Sequence[Any]) -> Any:
    """Each call in the API's names, with the grammar's spelling of it under "grammar"."""
    items = [{"name": c.name, "arguments": c.arguments,
              "grammar": {"name": g.name, "arguments": g.arguments}}
             for c, g in zip(calls, grammar_calls)]
    return items[0] if len(items) == 1 else items


def _check_request_options(args: argparse.Namespace, functions: Sequence[Any]) -> None:
    """--request needs OpenAPI operations and a server to send to: checked before the model
    loads."""
    from urllib.parse import urlsplit

    if args.base_url is not None:
        parts = urlsplit(args.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"--base-url must be an absolute http(s) URL, got {args.base_url!r}")
        if not args.request:
            raise InputError("--base-url is only used with --request")
    if not args.request:
        return
    operations = [f for f in functions if f.endpoint]
    if not operations:
        raise InputError(f"--request: {args.apis} holds no HTTP operations (only an OpenAPI "
                         "document does)")
    if args.base_url is None:
        for f in operations:
            parts = urlsplit(f.server or "")
            if not parts.scheme or not parts.netloc:
                raise InputError(f"--request: {args.apis} gives no absolute server URL for "
                                 f"{f.api_name or f.name} (got {f.server!r}); pass --base-url")


def _print_requests(args: argparse.Namespace, result: Any, functions: Sequence[Any]) -> int:
    """The HTTP request of each call (exit 1 when the answer is not one: no_relevant_function,
    a value HTTP cannot carry)."""
    from octogram.grammars import GrammarError
    from octogram.grammars.api_names import find_function

    from .prompt import with_no_relevant_function

    offered = with_no_relevant_function(functions)
    requests = []
    for call in result.grammar_calls or result.calls:
        spec = find_function(call.name, offered)
        if not spec.endpoint:
            _err(f"no request to make: the answer is {result.call_text}")
            return 1
        try:
            requests.append((call.to_api(offered), call.to_request(spec, args.base_url)))
        except GrammarError as exc:
            _err(f"the call cannot be sent as a request: {exc}")
            return 1
    if args.json:
        items = [dict(r.to_dict(), call={"name": c.name, "arguments": c.arguments}) for c, r in requests]
        print(json.dumps(items[0] if len(items) == 1 else items))
    else:
        print("\n\n".join(r.to_text() for _, r in requests))
    return 0


def _generator(args: argparse.Namespace) -> Any:
    from .backends import choose_backend, load_runner
    from .base import DEFAULT_ADAPTER, ModelLoadError
    from .contrib.llamacpp import LlamaCppError
    from .generator import OctopusGenerator

    if args.model is not None and not Path(args.model).is_dir():
        raise InputError(f"--model: {args.model} is not a folder")
    if args.adapter is not None and not Path(args.adapter).exists():
        raise InputError(f"--adapter: {args.adapter} does not exist")
    if args.adapter is not None and args.no_adapter:
        raise InputError("--adapter and --no-adapter cannot be used together")
    adapter = None if args.no_adapter else (args.adapter or DEFAULT_ADAPTER)
    try:
        backend = choose_backend(args.backend, args.model)
        runner, tokenizer = load_runner(backend, model_dir=args.model, adapter=adapter)
    except ValueError as exc:  # AdapterError is one too
        raise InputError(f"--backend: {exc}" if "backend" in str(exc) else str(exc)) from exc
    except (ModelLoadError, LlamaCppError) as exc:
        raise InputError(str(exc)) from exc
    return OctopusGenerator(runner, tokenizer, mask=not args.no_mask,
                            num_candidates=args.candidates)


_INT64 = 2 ** 63  # top-k and seed travel as 64-bit integers


def _check_text(text: str, what: str) -> None:
    """A non-empty, valid text (a command-line argument in bytes that are not UTF-8 arrives
    with lone surrogates, and so does a JSON string such as "\\ud800")."""
    from .prompt import text_problem

    if not text.strip():
        raise InputError(f"{what} is empty")
    problem = text_problem(text)
    if problem is not None:
        raise InputError(f"{what} {problem}")


def _check_options(args: argparse.Namespace) -> None:
    """Every option and argument, before anything is loaded (bad ones exit 2, one line)."""
    if getattr(args, "query", None) is not None:
        _check_text(args.query, "the query")
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.candidates < 1:
        raise InputError(f"--candidates must be >= 1, got {args.candidates}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise InputError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if not 0 <= args.top_k < _INT64:
        raise InputError(f"--top-k must be in [0, 2**63), got {args.top_k}")
    if not 0 < args.top_p <= 1:  # also refuses nan
        raise InputError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.seed is not None and not -_INT64 <= args.seed < _INT64:
        raise InputError(f"--seed must be a 64-bit integer, in [-2**63, 2**63), got {args.seed}")
    from octogram.common.files import CacheDirError, cache_root

    try:
        cache_root()
    except CacheDirError as exc:
        raise InputError(str(exc)) from None


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
            "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}


def _cmd_call(args: argparse.Namespace) -> int:
    functions = _load_functions(args.apis, "--apis")
    _check_request_options(args, functions)
    gen = _generator(args)
    offered = gen.candidates(args.query, functions)
    _info(f"{len(functions)} functions in {args.apis}; offered: "
          + ", ".join(f.api_name or f.name for f in offered) + ", no_relevant_function")
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
    note = _closed_note(result.stop_reason, args.max_new_tokens)
    if note is not None:
        _warn(f"the answer {note}")
    if args.request:
        return _print_requests(args, result, functions)
    shown = _call_json(result.calls, result.grammar_calls or result.calls)
    if note is not None and args.json:  # each call object says so too
        for item in shown if isinstance(shown, list) else [shown]:
            item["closed_at_limit"] = True
    print(json.dumps(shown) if args.json else result.call_text)
    return 0


def _warn(message: str) -> None:
    print(f"octogram: warning: {message}", file=sys.stderr, flush=True)


def _closed_note(stop_reason: str, max_new_tokens: int) -> str | None:
    """What to say of an answer that `decode` closed at the token limit (stop_reason "closed"):
    the model did not end it, the grammar's shortest completion did."""
    if stop_reason != "closed":
        return None
    return (f"reached --max-new-tokens={max_new_tokens} and was closed with the grammar's "
            "shortest completion: it may not be what the model meant (raise --max-new-tokens)")


def _row_api_path(source: str, root: Path, allow_python: bool, where: str) -> str:
    """A row's API file, confined to `root`: a data file names files, it does not open
    whatever it likes (`../../etc/passwd`) and does not run code unless asked to."""
    resolved = (root / source).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InputError(f"{where}: API file {source} is outside {root} (rows may name files "
                         "under the input's folder, or under --functions-dir)")
    if resolved.suffix.lower() == ".py" and not allow_python:
        raise InputError(f"{where}: API file {source} is a Python module, and loading it would "
                         "run its code; pass --allow-python to allow that")
    return str(resolved)


def _read_jsonl(path: Path, root: Path | None = None,
                allow_python: bool = False) -> list[tuple[str, list[Any]]]:
    if not path.is_file():
        raise InputError(f"--input: {path} does not exist" if not path.exists()
                         else f"--input: {path} is not a file")
    root = path.parent if root is None else root
    requests: list[tuple[str, list[Any]]] = []
    loaded: dict[str, list[Any]] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark is no content
    except UnicodeDecodeError as exc:
        raise InputError(f"--input: {path} is not UTF-8 text (byte {exc.start + 1} is "
                         f"{exc.object[exc.start:exc.start + 1]!r})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
        except (ValueError, RecursionError) as exc:  # a number past 4,300 digits, deep nesting
            raise InputError(f"{where}: not usable JSON ({exc or 'nested too deeply'})") from None
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) \
                or not row["query"].strip():
            raise InputError(f"{where}: each row needs a non-empty string 'query'")
        _check_text(row["query"], f"{where}: the query")  # "\ud800" is valid JSON
        if "functions" not in row:
            raise InputError(f"{where}: the row has no 'functions'")
        source = row["functions"]
        if isinstance(source, str):  # a path, under the input's folder (or --functions-dir)
            source = _row_api_path(source, root, allow_python, where)
            if source not in loaded:
                loaded[source] = _load_functions(source, where)
            functions = loaded[source]
        else:
            functions = _load_functions(source, where)
        requests.append((row["query"], functions))
    if not requests:
        raise InputError(f"--input: {path} holds no rows")
    return requests


def _check_output(output: str | None, input_path: str) -> Path | None:
    """--output, checked before anything is read or loaded: not the input, not a folder, in a
    folder that exists."""
    if output is None:
        return None
    path, source = Path(output), Path(input_path)
    same = path.resolve() == source.resolve()
    if not same and path.exists() and source.exists():
        try:
            same = os.path.samefile(path, source)
        except OSError:
            pass
    if same:
        raise InputError(f"--output: {output} is the input file; write the results elsewhere")
    if path.is_dir():
        raise InputError(f"--output: {output} is a folder, not a file")
    if not path.resolve().parent.is_dir():
        raise InputError(f"--output: the folder {path.resolve().parent} does not exist")
    return path


def _result_row(res: Any, max_new_tokens: int) -> dict[str, Any]:
    return {"query": res.query, "text": res.text,
            "calls": [{"name": c.name, "arguments": c.arguments} for c in res.calls],
            "error": res.error, "stop_reason": res.stop_reason, "num_tokens": res.num_tokens,
            "closed_at_limit": res.stop_reason == "closed",
            "warning": _closed_note(res.stop_reason, max_new_tokens)}


def _error_row(query: str, exc: Exception) -> dict[str, Any]:
    return {"query": query, "text": "", "calls": [], "error": f"{type(exc).__name__}: {exc}",
            "stop_reason": "error", "num_tokens": 0, "closed_at_limit": False, "warning": None}


def _batch_rows(gen: Any, part: list[tuple[str, list[Any]]], args: argparse.Namespace
                ) -> list[dict[str, Any]]:
    """One output row per request of `part`; a request that fails on its own (a query the
    tokenizer cannot take, ...) becomes an error row instead of ending the run."""
    try:
        results = gen.call_batch(part, batch_size=args.batch_size, **_sampling(args))
        return [_result_row(res, args.max_new_tokens) for res in results]
    except Exception:  # find the failing row(s): the others are answered one by one
        rows = []
        for request in part:
            try:
                (res,) = gen.call_batch([request], batch_size=1, **_sampling(args))
                rows.append(_result_row(res, args.max_new_tokens))
            except Exception as exc:
                rows.append(_error_row(request[0], exc))
        return rows


class _Output:
    """Where `generate` writes its rows.

    A regular file (or a new one) is written through a temporary file beside it that replaces
    it when the run ends, so an existing output is replaced only by a finished run and a failed
    one leaves nothing half-written. Anything else that exists (a pipe, `/dev/stdout`, a
    device) is written to directly: renaming a file over it would replace the device node
    itself (as root, `--output /dev/null` would have become a plain file).
    """

    def __init__(self, output: Path | None):
        import stat
        import tempfile

        self.name = str(output) if output is not None else "stdout"
        self.target: Path | None = None
        self.tmp: Path | None = None
        if output is None:
            self.file = sys.stdout
            return
        try:
            mode = os.stat(output).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise InputError(f"--output: cannot use {output} ({exc.strerror or exc})") from None
        if mode is not None and not stat.S_ISREG(mode):
            try:
                self.file = open(output, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
            except OSError as exc:
                raise InputError(f"--output: cannot open {output} ({exc.strerror or exc})") \
                    from None
            return
        self.target = output.resolve()  # a symlink's file is replaced, not the link
        try:
            fd, name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.",
                                        suffix=".part")
        except OSError as exc:
            raise InputError(f"--output: cannot write in {self.target.parent} "
                             f"({exc.strerror or exc})") from None
        self.tmp, self.file = Path(name), os.fdopen(fd, "w", encoding="utf-8")
        # mkstemp's file is private (0600): give the result the old output's mode, or the
        # mode a plain open() would have given it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, mode & 0o7777 if mode is not None else 0o666 & ~umask)

    def write(self, rows: list[dict[str, Any]]) -> None:
        try:
            for row in rows:
                self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        except BrokenPipeError:
            raise  # the reader is gone: main() ends quietly, as other Unix tools do
        except OSError as exc:  # a full disk, an I/O error
            raise InputError(f"--output: cannot write {self.name} ({exc.strerror or exc})") \
                from None

    def finish(self, keep: bool) -> None:
        """Close; a temporary file replaces the output when `keep`, and is removed otherwise
        (also when it cannot be completed: the old output then stays as it was)."""
        if self.file is sys.stdout:
            return
        try:
            try:
                if keep and self.tmp is not None:
                    self.file.flush()
                    os.fsync(self.file.fileno())  # the rows are on disk before the rename
            finally:
                self.file.close()
            if keep and self.tmp is not None:
                os.replace(self.tmp, self.target)
                self.tmp = None
        except BrokenPipeError:
            if keep:
                raise
        except OSError as exc:
            if keep:
                raise InputError(f"--output: cannot write {self.name} ({exc.strerror or exc})") \
                    from None
        finally:
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)


def _cmd_generate(args: argparse.Namespace) -> int:
    """Rows go to a temporary file beside --output, renamed over it when the run ends, so an
    existing output is replaced only by a finished run (an interrupted one keeps the complete
    rows it has; a failed one leaves the old file as it was). The output is opened before the
    model loads, so an unwritable one is reported first."""
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    output = _check_output(args.output, args.input)
    root = Path(args.functions_dir) if args.functions_dir else None
    if root is not None and not root.is_dir():
        raise InputError(f"--functions-dir: {root} is not a folder")
    requests = _read_jsonl(Path(args.input), root, args.allow_python)
    out = _Output(output)
    finished = False
    try:
        gen = _generator(args)
        bar = tqdm(total=len(requests), desc="octogram: generating", unit="row",
                   file=sys.stderr)
        tokens, valid, closed, failed, written = 0, 0, 0, 0, 0
        start = time.perf_counter()
        try:
            for first in range(0, len(requests), args.batch_size):
                part = requests[first:first + args.batch_size]
                rows = _batch_rows(gen, part, args)
                out.write(rows)
                for row in rows:
                    tokens += row["num_tokens"]
                    valid += row["error"] is None
                    closed += row["closed_at_limit"]
                    failed += row["stop_reason"] == "error"
                written += len(part)
                bar.update(len(part))
                bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
        except KeyboardInterrupt:
            if out.tmp is not None and written:
                _info(f"interrupted: the {written} complete rows are in {output}")
                finished = True  # keep what is complete
            raise
        finally:
            bar.close()
        finished = True
    finally:
        out.finish(keep=finished)
    seconds = time.perf_counter() - start
    _info(f"{len(requests)} rows, {valid} valid calls, {tokens} tokens in {seconds:.1f} s: "
          f"{tokens / seconds:.1f} tokens/s, {len(requests) / seconds:.2f} rows/s "
          f"(batch size {args.batch_size}, grammar compiles {gen.compile_seconds:.1f} s)")
    if closed:
        _warn(f"{closed} of {len(requests)} rows reached --max-new-tokens={args.max_new_tokens} "
              "and were closed with the grammar's shortest completion (\"closed_at_limit\" in "
              "their rows; raise --max-new-tokens)")
    if failed:
        _warn(f"{failed} of {len(requests)} rows failed (\"stop_reason\": \"error\" in their "
              "rows)")
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="a Hugging Face causal-LM folder "
                   "(default: the embedded Gemma 3 270M)")
    p.add_argument("--adapter", metavar="FILE", help="a LoRA adapter (safetensors file or "
                   "folder, with adapter_config.json) merged into the model (default: the "
                   "shipped fine-tuned adapter on the embedded model, none on --model)")
    p.add_argument("--no-adapter", action="store_true",
                   help="the base model alone, without the shipped adapter")
    p.add_argument("--no-mask", action="store_true", help="decode without grammar constraints")
    p.add_argument("--backend", choices=("auto", "transformers", "llama.cpp"), default="auto",
                   help="what runs the model: llama.cpp (the embedded GGUF as it ships; needs "
                   "the llamacpp extra), transformers, or auto (default): llama.cpp when it is "
                   "installed and --model is not given, else transformers")
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
    call.add_argument("--request", action="store_true",
                      help="print the HTTP request the call stands for (OpenAPI documents)")
    call.add_argument("--base-url", metavar="URL",
                      help="server to address with --request (default: the document's)")
    _model_options(call)
    generate = sub.add_parser("generate", help="answer a JSONL file of queries, in batches")
    generate.add_argument("--input", required=True, metavar="FILE.jsonl",
                          help='rows {"query": ..., "functions": <tool JSON list or API file>}')
    generate.add_argument("--output", metavar="FILE", help="JSONL output (default: stdout)")
    generate.add_argument("--batch-size", type=int, default=8, metavar="N")
    generate.add_argument("--functions-dir", metavar="DIR",
                          help="folder that rows' API file paths are relative to and must stay "
                               "in (default: the input file's folder)")
    generate.add_argument("--allow-python", action="store_true",
                          help="let rows name Python modules of functions (they are imported, "
                               "so their code runs)")
    _model_options(generate)
    sub.add_parser("grammar", help="print the grammar of an API file (see `octogram grammar -h`)",
                   add_help=False)
    sub.add_parser("dataset", help="build training data (see `octogram dataset build -h`)",
                   add_help=False)
    sub.add_parser("finetune", help="LoRA fine-tuning (see `octogram finetune -h`)",
                   add_help=False)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Warnings about the API document (e.g. a schema keyword the grammar cannot express) are
    # diagnostics for the user, not for a developer: one line, no source location.
    print(f"octogram: warning: {message}", file=sys.stderr, flush=True)


_SIGPIPE = 13  # signal.SIGPIPE, which Windows lacks


def _silence_stdout() -> None:
    """Point stdout's descriptor at the null device, so that the interpreter's final flush of
    the rows still buffered for a closed pipe does not print a BrokenPipeError of its own."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # not a real file (captured, replaced)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    if argv[:1] == ["grammar"]:
        from octogram.grammars.grammar_command import grammar_command

        return grammar_command(argv[1:])
    if argv[:1] in (["dataset"], ["finetune"]):
        from .train_cli import train_command

        return train_command(argv)
    args = _parser().parse_args(argv)  # usage errors exit with status 2
    try:
        _check_options(args)
        if args.command == "call":
            return _cmd_call(args)
        return _cmd_generate(args)
    except InputError as exc:
        _err(str(exc))
        return 2
    except BrokenPipeError:
        # The reader of stdout went away (`octogram generate | head -1`): stop quietly, as
        # other Unix tools do, with the status of a process ended by SIGPIPE.
        _silence_stdout()
        return 128 + _SIGPIPE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
