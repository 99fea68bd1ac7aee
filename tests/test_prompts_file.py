"""Prompts JSONL as people write them: rows with only `prompt`, no `id`, a default language."""

from __future__ import annotations

import json

import pytest

from halo_forge.config import DataSection
from halo_forge.errors import HaloError
from halo_forge.pipeline import load_prompts


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_everything_missing_is_named_at_once(tmp_path):
    f = _write(tmp_path / "p.jsonl", [{"prompt": "add two numbers"}, {"title": "x"},
                                      {"prompt": "sort", "language": "python"}])
    with pytest.raises(HaloError) as caught:
        load_prompts(f)
    message = str(caught.value)
    assert "`language`" in message and "2 lines (1, 2)" in message
    assert "`prompt`" in message and "1 line (2)" in message
    assert "`id`" not in message.split("; each line")[0]  # an id is never required
    assert "\n" not in message


def test_rows_without_id_get_stable_distinct_ids_and_the_default_language(tmp_path):
    rows = [{"prompt": "add two numbers"}, {"prompt": "sort a list"},
            {"prompt": "add two numbers"}, {"prompt": "reverse", "language": "rust", "id": "r1"}]
    f = _write(tmp_path / "p.jsonl", rows)
    first = load_prompts(f, language=DataSection(languages=["python"]).default_language())
    again = load_prompts(f, language="python")
    assert [p.id for p in first] == [p.id for p in again]  # stable across reads (resumes)
    assert len({p.id for p in first}) == 4 and first[3].id == "r1"
    assert [p.language for p in first] == ["python", "python", "python", "rust"]
    # The id follows the prompt, not the line: moving a row keeps its id.
    moved = load_prompts(_write(tmp_path / "q.jsonl", [rows[1], rows[0]]), language="python")
    assert moved[0].id == first[1].id and moved[1].id == first[0].id


def test_one_kept_language_is_the_default_and_several_are_not():
    assert DataSection(languages=["cpp"]).default_language() == "cpp"
    assert DataSection(languages=["cpp", "c"]).default_language() is None
    assert DataSection().default_language() is None
    # data.language names the default outright, whatever languages are kept.
    assert DataSection(language="rust").default_language() == "rust"
    assert DataSection(language="c", languages=["c", "cpp"]).default_language() == "c"


def test_a_default_language_that_is_filtered_out_or_unknown_is_refused():
    with pytest.raises(ValueError, match="data.language 'c' is not among data.languages"):
        DataSection(language="c", languages=["python"])
    with pytest.raises(ValueError, match="unknown language 'cobol'"):
        DataSection(language="cobol")


def test_raft_train_language_flag_is_the_default_for_rows_without_one(tmp_path):
    from halo_forge.cli import build_parser
    from halo_forge.cli.raft import build_config

    f = _write(tmp_path / "p.jsonl", [{"prompt": "print 1", "test_code": "assert True"}])
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    argv = ["raft", "train", "--checkpoint", str(model), "--prompts", f, "--output",
            str(tmp_path / "out")]
    parser = build_parser()
    with pytest.raises(HaloError, match="raft train --language python"):
        build_config(parser.parse_args(argv))
    config, _ = build_config(parser.parse_args([*argv, "--language", "python"]))
    assert config.data.language == "python"
    assert [p.language for p in load_prompts(f, language=config.data.default_language())] \
        == ["python"]


def test_a_complete_row_loads_as_before_and_a_bad_value_names_its_line(tmp_path):
    good = {"id": "a", "language": "python", "prompt": "p", "test_code": "assert True"}
    assert load_prompts(_write(tmp_path / "g.jsonl", [good]))[0].test_code == "assert True"
    bad = _write(tmp_path / "b.jsonl", [good, {"prompt": "p", "language": "cobol"}])
    with pytest.raises(HaloError, match=r"b\.jsonl:2: not a problem"):
        load_prompts(bad)
