"""`halo-forge data ...`: inspect / export / import shards, prepare datasets, generate problems.

Light at import time: loaders, `datasets` and `httpx` are imported inside the handlers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from halo_forge.argtypes import positive_int
from halo_forge.cli.parser import add_group
from halo_forge.cli.verify import add_verifier_flags
from halo_forge.errors import HaloError
from halo_forge.paths import check_output_dir, check_output_file


def register(subparsers) -> None:
    sub = add_group(subparsers, "data", help="prepare, generate, inspect and convert data")

    p = sub.add_parser("inspect", help="print a shard (or a folder of them) as JSONL")
    p.add_argument("path", type=Path, help="a .shard file or a folder of them")
    p.add_argument("--limit", type=int, default=None, help="print at most N records")
    p.add_argument("--partial", action="store_true",
                   help="read the complete frames of an unfinished or damaged shard")
    p.set_defaults(handler=_inspect)

    p = sub.add_parser("export", help="shards -> JSONL; a run's kept samples -> a dataset",
                       description="Two forms. `data export SHARDS --out FILE.jsonl`: records "
                       "as JSONL. `data export RUN_DIR --format parquet|jsonl --output DIR "
                       "[--cycle N|all]`: each cycle's kept samples with their verdicts as a "
                       "dataset folder (data/cycle_N.*, README.md card) that `datasets` loads.")
    p.add_argument("path", type=Path, help="a .shard file or a folder of them; or a run folder "
                   "(with --format)")
    p.add_argument("--out", type=Path, help="JSONL file to write (shards form)")
    p.add_argument("--partial", action="store_true",
                   help="export the complete frames of an unfinished or damaged shard")
    p.add_argument("--format", dest="fmt", help="run form: parquet or jsonl")
    p.add_argument("--output", type=Path, help="run form: the dataset folder to create")
    p.add_argument("--cycle", default="all", help="run form: a cycle number or all (default)")
    p.set_defaults(handler=_export)

    p = sub.add_parser("import", help="JSONL -> shards")
    p.add_argument("path", type=Path, help="JSONL file, one record per line")
    p.add_argument("--type", dest="record_type", required=True,
                   choices=("Problem", "Sample", "Verdict", "Example"), help="record type")
    p.add_argument("--out", type=Path, required=True, help="folder to write the shards into")
    p.add_argument("--prefix", default="part", help="shard file name prefix (default: part)")
    p.add_argument("--max-mb", type=float, default=256.0, help="size bound per shard file")
    p.set_defaults(handler=_import)

    p = sub.add_parser("prepare", help="a dataset -> SFT text, prompts and shards")
    p.add_argument("--list", action="store_true", help="list the datasets and exit")
    p.add_argument("--dataset", help="dataset name (see --list)")
    p.add_argument("--output", type=Path, help='SFT JSONL to write ({"text": ...} per line)')
    p.add_argument("--prompts", type=Path, help="prompts JSONL to write (for RAFT, benchmarks)")
    p.add_argument("--shards", type=Path, help="folder for Problem and Example shards")
    p.add_argument("--split", choices=("train", "test", "all"), default="train",
                   help="which problems: train, the held-out test, or all (default train; the "
                   "official split where the dataset has one, else --test-fraction by --seed)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of problems held out as test (datasets without an official split)")
    p.add_argument("--limit", type=int, default=None, help="at most N problems")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the selection")
    p.add_argument("--from", dest="from_paths", type=Path, action="append", default=[],
                   metavar="PATH", help="a local copy instead of the hub (JSONL, Parquet, or a "
                   "save_to_disk folder); repeat to merge sources")
    p.add_argument("--field", action="append", metavar="FIELD=COLUMN",
                   help="local: which column holds a field (id, language, prompt, reference, "
                   "io_tests, test_code, title, difficulty)")
    p.add_argument("--language", help="keep only problems in this language (local: the "
                   "language when no column says)")
    p.add_argument("--tokenizer", help="render SFT text with this local tokenizer's chat "
                   "template (default: ChatML)")
    p.add_argument("--system", default=None, help="system prompt ('' for none)")
    p.add_argument("--verify-references", action="store_true",
                   help="run every reference solution through the verifier; drop failures")
    p.add_argument("--audit", action="store_true",
                   help="drop problems whose tests accept a wrong program (see `data audit`; "
                   "results cached) and those whose reference fails")
    p.add_argument("--concurrency", type=positive_int, default=None,
                   help="samples verified at once by --audit (default: [verifier] concurrency, "
                   "else the CPU count)")
    p.set_defaults(handler=_prepare)

    p = sub.add_parser(
        "audit", help="find problems whose tests accept wrong programs (mutants of the reference)",
        description="For each problem: verify its reference, then wrong programs derived from it "
        "(flipped comparisons, off-by-one bounds, swapped operators, dropped statements, constant "
        "results, the first test's output printed verbatim). A problem is WEAK when its tests "
        "accept one that the audit has seen print something else than the reference on an input "
        "made from the tests' own. Results are cached in <[verifier] cache_dir>/audit/.")
    p.add_argument("dataset", help="dataset name (see `data prepare --list`) or a problems JSONL")
    p.add_argument("--from", dest="from_paths", type=Path, action="append", default=[],
                   metavar="PATH", help="a local copy instead of the hub (as for `data prepare`)")
    p.add_argument("--field", action="append", metavar="FIELD=COLUMN",
                   help="local: which column holds a field (as for `data prepare`)")
    p.add_argument("--language", help="only problems in this language")
    p.add_argument("--limit", type=int, default=None, help="audit the first N problems only")
    p.add_argument("--mutants", type=positive_int, default=None,
                   help="wrong programs per problem (default 24)")
    p.add_argument("--inputs", type=positive_int, default=None,
                   help="made-up inputs per problem to tell mutants from the reference (default 24)")
    p.add_argument("--config", type=Path, help="pipeline.toml whose [verifier] table to use")
    add_verifier_flags(p)
    p.add_argument("--out", type=Path, help="write every problem's result here (JSONL)")
    p.add_argument("--no-cache", action="store_true", help="audit everything again; write no cache")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also print the problems that passed, and each weak problem's every mutant")
    p.set_defaults(handler=_audit)

    p = sub.add_parser("generate", help="generate verified problems with an LLM API")
    p.add_argument("--topic", required=False, help="topic name or path to a topic .toml")
    p.add_argument("--list-topics", action="store_true", help="list the topics and exit")
    p.add_argument("--backend", choices=("deepseek", "openai", "openai-compatible"),
                   default="deepseek")
    p.add_argument("--model", help="model name (default: the backend's)")
    p.add_argument("--base-url", help="API base URL (required for openai-compatible), e.g. "
                   "http://localhost:8000/v1")
    p.add_argument("--output", type=Path, help="problems JSONL (appended; a rerun continues)")
    p.add_argument("--count", type=int, default=10, help="problems to keep")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="give up after this many requests (default: 3 x count)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--topics-dir", type=Path, action="append", default=[],
                   help="extra folder of topic .toml files")
    p.set_defaults(handler=_generate)


def _inspect(args) -> int:
    import msgspec

    from halo_forge.shards import ShardReader, shard_paths

    if args.limit is not None and args.limit < 0:
        raise HaloError("--limit must be >= 0")
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    printed = total = 0
    types: set[str] = set()
    notes: list[str] = []
    paths = shard_paths(args.path)
    for path in paths:
        reader = ShardReader(path, allow_partial=args.partial)
        types.add(f"{reader.header.record_type} v{reader.header.schema_version}")
        for record in reader:
            total += 1
            if args.limit is None or printed < args.limit:
                out.write(encoder.encode(record) + b"\n")
                printed += 1
        if reader.recovery is not None and not reader.recovery.finished:
            notes.append(f"{path}: unfinished; {reader.recovery.describe()}")
    out.flush()
    for note in notes:
        print(note, file=sys.stderr)
    print(f"{total} records ({', '.join(sorted(types))}) in {len(paths)} file(s); "
          f"printed {printed}", file=sys.stderr)
    return 0


def _export(args) -> int:
    from halo_forge.data.jsonl import write_jsonl
    from halo_forge.shards import read_shards

    if args.fmt is not None or args.output is not None:
        return _export_run(args)
    if args.out is None:
        raise HaloError("data export: give --out FILE.jsonl (shards to JSONL), or --format "
                        "parquet|jsonl --output DIR (a run's kept samples as a dataset)")
    check_output_file(args.out, what="data export --out", input_paths=[args.path])
    n = write_jsonl(args.out, read_shards(args.path, allow_partial=args.partial))
    print(f"exported {n} records to {args.out}", file=sys.stderr)
    return 0


def _export_run(args) -> int:
    from halo_forge.data.export import export_run, summary

    if args.fmt is None or args.output is None or args.out is not None or args.partial:
        raise HaloError("data export RUN_DIR: give both --format parquet|jsonl and --output DIR "
                        "(--out and --partial belong to the shards form)")
    check_output_dir(args.output, what="data export --output")
    counts = export_run(args.path, args.output, fmt=args.fmt, cycle=args.cycle)
    print(summary(counts, args.output, args.fmt), file=sys.stderr)
    return 0


def _import(args) -> int:
    import msgspec

    from halo_forge.data.jsonl import read_jsonl
    from halo_forge.records import RECORD_TYPES
    from halo_forge.shards import ShardWriter

    record_type = RECORD_TYPES[args.record_type]
    check_output_dir(args.out, what="data import --out")

    def records():
        for n, row in read_jsonl(args.path):
            try:
                yield msgspec.convert(row, record_type)
            except msgspec.ValidationError as exc:
                raise HaloError(f"{args.path}:{n}: not a {args.record_type}: {exc}") from None

    with ShardWriter(args.out, record_type, prefix=args.prefix,
                     max_bytes=int(args.max_mb * (1 << 20))) as w:
        w.write_all(records())
    print(f"imported {w.records_written} {args.record_type} records into "
          f"{len(w.paths)} shard(s) in {args.out}", file=sys.stderr)
    return 0


def _prepare(args) -> int:
    from halo_forge.data import chat, prepare, registry
    from halo_forge.data.loaders import parse_mapping

    if args.list:
        _print_datasets(registry.listed_datasets())
        return 0
    if not args.dataset:
        raise HaloError("data prepare: pass --dataset NAME (or --list to see them)")
    if not 0.0 <= args.test_fraction <= 1.0:
        raise HaloError("--test-fraction must be between 0 and 1")
    if args.output is not None:
        check_output_file(args.output, what="data prepare --output", input_paths=args.from_paths)
    if args.prompts is not None:
        check_output_file(args.prompts, what="data prepare --prompts", input_paths=args.from_paths)
    if args.shards is not None:
        check_output_dir(args.shards, what="data prepare --shards")
    tokenizer = chat.load_tokenizer(args.tokenizer) if args.tokenizer else None
    report = prepare.prepare(
        dataset=args.dataset,
        which=args.split,
        seed=args.seed,
        test_fraction=args.test_fraction,
        limit=args.limit,
        from_paths=args.from_paths,
        mapping=parse_mapping(args.field),
        language=args.language,
        output=args.output,
        prompts=args.prompts,
        shards=args.shards,
        tokenizer=tokenizer,
        system=chat.DEFAULT_SYSTEM if args.system is None else (args.system or None),
        verify_references=args.verify_references,
        audit=args.audit,
        audit_config=_verifier_config(None, concurrency=args.concurrency) if args.audit else None,
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    return 0


def _verifier_config(path: Path | None, *, verifier: str | None = None, concurrency: int | None = None):
    """[verifier] from a pipeline.toml (or the defaults), with the command line's choices."""
    import msgspec

    from halo_forge.verify.config import VerifierConfig

    config = VerifierConfig()
    if path is not None:
        from halo_forge.config import load_config

        config = load_config(path)[0].verifier
    changes = {k: v for k, v in (("verifier", verifier), ("concurrency", concurrency)) if v is not None}
    return msgspec.structs.replace(config, **changes) if changes else config


