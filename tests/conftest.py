"""Test-session setup: the repository root goes to the END of sys.path.

`python -m pytest` puts the working folder first on sys.path, so its top-level folders
(`kernels/`, `masking/`) would shadow installed packages of the same names. Hugging Face's hub
package `kernels` is one (transformers imports it when installed); octogram itself is imported
as `octogram.*`, and the root is needed only for `benchmarks` and `tests` helpers.
"""

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or os.getcwd()).resolve() == _ROOT
    except OSError:
        return False


sys.path[:] = [p for p in sys.path if not _is_root(p)] + [str(_ROOT)]
for _name in ("common", "kernels", "masking"):
    _mod = sys.modules.get(_name)
    if _mod is not None and str(getattr(_mod, "__file__", "") or "").startswith(str(_ROOT)):
        del sys.modules[_name]
