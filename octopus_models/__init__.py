"""The Octopus models: prompts, the embedded default base, batched constrained generation, CLI."""
