"""`octogram grammar SOURCE`: print the Lark grammar for an API description.

The console script's `grammar` subcommand calls `grammar_command(argv)`. Warnings go to stderr
one per line; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .errors import GrammarError, GrammarWarning
from .generate import STYLES, to_lark
from .loader import load

USAGE_ERROR = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise _UsageError(message)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def grammar_command(argv: list[str]) -> int:
    """Parse `SOURCE [--style python|json] [--functions NAME ...] [--strict] [--max-depth N]`,
    print the grammar on stdout and return the exit code (0, or 2 for bad input)."""
    parser = _Parser(prog="octogram grammar",
                     description="Print the Lark grammar of the calls to the functions of an API description.")
    parser.add_argument("source", metavar="SOURCE",
                        help="OpenAPI 3.x / Swagger 2.0 (.json, .yaml), tool JSON, or a Python file of functions")
    parser.add_argument("--style", choices=STYLES, default="python",
                        help="call syntax: python  f(a=1)  or json  {\"name\": \"f\", \"arguments\": {...}}")
    parser.add_argument("--functions", nargs="+", metavar="NAME", help="only these functions (call names or operationIds)")
    parser.add_argument("--strict", action="store_true", help="fail on any keyword the grammar cannot express")
    parser.add_argument("--max-depth", type=int, default=3, metavar="N",
                        help="how deep recursive schemas and free-form values may nest (default 3)")
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"octogram grammar: error: {_one_line(e)} (see --help)", file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GrammarWarning)
            specs = load(args.source, functions=args.functions, strict=args.strict)
            text = to_lark(specs, args.style, max_depth=args.max_depth, strict=args.strict)
    except GrammarError as e:
        print(f"octogram grammar: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    for w in caught:
        if issubclass(w.category, GrammarWarning):
            print(f"octogram grammar: warning: {_one_line(w.message)}", file=sys.stderr)
    sys.stdout.write(text)
    return 0


def main() -> None:  # `python -m octogram.grammars.grammar_command SOURCE ...`
    sys.exit(grammar_command(sys.argv[1:]))


if __name__ == "__main__":
    main()
