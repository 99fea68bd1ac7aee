"""#14 trip-ups: an adapter's base model works from any folder, and an unreachable hub fails
at once with the download command that exists."""

from __future__ import annotations

import socket

import pytest

from halo_forge import model_loading
from halo_forge.errors import HaloError
from halo_forge.model_loading import AdapterMeta, read_adapter_meta, write_adapter_meta


def _adapter(folder):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_relative_local_base_is_recorded_absolute(tmp_path, monkeypatch):
    (tmp_path / "runs" / "model").mkdir(parents=True)
    adapter = _adapter(tmp_path / "runs" / "adapter")
    monkeypatch.chdir(tmp_path / "runs")
    write_adapter_meta(adapter, AdapterMeta(base_model="./model", parent_adapter="adapter"))
    monkeypatch.chdir(tmp_path)  # another folder: the recorded path still names the model
    meta = read_adapter_meta(adapter)
    assert meta.base_model == str((tmp_path / "runs" / "model").resolve())
    assert meta.parent_adapter == str(adapter.resolve())


def test_hub_id_stays_an_id(tmp_path, monkeypatch):
    adapter = _adapter(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    write_adapter_meta(adapter, AdapterMeta(base_model="Qwen/Qwen2.5-0.5B"))
    assert read_adapter_meta(adapter).base_model == "Qwen/Qwen2.5-0.5B"


@pytest.fixture
def dead_hub(monkeypatch):
    """A hub endpoint on a local port nobody listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(model_loading, "_reachable", {})
    return port


def test_unreachable_hub_fails_before_transformers_retries(dead_hub, monkeypatch):
    import transformers

    def never(*a, **k):
        raise AssertionError("from_pretrained must not be reached: it retries for ~50 s")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", never)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    name = "nobody-has/this-model-1234"
    for load in (model_loading.load_tokenizer,
                 lambda n: model_loading.load_causal_lm(n, dtype=None)):
        with pytest.raises(HaloError) as info:
            load(name)
        message = str(info.value)
        assert "\n" not in message and "unreachable" in message
        assert f"`hf download {name}`" in message and "huggingface-cli" not in message


def test_cached_hub_id_loads_from_the_cache_when_the_hub_is_unreachable(dead_hub, monkeypatch):
    import transformers

    seen = {}
    monkeypatch.setattr(model_loading, "_in_hub_cache", lambda name: True)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda name, **kw: seen.update(kw) or "model")
    assert model_loading.load_causal_lm("org/cached", dtype=None) == "model"
    assert seen.get("local_files_only") is True


def test_local_folder_never_checks_the_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(model_loading, "hub_reachable",
                        lambda *a: (_ for _ in ()).throw(AssertionError("checked the hub")))
    assert model_loading._hub_kwargs("model", str(tmp_path)) == {}


def test_load_error_names_the_hf_command(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = str(model_loading._load_error("model", "org/x", OSError("not cached")))
    assert "`hf download org/x`" in message and "HF_HUB_OFFLINE" in message


def test_older_adapter_with_a_relative_base_is_found_from_its_own_folder(tmp_path, monkeypatch):
    (tmp_path / "project" / "runs" / "model").mkdir(parents=True)
    adapter = _adapter(tmp_path / "project" / "runs" / "sft" / "final_model")
    # As an older version wrote it: the path as typed from tmp_path/project.
    (adapter / model_loading.ADAPTER_META).write_text('{"base_model": "runs/model"}')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert read_adapter_meta(adapter).base_model == str((tmp_path / "project" / "runs" / "model").resolve())
    # a hub id is no folder anywhere: unchanged
    (adapter / model_loading.ADAPTER_META).write_text('{"base_model": "org/some-model"}')
    assert read_adapter_meta(adapter).base_model == "org/some-model"
