"""Command-line tables show text, never terminal controls (review of issue 14: a failed login
or a user agent is attacker-controlled and reaches `gateway audit`)."""

from __future__ import annotations

import pytest

from gateway.command import print_table, printable


def test_control_characters_are_shown_escaped() -> None:
    assert printable("alice") == "alice"
    assert printable("\x1b]8;;http://evil/\x07x") == "\\x1b]8;;http://evil/\\x07x"
    assert printable("a\nb\rc\x7f\x9b") == "a\\x0ab\\x0dc\\x7f\\x9b"
    assert printable("Юлия") == "Юлия"


def test_a_table_with_an_escape_sequence_prints_none(capsys: pytest.CaptureFixture[str]) -> None:
    print_table([("TYPE", "DETAIL"), ("login.failure", "login=\x1b[2Jgone")])
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "login=\\x1b[2Jgone" in out


def test_the_audit_output_is_written_whatever_the_log_level() -> None:
    """Review of issue 14: with logging.level WARNING the SIEM lines (INFO records of
    gateway.audit) must still be written, since the shared cursor moves on once handed over."""
    import logging

    from gateway.logs import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("WARNING")
        assert logging.getLogger("gateway.audit").isEnabledFor(logging.INFO)
        assert not logging.getLogger("gateway.grants").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("gateway.audit").setLevel(logging.NOTSET)
