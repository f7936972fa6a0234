"""idres verify's progress on the terminal (idres/verify_client.py): redrawn on a
terminal, a line now and then into a file, and a last line either way."""

from __future__ import annotations

import io

from idres.verify_client import NOT_A_TTY_EVERY, TTY_EVERY, Shown


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_at_most_every_fifth_of_a_second() -> None:
    out = _Tty()
    shown = Shown(out=out, started=100.0)
    for k in range(50):  # 50 updates within 0.49 s
        shown.update(1000 * k, 100_000, now=101.0 + k * 0.01)
    lines = out.getvalue().split("\r")[:-1]
    assert len(lines) == 3  # at 101.0, 101.2, 101.4
    assert lines[-1] == (
        "verify: 40,000 of 100,000 records checked (40%), 28,571/s, about 2 s left"
    )
    shown.done(100_000, now=102.0)
    assert out.getvalue().endswith("records checked in 2.0 s (50,000/s)" + " " * 20 + "\n")
    assert TTY_EVERY == 0.2


def test_into_a_file_a_line_every_ten_seconds_not_a_flood() -> None:
    out = io.StringIO()
    shown = Shown(out=out, started=0.0)
    for k in range(1, 301):  # 30 s of updates, ten a second
        shown.update(k * 100, 30_000, now=k / 10)
    lines = out.getvalue().splitlines()
    assert NOT_A_TTY_EVERY == 10.0
    assert len(lines) == 3  # at 0.1 s, 10.1 s, 20.1 s
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("verify: 100 of 30,000 records checked (0%)")
    assert lines[1].startswith("verify: 10,")
