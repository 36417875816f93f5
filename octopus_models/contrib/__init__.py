"""Glue between Octogram and other inference engines, kept out of the core layers.

- `llamacpp`: llama.cpp (through llama-cpp-python) as a model runner for `decode`.
- `gguf_lora`: a PEFT LoRA adapter written as llama.cpp's LoRA GGUF.
"""
