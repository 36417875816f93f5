"""Glue between Octogram and other inference engines, kept out of the core layers.

- `llamacpp`: llama.cpp (through llama-cpp-python) as a model runner for `decode`.
- `gguf_lora`: a PEFT LoRA adapter written as llama.cpp's LoRA GGUF.
- `vllm`: per-request grammars as a vLLM logits-processor plugin (needs vLLM).
- `merged`: a base with its LoRA adapter merged, as a folder for engines that load one.
"""
