"""io_tests output comparison."""

from __future__ import annotations

from halo_forge.verify.compare import outputs_match


def test_trailing_whitespace_and_blank_lines_ignored():
    assert outputs_match(b"1 2  \n3\n\n\n", "1 2\n3")
    assert outputs_match("1\r\n2\r\n", "1\n2\n")
    assert outputs_match(b"", "")


def test_lines_mode_is_strict_inside_lines():
    assert not outputs_match("1  2\n", "1 2\n")
    assert not outputs_match("1\n2\n", "1 2\n")
    assert not outputs_match(" 1\n", "1\n")
    assert not outputs_match("1\n2\n", "1\n")
    assert not outputs_match("", "0")


def test_tokens_mode_ignores_layout():
    assert outputs_match("1\n2\n", "1 2", mode="tokens")
    assert not outputs_match("1 2 3", "1 2", mode="tokens")


def test_float_tolerance():
    assert outputs_match("0.3333333\n", "0.333333333\n", float_tolerance=1e-6)
    assert not outputs_match("0.3334\n", "0.3333\n", float_tolerance=1e-6)
    assert outputs_match("1000000.5\n", "1000000.0\n", float_tolerance=1e-6)  # relative
    assert not outputs_match("nan\n", "1.0\n", float_tolerance=1e-6)
    assert not outputs_match("0.5\n", "0.5000001\n")  # exact without tolerance
    assert outputs_match("yes 0.5", "yes 0.50000001", float_tolerance=1e-6, mode="tokens")
    assert not outputs_match("no 0.5", "yes 0.5", float_tolerance=1e-6)


def test_invalid_utf8_does_not_crash():
    assert not outputs_match(b"\xff\xfe", "1")
