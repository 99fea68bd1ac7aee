"""`halo-forge benchmark run` on the tiny model (base and SFT adapter) and `benchmark compare`."""

from __future__ import annotations

import json

import pytest

from halo_forge.benchmark_records import BenchmarkSummary, ProblemResult, read_results, read_summary
from halo_forge.benchmark_report import write_outputs
from halo_forge.cli import main
from halo_forge.train import FINAL_DIR

PNG = b"\x89PNG\r\n\x1a\n"


def bench(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["benchmark", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    """Five built-in C and Python problems in the `data prepare --prompts` format."""
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    assert main(["data", "prepare", "--dataset", "builtin", "--split", "all", "--limit", "40",
                 "--prompts", str(path)]) == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    keep = [r for r in rows if r["language"] in ("c", "python")][:5]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return path


def test_run_writes_every_report_file_from_a_tiny_model(tiny_model, prompts_file, tmp_path, capsys):
    out = tmp_path / "base"
    rc, stdout, err = bench(capsys, "run", "--model", str(tiny_model), "--prompts",
                            str(prompts_file), "--samples", "3", "--k", "1,3",
                            "--max-new-tokens", "32", "--seed", "0", "--output", str(out),
                            "--json")
    assert rc == 0, err
    summary = read_summary(out)
    assert json.loads(stdout)["pass_at_k"] == {str(k): v for k, v in summary.pass_at_k.items()}
    assert summary.model == str(tiny_model) and summary.adapter == ""
    assert summary.backend == "transformers" and summary.dataset == "prompts.jsonl"
    assert (summary.problems, summary.n, summary.ks) == (5, 3, [1, 3])
    assert summary.sampling.max_new_tokens == 32 and summary.sampling.seed == 0
    assert summary.samples_generated == 15 and summary.completion_tokens > 0
    assert set(summary.pass_at_k) == set(summary.compile_at_k) == {1, 3}
    assert all(0.0 <= v <= 1.0 for v in [*summary.pass_at_k.values(), *summary.compile_at_k.values()])
    results = read_results(out)
    assert len(results) == 5
    for r in results:  # every sample has exactly one verdict
        assert sum(r.status_counts.values()) == 3 == r.requested
    assert summary.status_counts == {
        s: sum(r.status_counts.get(s, 0) for r in results) for s in summary.status_counts}
    assert len((out / "samples.jsonl").read_text().splitlines()) == 15
    assert (out / "pass_at_k.png").read_bytes()[:8] == PNG
    report = (out / "report.md").read_text()
    assert str(tiny_model) in report and "## pass@k (all tests passed)" in report
    assert "samples/s" in report


@pytest.mark.slow
def test_base_model_against_its_sft_adapter(tiny_model, trained_adapter, prompts_file, tmp_path,
                                            capsys):
    _, run_dir = trained_adapter
    adapter = run_dir / FINAL_DIR
    common = ["--prompts", str(prompts_file), "--samples", "2", "--k", "1,2",
              "--max-new-tokens", "96", "--temperature", "0.3", "--seed", "0", "--quiet"]
    assert bench(capsys, "run", "--model", str(tiny_model), *common,
                 "--output", str(tmp_path / "base"))[0] == 0
    # The adapter folder alone: its base model comes from its metadata.
    rc, stdout, err = bench(capsys, "run", "--model", str(adapter), *common,
                            "--output", str(tmp_path / "sft"))
    assert rc == 0, err
    base, sft = read_summary(tmp_path / "base"), read_summary(tmp_path / "sft")
    assert sft.adapter == str(adapter) and sft.model == str(tiny_model) == base.model
    assert "+ adapter" not in base.model and str(adapter) in stdout
    # Same prompts, seed and sampling: only the adapter differs, so different completions
    # show it was applied (a silently ignored adapter would reproduce the base run exactly).
    def completions(run: str) -> dict[str, str]:
        lines = (tmp_path / run / "samples.jsonl").read_text().splitlines()
        return {row["id"]: row["completion"] for row in map(json.loads, lines)}

    base_out, sft_out = completions("base"), completions("sft")
    assert base_out.keys() == sft_out.keys() and len(base_out) == 10
    assert sum(base_out[i] != sft_out[i] for i in base_out) >= 5

    rc, stdout, err = bench(capsys, "compare", str(tmp_path / "base"), str(tmp_path / "sft"))
    assert rc == 0, err
    assert "pass@1" in stdout and "compile@2" in stdout and "problems compared: 5" in stdout


def _fake_run(path, *, passed: dict[str, int], compiled: dict[str, int], n: int = 4) -> None:
    from halo_forge.benchmark_eval import rates

    results = [ProblemResult(id=pid, language="c", n=n, requested=n, passed=passed[pid],
                             compiled=compiled[pid]) for pid in passed]
    r = rates(results, [1, 4])
    summary = BenchmarkSummary(model="m", dataset="d", verifier="gcc", n=n, ks=[1, 4],
                               problems=len(results), pass_at_k=r.pass_at_k,
                               compile_at_k=r.compile_at_k, scored_problems=r.scored_problems)
    write_outputs(path, summary, results)


def test_compare_prints_deltas_per_k_and_flipped_problems(tmp_path, capsys):
    _fake_run(tmp_path / "a", passed={"p1": 2, "p2": 0, "p3": 1}, compiled={"p1": 4, "p2": 1, "p3": 2})
    _fake_run(tmp_path / "b", passed={"p1": 0, "p2": 4, "p3": 1}, compiled={"p1": 4, "p2": 4, "p3": 2})
    rc, stdout, err = bench(capsys, "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert rc == 0, err
    # pass@1: A = (0.5 + 0 + 0.25) / 3 = 25.0%, B = (0 + 1 + 0.25) / 3 = 41.7%: +16.7 points
    assert "pass@1" in stdout and "25.0%" in stdout and "41.7%" in stdout and "+16.7" in stdout
    assert "solved in B, not in A (1): p2" in stdout
    assert "solved in A, not in B (1): p1" in stdout
    # compile@k is its own table, never mixed into pass@k
    assert stdout.index("compile@k (compiled)") > stdout.index("pass@4")
    rc, stdout, _ = bench(capsys, "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    data = json.loads(stdout)
    assert data["gained"] == ["p2"] and data["lost"] == ["p1"] and data["warnings"] == []


@pytest.mark.parametrize("argv,message", [
    (["run", "--model", "x", "--dataset", "builtin", "--samples", "5", "--k", "1,10"],
     "pass@10 needs at least 10 samples"),
    (["run", "--model", "x", "--dataset", "builtin", "--k", "1,five"], "comma-separated"),
    (["run", "--model", "x", "--prompts", "/nonexistent/p.jsonl"], "no such file"),
    (["run", "--model", "x", "--dataset", "builtin", "--verifier", "gcc"],
     "python, rust problems but --verifier gcc"),
    (["run", "--model", "x"], "--prompts FILE or --dataset NAME"),
    (["run", "--model", "x", "--dataset", "nosuch"], "unknown dataset"),
    (["compare", "/nonexistent/a", "/nonexistent/b"], "no benchmark summary"),
])
def test_bad_input_is_a_one_line_error(argv, message, capsys):
    rc, _, err = bench(capsys, *argv)
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_model_that_does_not_exist_is_a_one_line_error(tmp_path, prompts_file, capsys):
    rc, _, err = bench(capsys, "run", "--model", str(tmp_path / "missing-model"), "--prompts",
                       str(prompts_file), "--samples", "1", "--k", "1")
    assert rc == 2 and "cannot load" in err and "Traceback" not in err


@pytest.mark.parametrize(("samples", "expected"), [(4, "k in 1 "), (5, "k in 1,5 ")])
def test_samples_without_k_uses_the_default_ks_that_fit_and_says_which(samples, expected,
                                                                       capsys):
    # Stops at the missing prompts file, after the ks are chosen and checked.
    rc, _, err = bench(capsys, "run", "--model", "x", "--prompts", "/nonexistent/p.jsonl",
                       "--samples", str(samples))
    assert rc == 2 and "no such file" in err and "needs at least" not in err
    assert "no --k given" in err and expected in err


def test_samples_that_fit_every_default_k_use_them_all():
    from halo_forge.cli.benchmark import choose_ks

    assert choose_ks(None, 12) == ([1, 5, 10], "")
    assert choose_ks("2,3", 4) == ([2, 3], "")


def test_every_engine_setting_is_a_flag_and_a_flag_of_another_backend_is_refused(capsys):
    import msgspec

    from halo_forge.cli import build_parser
    from halo_forge.cli.benchmark import _BY_HAND, ENGINES, _backend_config

    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["benchmark"]._subparsers \
        ._group_actions[0].choices["run"]
    flags = set(run._option_string_actions)
    for engine in ENGINES.values():
        for f in msgspec.structs.fields(engine):
            # OpenAI's `concurrency` shares its name with the verifier's --concurrency.
            if f.name not in _BY_HAND and f.name != "concurrency":
                assert "--" + f.name.replace("_", "-") in flags, (engine.__name__, f.name)

    args = parser.parse_args(["benchmark", "run", "--model", "m", "--prompts", "p.jsonl",
                              "--backend", "vllm", "--max-model-len", "2048",
                              "--no-enable-sleep-mode", "--batch-size", "8", "--seed", "3"])
    config = _backend_config(args)
    assert (config.max_model_len, config.enable_sleep_mode, config.batch_size, config.seed) == \
        (2048, False, 8, 3)
    # Not given: the Struct's own default, the one pipeline.toml gets too.
    assert config.gpu_memory_utilization == ENGINES["vllm"]().gpu_memory_utilization

    code = main(["benchmark", "run", "--model", "m", "--prompts", "p.jsonl",
                 "--backend", "transformers", "--tensor-parallel-size", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--tensor-parallel-size is a vllm setting" in err and "\n" == err[-1]
    assert err.count("\n") == 1
