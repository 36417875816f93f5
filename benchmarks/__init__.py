"""Runnable benchmarks and the real-data loaders they share with the tests (corpus, tokenizers)."""