def _audit(args) -> int:
    from halo_forge.data import audit, registry
    from halo_forge.data.loaders import parse_mapping

    dataset, from_paths = args.dataset, list(args.from_paths)
    if dataset not in registry.DATASETS:
        if Path(dataset).is_file() and not from_paths:
            dataset, from_paths = "local", [Path(dataset)]
        elif dataset.endswith((".jsonl", ".json", ".parquet")) or "/" in dataset:
            raise HaloError(f"data audit: {dataset}: no such file (a problems JSONL, or a dataset "
                            "name from `halo-forge data prepare --list`)")
        else:
            registry.get_spec(dataset)  # the one-line error naming the datasets
    if args.limit is not None and args.limit < 0:
        raise HaloError("--limit must be >= 0")
    config = _verifier_config(args.config, verifier=args.verifier, concurrency=args.concurrency)
    problems = registry.load_problems(dataset, from_paths=from_paths, mapping=parse_mapping(args.field),
                                      language=args.language)
    if args.language and dataset != "local":
        problems = [p for p in problems if p.language == args.language]
        if not problems:
            raise HaloError(f"--language {args.language}: {dataset} has no such problems")
    problems = problems[:args.limit] if args.limit is not None else problems
    # A local file's results are cached under its own name: the registry's stay as they were.
    name = dataset if not from_paths else "local-" + audit.paths_key(from_paths)
    out = None
    if args.out is not None:
        check_output_file(args.out, what="data audit --out", input_paths=from_paths)
        out = args.out.open("w", encoding="utf-8")
    import msgspec

    def shown(result) -> None:
        if out is not None:
            out.write(msgspec.json.encode(result).decode() + "\n")
        if result.status != "strong" or args.verbose:
            print(result.line(), flush=True)
        if args.verbose:
            for f in result.weak_by[1:]:
                print(f"        also {f.kind} {f.name}: {f.diff}")
            for f in result.unproven:
                print(f"        accepted, never seen to differ: {f.kind} {f.name}: {f.diff}")

    kwargs = {k: v for k, v in (("max_mutants", args.mutants), ("inputs", args.inputs)) if v is not None}
    try:
        results = audit.audit(problems, dataset=name, config=config, use_cache=not args.no_cache,
                              on_result=shown, **kwargs)
    finally:
        if out is not None:
            out.close()
    summary = audit.summarize(dataset if not from_paths else str(from_paths[0]), results)
    print(f"{summary.dataset}: {summary.text()}", file=sys.stderr)
    if not args.no_cache:
        print(f"results cached in {audit.cache_path(name, config)}", file=sys.stderr)
    return 0


