"""`halo-forge benchmark run` (pass@k and compile@k of a model on problems with tests) and
`halo-forge benchmark compare A B` (two runs, per k and per problem). See benchmark_eval.py."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from halo_forge.argtypes import positive_int
from halo_forge.cli.cluster import add_ray_address, cluster_settings
from halo_forge.cli.flags import add_struct_flags
from halo_forge.cli.parser import add_group
from halo_forge.cli.verify import add_verifier_flags
from halo_forge.config import GenerationSection
from halo_forge.errors import HaloError
from halo_forge.generate.base import ENGINES, VLLMConfig
from halo_forge.paths import check_output_dir


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise HaloError(f"--k {text!r}: expected comma-separated whole numbers, e.g. 1,5,10") from None
    if not ks:
        raise HaloError("--k is empty: pass e.g. --k 1,5,10")
    return ks


DEFAULT_KS = (1, 5, 10)


def choose_ks(text: str | None, samples: int) -> tuple[list[int], str]:
    """(ks, a note when some default ks were left out): with no --k, the default ks that
    --samples can estimate, so `--samples 4` alone works."""
    if text is not None:
        return parse_ks(text), ""
    ks = [k for k in DEFAULT_KS if k <= samples]
    if len(ks) == len(DEFAULT_KS):
        return ks, ""  # nothing left out: the run's own summary line names the ks
    return ks, (f"benchmark: no --k given: pass@k for k in {','.join(map(str, ks))} (the "
                f"defaults {','.join(map(str, DEFAULT_KS))} that --samples {samples} allows)")


def register(subparsers) -> None:
    sub = add_group(subparsers, "benchmark", help="pass@k and compile@k of a model")

    p = sub.add_parser(
        "run", help="sample, verify and score a model on problems with tests",
        description="Generate --samples completions per problem, verify each in the sandbox, "
                    "and report pass@k (all tests passed) and compile@k (compiled) with the "
                    "unbiased estimator. With --output: summary.json, results.jsonl (per "
                    "problem), samples.jsonl, report.md and pass_at_k.png.")
    p.add_argument("--model", default="", help="Hugging Face id or local folder; an adapter "
                   "folder also works (its base model is read from it)")
    p.add_argument("--adapter", default="", help="LoRA adapter folder to apply to --model")
    src = p.add_argument_group("problems (one of --prompts or --dataset)")
    src.add_argument("--prompts", help="prompts JSONL (`data prepare --prompts` writes one), or "
                     "a dataset name")
    src.add_argument("--dataset", help="dataset name: humaneval, mbpp, builtin, "
                     "codeforces_cpp, ... (`halo-forge data prepare --list`)")
    src.add_argument("--from", dest="from_paths", type=Path, action="append", default=[],
                     metavar="PATH", help="--dataset: a local copy instead of the hub")
    src.add_argument("--split", choices=("train", "test", "all"), default=None,
                     help="--dataset: which problems (default: the official test split where "
                     "the dataset has one, else all)")
    src.add_argument("--test-fraction", type=float, default=0.1,
                     help="--split test on datasets without an official split")
    src.add_argument("--split-seed", type=int, default=0, help="seed of the split and of --limit")
    src.add_argument("--limit", type=positive_int, default=None, help="at most N problems")
    add_verifier_flags(p)
    add_ray_address(p)
    p.add_argument("--samples", type=positive_int, default=10, help="n: samples per problem")
    p.add_argument("--k", default=None, help="comma-separated ks, each <= --samples "
                   "(default: those of 1,5,10 that are <= --samples)")
    p.add_argument("--output", type=Path, default=None, help="folder for the report files")
    gen = p.add_argument_group("generation")
    gen.add_argument("--backend", choices=tuple(ENGINES),
                     default="transformers")
    # The pipeline's [generation] keys and defaults.
    add_struct_flags(gen, GenerationSection, only=("temperature", "top_p", "max_new_tokens"),
                     types_={"max_new_tokens": positive_int}, defaults=True)
    gen.add_argument("--seed", type=int, default=None, help="sampling seed")
    gen.add_argument("--system", default=None, help="system prompt ('' for none)")
    _add_engine_flags(p, gen)
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=_run)

    p = sub.add_parser("compare", help="the difference between two runs, per k and per problem",
                       description="Compare two `benchmark run --output` folders: pass@k and "
                                   "compile@k of each and B - A, and which problems one run "
                                   "solves (some sample passed) and the other does not.")
    p.add_argument("a", metavar="A", help="output folder (or summary.json) of the first run")
    p.add_argument("b", metavar="B", help="output folder (or summary.json) of the second run")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(handler=_compare)


# The engine settings are the [generation.engine] Structs' own fields: one flag per field, made
# from the Structs (a field two backends share is one flag); the chosen --backend takes the ones
# it has. model/adapter/system and --seed (the sampling seed, vLLM's engine seed too) are above.
_BY_HAND = ("model", "adapter", "system", "seed")
_MADE: set[str] = set()  # the engine fields that got a flag (others' flags may share a name)


def _add_engine_flags(parser, group) -> None:
    import msgspec

    taken = set(parser._option_string_actions)  # e.g. the verifier's --concurrency
    made: set[str] = set()
    for tag, engine in ENGINES.items():
        names = [f.name for f in msgspec.structs.fields(engine)
                 if f.name not in _BY_HAND and f.name not in made
                 and "--" + f.name.replace("_", "-") not in taken]
        shared = [n for n in names if sum(n in {f.name for f in msgspec.structs.fields(e)}
                                          for e in ENGINES.values()) > 1]
        own = [n for n in names if n not in shared]
        types_ = {"batch_size": positive_int, "tensor_parallel_size": positive_int}
        if shared:
            add_struct_flags(group, engine, only=shared, types_=types_,
                             default_note="the backend's")
        if own:
            # Not a real msgspec field spelling: the help says which backend reads the flag.
            before = set(group._group_actions)
            add_struct_flags(group, engine, only=own, types_=types_)
            for action in set(group._group_actions) - before:
                if not action.help.startswith(f"{tag}:"):
                    action.help = f"{tag}: {action.help}"
        made.update(names)
    _MADE.update(made)


def _engine_flags_given(args, backend: str) -> dict:
    """The engine flags given on the command line, refused when --backend does not read them."""
    from halo_forge.cli.flags import given

    mine = {k: v for k, v in given(ENGINES[backend], args).items() if k in _MADE}
    for tag, engine in ENGINES.items():
        for name in given(engine, args):
            if name in _MADE and name not in mine:
                flag = "--" + name.replace("_", "-")
                raise HaloError(f"{flag} is a {tag} setting; --backend {backend} does not use "
                                f"it (drop it or pass --backend {tag})")
    return mine


def load_benchmark_problems(args) -> tuple[list, str]:
    """(problems, dataset label) from --prompts FILE or --dataset NAME."""
    from halo_forge.data import prepare, registry

    prompts, dataset = args.prompts, args.dataset
    if prompts and dataset:
        raise HaloError("pass --prompts FILE or --dataset NAME, not both")
    if prompts and not Path(prompts).exists():
        if prompts in registry.DATASETS:
            dataset, prompts = prompts, None
        else:
            raise HaloError(f"--prompts {prompts}: no such file (and not a dataset name: "
                            f"{', '.join(registry.DATASETS)})")
    if prompts:
        if args.from_paths or args.split:
            raise HaloError("--from and --split go with --dataset, not --prompts")
        problems = registry.load_problems("local", from_paths=[prompts])
        label = Path(prompts).name
    elif dataset:
        spec = registry.get_spec(dataset)
        which = args.split or ("test" if spec.official_split else "all")
        if not 0.0 <= args.test_fraction <= 1.0:
            raise HaloError("--test-fraction must be between 0 and 1")
        problems = registry.load_problems(dataset, from_paths=args.from_paths)
        problems = prepare.select(problems, spec=spec, which=which, seed=args.split_seed,
                                  test_fraction=args.test_fraction, limit=None)
        label = dataset if which == "all" else f"{dataset}:{which}"
    else:
        raise HaloError("benchmark run: pass --prompts FILE or --dataset NAME")
    if args.limit is not None:
        problems = problems[: args.limit]
    if not problems:
        raise HaloError(f"{label}: no problems to benchmark")
    return problems, label


def _backend_config(args):
    from halo_forge.config import adapter_lora_rank, check_lora_rank
    from halo_forge.model_loading import is_adapter_dir

    common = {"model": args.model, "adapter": args.adapter, "system": args.system}
    values = {**common, **_engine_flags_given(args, args.backend)}
    try:
        if args.backend == "vllm":
            if args.seed is not None:
                values["seed"] = args.seed
            config = VLLMConfig(**values)
            adapter = args.adapter or (args.model if is_adapter_dir(args.model) else "")
            if adapter:
                check_lora_rank(adapter_lora_rank(adapter), config,
                                key=f"the adapter {adapter}'s rank")
            return config
        return ENGINES[args.backend](**values)
    except ValueError as exc:
        raise HaloError(f"benchmark run --backend {args.backend}: {exc}".replace(
            "generation.engine.max_lora_rank", "--max-lora-rank")) from None


@contextlib.contextmanager
def _progress(quiet: bool, total: int) -> Iterator[Callable[[int, int], None] | None]:
    """The verify bar of a benchmark run (none with --quiet): `evaluate` reports (done, total)
    and the bar advances by what is new."""
    from halo_forge.progress import Progress

    if quiet:
        yield None
        return
    with Progress().task("benchmark: verify", total=total) as bar:
        seen = 0

        def report(done: int, _total: int) -> None:
            nonlocal seen
            bar.advance(done - seen)
            seen = done

        yield report


def _run(args) -> int:
    import anyio
    import msgspec

    from halo_forge.benchmark_eval import check_ks, evaluate
    from halo_forge.generate import SamplingSettings, make_backend
    from halo_forge.records import untested_warning
    from halo_forge.verify.config import VerifierConfig

    ks, note = choose_ks(args.k, args.samples)
    ks = check_ks(ks, args.samples)  # before loading anything
    if args.output is not None:
        check_output_dir(args.output, what="benchmark run --output")
    if not args.model and not args.adapter:
        raise HaloError("benchmark run: pass --model (a Hugging Face id, a local folder or an "
                        "adapter folder)")
    try:
        sampling = SamplingSettings(temperature=args.temperature, top_p=args.top_p,
                                    max_new_tokens=args.max_new_tokens, seed=args.seed)
        verifier = VerifierConfig(verifier=args.verifier, concurrency=args.concurrency)
    except (ValueError, msgspec.ValidationError) as exc:
        raise HaloError(f"benchmark run: {exc}") from None
    cluster = cluster_settings(args)
    engine = _backend_config(args)  # the engine's flags checked before anything loads
    if note and not args.quiet:  # after the checks, so that a usage error stays one line
        print(note, file=sys.stderr)
    problems, label = load_benchmark_problems(args)
    bad = sorted({p.language for p in problems} - set(verifier.languages))
    if bad:
        raise HaloError(f"{label} has {', '.join(bad)} problems but --verifier {args.verifier} "
                        f"handles {', '.join(verifier.languages)}: use --verifier auto")
    warning = untested_warning(problems, label)
    if warning:
        print(f"benchmark: {warning}", file=sys.stderr)
    if not args.quiet:
        print(f"benchmark: {len(problems)} problems from {label}, {args.samples} samples each, "
              f"pass@k for k in {ks}", file=sys.stderr)

    backend = make_backend(engine)
    try:
        with _progress(args.quiet, len(problems) * args.samples) as report:
            summary = anyio.run(lambda: evaluate(
                problems=problems, backend=backend, samples=args.samples, ks=ks,
                verifier_config=verifier, cluster=cluster, output_dir=args.output,
                sampling=sampling,
                dataset=label, progress=report, meta={"command": "benchmark run"},
            ))
    finally:
        backend.close()
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(summary)).decode() + "\n")
    else:
        print(format_summary(summary))
    if args.output is not None and not args.quiet:
        print(f"benchmark: report in {args.output}/report.md", file=sys.stderr)
    return 0


def format_summary(summary) -> str:
    who = summary.model + (f" + {summary.adapter}" if summary.adapter else "")
    lines = [(f"{who} on {summary.dataset} ({summary.problems} problems, n={summary.n}, "
             f"verifier {summary.verifier})"),
             f"{'k':>4}  {'pass@k' if summary.pass_at_k else 'run@k':>8}  {'compile@k':>9}"]
    # No tests anywhere: the first column is run@k (ran, exit 0), labelled so, never pass@k.
    first = summary.pass_at_k or summary.run_at_k
    for k in summary.ks:
        p, c = first.get(k), summary.compile_at_k.get(k)
        lines.append(f"{k:>4}  {'n/a' if p is None else f'{100 * p:.1f}%':>8}  "
                     f"{'n/a' if c is None else f'{100 * c:.1f}%':>9}")
    lines.append(f"solved {summary.solved}/{summary.problems}; {summary.samples_per_s:.2f} "
                 f"samples/s; {summary.wall_s:.1f} s")
    if summary.sandbox_errors or summary.generation_failed:
        lines.append(f"left out of scoring: {summary.sandbox_errors} sandbox errors, "
                     f"{summary.generation_failed} samples not generated")
    return "\n".join(lines)


def _compare(args) -> int:
    import msgspec

    from halo_forge.benchmark_report import compare_runs, format_comparison

    comparison = compare_runs(args.a, args.b)
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(comparison)).decode() + "\n")
    else:
        print(format_comparison(comparison))
    return 0
