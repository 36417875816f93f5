"""API signatures in, Lark grammar text out.

Owns the normalized `FunctionSpec` model, the importers (OpenAPI 2.0/3.x, OpenAI-style tool
JSON / JSON Schema, Python callables) and the grammar generators for the call syntaxes.
"""
