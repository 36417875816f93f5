"""Training and evaluation data for the Octopus models.

- `record`: the one `Example` type every source produces, validated against the grammars layer;
- `sources/`: importers for public function-calling datasets, each reading its upstream format;
- `synthesis`: examples synthesized from API documentation (the OpenAPI corpus, or a user's own);
- `build`: splits by API, candidates (gold + similar distractors), 1:1 negatives, curriculum;
- `dataset`: `octogram dataset build` -- all of the above, written as JSONL with a summary.
"""

from .build import Row, build_rows, split_by_api
from .dataset import build_dataset, default_data_dir, import_natural, import_synthetic, import_user_apis
from .record import DropError, Example, Imported, answer_text, validate

__all__ = ["Example", "Imported", "DropError", "validate", "answer_text", "Row", "build_rows",
           "split_by_api", "build_dataset", "default_data_dir", "import_natural",
           "import_synthetic", "import_user_apis"]
