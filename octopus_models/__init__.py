"""The Octopus models: prompts, the embedded default base, batched constrained generation, CLI.

    model, tokenizer = load_model()                  # embedded Gemma 3 270M (converted once)
    gen = OctopusGenerator(model, tokenizer)
    result = gen.call("What is the weather in Paris?", load("weather.json"))
    result.call_text, result.calls                   # 'get_current_weather(city="Paris")', [...]
"""

from .base import (AdapterError, ModelLoadError, apply_lora, cache_dir, default_model_dir,
                   load_model)
from .decode import Decoded, Runner, decode
from .generator import CallResult, OctopusGenerator
from .hf import hf_decode
from .backends import load_runner
from .transformers_runner import TransformersRunner
from .prompt import PROMPT_FORMAT_VERSION, render_prompt, render_target
from .retrieval import select_candidates

__all__ = [
    "load_model", "default_model_dir", "cache_dir", "apply_lora", "ModelLoadError",
    "AdapterError", "OctopusGenerator", "CallResult", "Decoded", "decode", "Runner",
    "TransformersRunner", "load_runner", "hf_decode",
    "PROMPT_FORMAT_VERSION", "render_prompt", "render_target", "select_candidates",
]
