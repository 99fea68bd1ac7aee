"""Recipes and corpora shipped inside the package, so that a plain (non-editable) install has
them too: cpu-tiny.toml (the embedded default of `halo-forge run`), qwen7b-gpu.toml, and the
verify corpus. A clone also shows this folder as the top-level `examples/` (a symlink)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def examples_dir() -> Path:
    """This folder on disk, wherever the package was installed from."""
    # Readers take paths (and print them), so the resource must be a real folder: it is for
    # every install pip makes (wheels unpack to disk; editable installs point at the source).
    return Path(str(resources.files(__name__)))


EXAMPLES_DIR = examples_dir()
DEFAULT_CONFIG = EXAMPLES_DIR / "cpu-tiny.toml"
VERIFY_CORPUS = EXAMPLES_DIR / "verify" / "corpus.jsonl"
