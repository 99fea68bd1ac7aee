"""pipeline.toml: the whole run as msgspec Structs; unknown keys, wrong types and impossible
values are errors that name the key.

Sections: [model] [data] [sft] [raft] [generation] (+ [generation.engine]) [verifier]
[benchmark] [output] [cluster]; examples/cpu-tiny.toml documents every key. The values in the
file are the values used: command-line flags override only the keys they name, when given.

This module imports no torch: `halo-forge run --help` and config errors stay fast.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from halo_forge.cluster.settings import ClusterSettings
from halo_forge.errors import HaloError
from halo_forge.examples import EXAMPLES_DIR
from halo_forge.generate.base import (
    VLLM_LORA_RANKS,
    GenerateConfig,
    SamplingSettings,
    TransformersConfig,
    VLLMConfig,
)
from halo_forge.sft_settings import SftSettings
from halo_forge.verify.config import VerifierConfig

DEFAULT_CONFIG_NAME = "cpu-tiny.toml"


def _doc(text: str) -> msgspec.Meta:
    """A key's description: the help of the command-line flag made from it (cli/flags.py)."""
    return msgspec.Meta(description=text)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ModelSection(_Section):
    # A Hugging Face id or a local folder. With `tiny = true` leave it empty: the tiny model
    # is built on the fly into OUTPUT/model.
    name: str = ""
    tiny: bool = False
    tiny_seed: int = 0
    tiny_layers: int = 2
    tiny_hidden: int = 64
    # Attention heads: each is tiny_hidden / tiny_heads wide. vLLM's CPU engine needs 64-wide
    # heads (tiny_heads = 1 with tiny_hidden = 64); 4 (16 wide) is faster with transformers.
    tiny_heads: int = 4

    def __post_init__(self) -> None:
        if self.tiny and self.name:
            raise ValueError("model.name and model.tiny = true exclude each other; set one")
        if not self.tiny and not self.name:
            raise ValueError("model.name is empty: name a model (or set model.tiny = true)")
        if self.tiny_layers < 1 or self.tiny_hidden < 8:
            raise ValueError("model.tiny_layers must be >= 1 and model.tiny_hidden >= 8")
        if self.tiny_heads < 1 or self.tiny_hidden % self.tiny_heads:
            raise ValueError(f"model.tiny_hidden ({self.tiny_hidden}) must be a multiple of "
                             f"model.tiny_heads ({self.tiny_heads})")


class DataSection(_Section):
    dataset: str = "builtin"  # a name from `halo-forge data prepare --list`
    paths: list[str] = []  # --from files for the dataset (the `local` dataset needs them)
    # A prompts JSONL (from `data prepare --prompts`) or a Problem shard: every problem is a
    # training prompt and there is no test split (what `raft train --prompts` uses).
    prompts: str = ""
    languages: list[str] = []  # keep only these languages; [] = all
    language: Annotated[str, _doc(
        "the language of prompts rows that name none (data.prompts); empty: the only one of "
        "data.languages when it has one")] = ""
    test_fraction: float = 0.25  # held out for the benchmark and the per-cycle evaluation
    split_seed: int = 0
    limit: int = 0  # at most this many training problems (0 = all)

    def __post_init__(self) -> None:
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"data.test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.limit < 0:
            raise ValueError(f"data.limit must be >= 0, got {self.limit}")
        bad = [x for x in self.languages if x not in ("c", "cpp", "rust", "python")]
        if bad:
            raise ValueError(f"data.languages: unknown language(s) {bad}; use c, cpp, rust, python")
        if self.language and self.language not in ("c", "cpp", "rust", "python"):
            raise ValueError(f"data.language: unknown language {self.language!r}; use c, cpp, "
                             "rust, python")
        if self.language and self.languages and self.language not in self.languages:
            raise ValueError(f"data.language {self.language!r} is not among data.languages "
                             f"{self.languages}: its rows would all be dropped")

    def default_language(self) -> str | None:
        """The language of prompts rows that name none."""
        if self.language:
            return self.language
        return self.languages[0] if len(self.languages) == 1 else None


