"""Records: validation, the single Verdict, and JSON/msgpack round trips with schema evolution."""

from __future__ import annotations

import msgspec
import pytest

from halo_forge import records
from halo_forge.records import Example, IOTest, Message, Problem, Sample
from tests.util import modules_loaded_by


def test_the_verifiers_verdicts_are_the_schemas_records(tmp_path) -> None:
    # What the verifier returns is what shards store: it decodes as RECORD_TYPES' Verdict
    # and compares equal (a second Verdict class with the same fields would not).
    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import Verifier
    from halo_forge.verify.types import VerifySample

    config = VerifierConfig(cache=False, pch=False, cache_dir=str(tmp_path))
    verdict = Verifier(config).prepare(VerifySample(id="s", completion="no code at all"))
    assert verdict.status in records.STATUSES
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(verdict),
                                     type=records.RECORD_TYPES["Verdict"])
    assert decoded == verdict and decoded.status == "no_code"


STAGES = ("halo_forge.verify", "halo_forge.generate", "halo_forge.raft", "halo_forge.rollout",
          "halo_forge.benchmark", "halo_forge.sandbox", "halo_forge.train", "halo_forge.pipeline")


def test_the_schema_imports_no_stage() -> None:
    loaded = modules_loaded_by("import halo_forge.records")
    assert "halo_forge.records" in loaded and [m for m in loaded if m.startswith(STAGES)] == []


def test_generation_makes_samples_without_the_verifier() -> None:
    # Making a sample (where extraction used to happen, behind a lazy import) loads nothing
    # of the verifier or of RAFT: generation returns completions, the verifier extracts.
    loaded = modules_loaded_by(
        "from halo_forge.generate.base import GenerationParams, make_sample\n"
        "from halo_forge.records import Problem\n"
        "s = make_sample(Problem(id='p', language='python', prompt='x'), cycle=0, index=0,\n"
        "                completion='```python\\nprint(1)\\n```', prompt_tokens=1,\n"
        "                completion_tokens=1, params=GenerationParams())\n"
        "assert s.completion.startswith('```') and s.code == ''\n")
    others = [m for m in loaded if m.startswith(STAGES) and not m.startswith("halo_forge.generate")]
    assert "halo_forge.generate.base" in loaded and others == []


def test_problem_round_trips_through_json_and_msgpack() -> None:
    p = Problem(id="x/1", language="cpp", prompt="add", io_tests=[IOTest(stdin="1 2", stdout="3")],
                reference="int main(){}", source="t", difficulty=800.0)
    for enc, dec in ((msgspec.json.encode, msgspec.json.decode),
                     (msgspec.msgpack.encode, msgspec.msgpack.decode)):
        assert dec(enc(p), type=Problem) == p
    assert p.tests_kind == "io"
    assert Problem(id="a", language="c", prompt="p").tests_kind == "none"


@pytest.mark.parametrize(
    "row, match",
    [
        ({"id": "a", "language": "java", "prompt": "p"}, "language"),
        ({"id": "a", "language": "c", "prompt": "   "}, "prompt must not be empty"),
        ({"id": "", "language": "c", "prompt": "p"}, "id must not be empty"),
        ({"id": "a", "language": "c", "prompt": "p", "promt": "typo"}, "unknown field"),
    ],
)
def test_problem_rejects_bad_rows(row: dict, match: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=match):
        msgspec.convert(row, Problem)


def test_example_needs_exactly_one_of_messages_or_text() -> None:
    Example(id="a", text="hi")
    Example(id="a", messages=[Message(role="user", content="hi")])
    with pytest.raises(ValueError):
        Example(id="a")
    with pytest.raises(ValueError):
        Example(id="a", text="t", messages=[Message(role="user", content="hi")])
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"id": "a", "messages": [{"role": "robot", "content": "x"}]}, Example)


def test_sample_decodes_old_rows_with_defaults() -> None:
    s = msgspec.json.decode(b'{"id": "p/c0/s0", "problem_id": "p"}', type=Sample)
    assert s.cycle == 0 and s.params.temperature == 1.0 and s.code == ""