def _print_datasets(datasets, width: int | None = None) -> None:
    """The datasets as a table when it fits the terminal, else one block per dataset with its
    lines wrapped to the width (a 230-column table is unreadable in a normal terminal)."""
    import os
    import shutil
    import textwrap

    from halo_forge.data.audit import cache_path, cached_summary

    width = width or shutil.get_terminal_size().columns
    # The weak share comes from the last `data audit` (auditing here would take minutes).
    weak = {name: cached_summary(name) for name in datasets}
    weak_text = {name: (f"{s.weak}/{s.audited}" if s is not None and s.audited else "-")
                 for name, s in weak.items()}
    rows = [("NAME", "LANGUAGE", "SIZE", "TESTS", "WEAK", "SOURCE")]
    rows += [(s.name, s.language, s.size, s.tests, weak_text[s.name], s.origin)
             for s in datasets.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    if sum(widths) + 2 * 5 <= width:
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    else:
        for s in datasets.values():
            print(s.name)
            for label, value in (("language", s.language), ("size", s.size),
                                 ("tests", s.tests), ("weak tests", weak_text[s.name]),
                                 ("source", s.origin)):
                print(textwrap.fill(f"{label}: {value}", width, initial_indent="  ",
                                    subsequent_indent="    "))
    print(textwrap.fill("WEAK: problems whose tests accept a wrong program / problems audited, from "
                        "the last `halo-forge data audit NAME` (cached in "
                        f"{os.path.dirname(cache_path('x'))}); - when not audited", width,
                        break_on_hyphens=False, break_long_words=False))
    for s in datasets.values():
        if s.notes:
            print(textwrap.fill(f"{s.name}: {s.notes}", width, initial_indent="  ",
                                subsequent_indent="    "))


def _generate(args) -> int:
    from halo_forge.data import synthesize

    if args.list_topics:
        for name, path in synthesize.topic_files(args.topics_dir).items():
            t = synthesize.load_topic(path)
            print(f"{name:<16} {t.language:<7} {t.tests:<10} {t.description}")
        return 0
    if not args.topic or not args.output:
        raise HaloError("data generate needs --topic and --output (see --list-topics)")
    check_output_file(args.output, what="data generate --output")  # appended to by a rerun
    options = synthesize.GenerateOptions(
        topic=args.topic, output=str(args.output), backend=args.backend,
        model=args.model or "", base_url=args.base_url or "", count=args.count,
        concurrency=args.concurrency, max_attempts=args.max_attempts,
        temperature=args.temperature, topics_dir=[str(d) for d in args.topics_dir])
    return synthesize.main(options)