class SftSection(SftSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """[sft]: the settings every SFT run has (sft_settings.py) and what the pipeline adds."""

    _key_prefix: ClassVar[str] = "sft."

    enabled: bool = True
    # Skip training and start RAFT from this adapter (or, with enabled = false, "" = the base).
    adapter: str = ""


class RaftSection(_Section):
    cycles: Annotated[int, _doc("RAFT cycles: generate, verify, filter, train")] = 3
    samples_per_prompt: Annotated[int, _doc("samples generated per prompt per cycle")] = 8
    reward_threshold: Annotated[float, _doc("keep samples with at least this reward, in "
                                            "[0, 1]")] = 0.5
    keep_top_percent: Annotated[float, _doc("then the best fraction of them, in (0, 1]")] = 0.5
    max_per_prompt: Annotated[int, _doc("at most this many kept per prompt (0 = no cap)")] = 0
    dedupe: Annotated[bool, _doc("identical code of one prompt is kept once")] = True
    # Training on what was kept: cycle c uses learning_rate * lr_decay ** (c - 1).
    learning_rate: Annotated[float, _doc("learning rate of cycle 1")] = 5e-5
    lr_decay: Annotated[float, _doc("cycle c trains at learning_rate * lr_decay^(c-1), in "
                                    "(0, 1]")] = 0.85
    epochs: Annotated[float, _doc("passes over the kept samples per cycle")] = 1.0
    max_steps: Annotated[int, _doc("> 0: optimizer steps per cycle (overrides epochs)")] = 0
    batch_size: Annotated[int, _doc("per device (0 = sft.batch_size)")] = 0
    grad_accum: Annotated[int, _doc("gradient accumulation (0 = sft.grad_accum)")] = 0
    seed: Annotated[int, _doc("generation seeds and filter tie-breaks")] = 0
    buffer_batches: Annotated[int, _doc("generated batches waiting for the verifier "
                                        "(bounded memory)")] = 4
    # Held-out evaluation after each cycle (pass@1, compile rate on the test split) and early
    # stop when pass@1 has not improved for `patience` cycles (0 = never stop early).
    eval: Annotated[bool, _doc("held-out pass@1 and compile rate after each cycle")] = False
    eval_samples: Annotated[int, _doc("samples per held-out problem in that evaluation")] = 1
    patience: Annotated[int, _doc("stop when held-out pass@1 has not improved for N cycles "
                                  "(0 = never)")] = 0

    def __post_init__(self) -> None:
        if self.cycles < 0:
            raise ValueError(f"raft.cycles must be >= 0, got {self.cycles}")
        if self.samples_per_prompt < 1:
            raise ValueError(f"raft.samples_per_prompt must be >= 1, got {self.samples_per_prompt}")
        if not 0 < self.keep_top_percent <= 1:
            raise ValueError(
                f"raft.keep_top_percent must be in (0, 1] (a fraction: 0.5 keeps the top half), "
                f"got {self.keep_top_percent}")
        if not 0 <= self.reward_threshold <= 1:
            raise ValueError(f"raft.reward_threshold must be in [0, 1], got {self.reward_threshold}")
        if self.learning_rate <= 0:
            raise ValueError(f"raft.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"raft.lr_decay must be in (0, 1], got {self.lr_decay}")
        for name in ("max_per_prompt", "max_steps", "batch_size", "grad_accum", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"raft.{name} must be >= 0")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("raft.epochs must be > 0 (or raft.max_steps set)")
        if self.buffer_batches < 1 or self.eval_samples < 1:
            raise ValueError("raft.buffer_batches and raft.eval_samples must be >= 1")


class GenerationSection(_Section):
    temperature: Annotated[float, _doc("sampling temperature (0 = greedy)")] = 0.8
    top_p: Annotated[float, _doc("nucleus sampling, in (0, 1]")] = 0.95
    max_new_tokens: Annotated[int, _doc("tokens per completion at most")] = 512
    stop: list[str] = []
    # None: the default system prompt; "" = no system turn. Also used for RAFT's examples.
    system: str | None = None
    # The backend: `backend = "transformers" | "vllm" | "openai"` and its own keys.
    engine: GenerateConfig = msgspec.field(default_factory=TransformersConfig)

    def __post_init__(self) -> None:
        try:  # the backend's own checks, so the file cannot pass what a backend refuses
            self.sampling()
        except ValueError as exc:
            raise ValueError(f"generation.{exc}") from None
        if self.engine.model or self.engine.adapter:
            raise ValueError("generation.engine.model/adapter come from [model] and the "
                             "stages; leave them out")


    def sampling(self, **overrides: Any) -> SamplingSettings:
        """The sampler's settings from this section (what the pipeline generates with)."""
        return SamplingSettings(**{"temperature": self.temperature, "top_p": self.top_p,
                                   "max_new_tokens": self.max_new_tokens,
                                   "stop": list(self.stop), **overrides})


class BenchmarkSection(_Section):
    enabled: bool = True
    samples: int = 10  # per problem
    ks: list[int] = msgspec.field(default_factory=lambda: [1, 5, 10])
    temperature: float = 0.8
    max_problems: int = 0  # 0 = the whole test split (and of the training split)
    # The final adapter on the training split too: the gap to held-out is what it memorised.
    train_split: bool = True
    # The base model and the SFT adapter on the held-out split too, with the same samples:
    # the method's gain, measured rather than assumed.
    baselines: bool = True

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError("benchmark.samples must be >= 1")
        if not self.ks or any(k < 1 or k > self.samples for k in self.ks):
            raise ValueError(f"benchmark.ks must be in [1, benchmark.samples={self.samples}], "
                             f"got {self.ks}")


class OutputSection(_Section):
    dir: str = "runs/halo-forge"  # relative paths are relative to the current directory
    plot: bool = True  # metrics.png next to metrics.jsonl (needs matplotlib)
    # Where the per-cycle metrics and the trainer's steps also go (trackers.py); each needs
    # its package: tensorboard, or `pip install 'halo-forge[trackers]'` for wandb and trackio.
    trackers: Annotated[list[Literal["tensorboard", "wandb", "trackio"]], _doc(
        "experiment trackers for cycle metrics and training steps")] = []
    # Kept from before `trackers`: true is the same as "tensorboard" in trackers, except that a
    # missing tensorboard package is a warning, as it always was, not an error.
    tensorboard: bool = False
    progress: Annotated[Literal["auto", "rich", "plain"], _doc(
        "progress bars (auto: rich on a terminal, else log lines)")] = "auto"

    def __post_init__(self) -> None:
        if len(set(self.trackers)) != len(self.trackers):
            raise ValueError(f"output.trackers names a tracker twice: {self.trackers}")


class PipelineConfig(_Section):
    model: ModelSection
    data: DataSection = DataSection()
    sft: SftSection = SftSection()
    raft: RaftSection = RaftSection()
    generation: GenerationSection = GenerationSection()
    verifier: VerifierConfig = VerifierConfig()
    benchmark: BenchmarkSection = BenchmarkSection()
    output: OutputSection = OutputSection()
    cluster: ClusterSettings = ClusterSettings()  # verification on a Ray cluster

    def __post_init__(self) -> None:
        if self.raft.max_per_prompt > self.raft.samples_per_prompt:
            raise ValueError("raft.max_per_prompt must be <= raft.samples_per_prompt")
        check_lora_rank(self.sft.lora_rank, self.generation.engine, key="sft.lora_rank")


def adapter_lora_rank(adapter_dir: str) -> int:
    """The rank peft saved in the adapter's adapter_config.json (0 when it names none)."""
    try:
        cfg = msgspec.json.decode((Path(adapter_dir) / "adapter_config.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return 0  # reading the adapter reports its own, clearer error later
    rank = cfg.get("r") if isinstance(cfg, dict) else None
    return rank if isinstance(rank, int) else 0


def check_lora_rank(lora_rank: int, engine: Any, *, key: str) -> None:
    """vLLM refuses an adapter above its max_lora_rank when the adapter is loaded, hours after
    training made it; say so before anything runs."""
    if isinstance(engine, VLLMConfig) and lora_rank > engine.max_lora_rank:
        fit = min(r for r in VLLM_LORA_RANKS if r >= lora_rank) if lora_rank <= max(
            VLLM_LORA_RANKS) else None
        fix = (f"set generation.engine.max_lora_rank = {fit}" if fit is not None
               else f"lower {key} to at most {max(VLLM_LORA_RANKS)}")
        raise ValueError(f"{key} = {lora_rank} is above generation.engine.max_lora_rank = "
                         f"{engine.max_lora_rank}: vLLM would refuse the adapter; {fix}")


def section_type(name: str) -> type:
    """The Struct of a pipeline.toml section (`raft` -> RaftSection)."""
    return {f.name: f.type for f in msgspec.structs.fields(PipelineConfig)}[name]


# --- loading and error messages -----------------------------------------------------------

_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`")
_AT = re.compile(r" - at `\$((?:\.[A-Za-z_0-9]+|\[\d+\])*)`$")


def _struct_at(path: list[str]) -> type | None:
    """The Struct type a dotted path of the config leads to (None when not a Struct)."""
    t: Any = PipelineConfig
    for name in path:
        fields = {f.name: f.type for f in msgspec.structs.fields(t)} if _is_struct(t) else {}
        if name not in fields:
            return None
        t = fields[name]
    return t if _is_struct(t) else None


def _is_struct(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, msgspec.Struct)


def _fields_at(path: list[str]) -> list[str]:
    if path[-2:] == ["generation", "engine"] or path == ["generation", "engine"]:
        from halo_forge.generate.base import OpenAIConfig, VLLMConfig

        names: set[str] = {"backend"}
        for cls in (TransformersConfig, VLLMConfig, OpenAIConfig):
            names.update(f.name for f in msgspec.structs.fields(cls))
        return sorted(names)
    t = _struct_at(path)
    return [f.name for f in msgspec.structs.fields(t)] if t is not None else []


def explain(exc: msgspec.ValidationError | msgspec.DecodeError, source: str) -> str:
    """A one-line message naming the key, from msgspec's error."""
    text = str(exc)
    where = _AT.search(text)
    path = [p for p in re.split(r"\.|\[", where.group(1)) if p] if where else []
    path = [p.rstrip("]") for p in path]
    body = text[: where.start()] if where else text
    unknown = _UNKNOWN.match(body)
    if unknown:
        key = unknown.group(1)
        full = ".".join([*path, key])
        close = difflib.get_close_matches(key, _fields_at(path), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        if not path:
            known = ", ".join(f.name for f in msgspec.structs.fields(PipelineConfig))
            return f"{source}: unknown section or key `{full}`{hint}; sections are {known}"
        return f"{source}: unknown key `{full}`{hint}"
    if body.startswith("Object missing required field"):
        missing = re.search(r"`([^`]*)`", body)
        name = ".".join([*path, missing.group(1)]) if missing else "?"
        return f"{source}: missing `{name}`"
    key = ".".join(path)
    if "must" in body or "exclude" in body or "is empty" in body or "leave them out" in body:
        # Our sections' own __post_init__ messages already name the key; a nested Struct's
        # (the sandbox's Limits, a backend's config) do not.
        if key and not body.startswith(path[0] + "."):
            return f"{source}: `{key}`: {body}"
        return f"{source}: {body}"
    return f"{source}: `{key}`: {body[0].lower() + body[1:]}" if key else f"{source}: {body}"


def load_config(path: str | Path | None = None) -> tuple[PipelineConfig, str]:
    """(config, text of the file). None: the embedded default, examples/cpu-tiny.toml."""
    p = Path(path) if path is not None else EXAMPLES_DIR / DEFAULT_CONFIG_NAME
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise HaloError(f"{p}: cannot read the pipeline config ({exc.strerror})") from None
    return parse_config(raw, source=str(p if path is not None else p.name)), raw.decode()


def parse_config(raw: bytes | str, *, source: str = "pipeline.toml") -> PipelineConfig:
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        return msgspec.toml.decode(raw, type=PipelineConfig)
    except msgspec.ValidationError as exc:
        raise HaloError(explain(exc, source)) from None
    except msgspec.DecodeError as exc:
        raise HaloError(f"{source}: not valid TOML ({exc})") from None


def replace_key(config: PipelineConfig, dotted: str, value: Any) -> PipelineConfig:
    """The config with one key set (a command-line override), validated like the file."""
    data = msgspec.to_builtins(config)
    node = data
    *parents, last = dotted.split(".")
    for name in parents:
        node = node[name]
    if last not in node and last not in _fields_at(parents):
        raise HaloError(f"no config key `{dotted}`")
    node[last] = value
    try:
        return msgspec.convert(data, PipelineConfig)
    except msgspec.ValidationError as exc:
        raise HaloError(explain(exc, "command line")) from None


# --- what a stage depends on ---------------------------------------------------------------

# Keys that change how fast or how loudly a run goes, never what it produces: a rerun may
# change them freely.
NEUTRAL_KEYS = frozenset({
    "raft.cycles", "raft.buffer_batches", "raft.patience", "verifier.concurrency",
    "verifier.cache", "verifier.cache_path", "verifier.cache_dir", "verifier.pch",
    "generation.engine.batch_size", "generation.engine.concurrency",
    "generation.engine.gpu_memory_utilization", "generation.engine.enable_sleep_mode",
    "generation.engine.probe", "sft.logging_steps", "sft.save_steps", "sft.train_process",
})
NEUTRAL_SECTIONS = ("output", "cluster")

# Keys that came after runs were made: while one holds its default it is left out of a stage's
# values, so a run started before the key existed resumes instead of being refused as changed.
ADDED_KEYS = frozenset({
    "sft.max_grad_norm", "sft.eval_steps", "sft.group_by_length",
    "verifier.compile_limits.disk_mb", "verifier.run_limits.disk_mb",
})


def _added_defaults() -> dict[str, Any]:
    defaults = msgspec.json.decode(msgspec.json.encode(PipelineConfig(model=ModelSection(tiny=True))))
    out = {}
    for key in ADDED_KEYS:
        node = defaults
        for name in key.split("."):
            node = node[name]
        out[key] = node
    return out


def flatten(config: PipelineConfig, sections: tuple[str, ...]) -> dict[str, Any]:
    """{"section.key": value} of the named sections, without the neutral keys (nor the added
    keys at their defaults)."""
    # Through JSON, so tuples come back as lists and compare equal to a saved state's.
    data = msgspec.json.decode(msgspec.json.encode(config))
    added = _added_defaults()
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif prefix not in NEUTRAL_KEYS and added.get(prefix, _UNSET) != value:
            out[prefix] = value

    for section in sections:
        walk(section, data[section])
    return out


_UNSET = object()


def digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(msgspec.json.encode(values, order="sorted")).hexdigest()[:16]


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k, "<unset>") != new.get(k, "<unset>")]
