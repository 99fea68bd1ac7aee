"""Datasets: the registry and loaders (`data prepare`), chat formatting, LLM data generation.

Kept light at import time: `datasets`, `transformers` and `httpx` are imported where used.
"""
