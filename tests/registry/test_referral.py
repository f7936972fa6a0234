"""Where a write that reached the wrong node is sent: Location, and 307 on request."""

from __future__ import annotations

import pytest

from registry.referral import Referral, prefers_redirect, refer

HOLDER = "http://127.0.0.1:8010"


@pytest.mark.parametrize(
    ("fields", "prefers"),
    [
        ([], False),
        (["redirect"], True),
        (["Redirect"], True),
        (["respond-async, redirect"], True),
        (["wait=10", "redirect; strict"], True),
        (["return=minimal"], False),
        (["redirected"], False),
        (["no-redirect"], False),
    ],
)
def test_the_redirect_preference_is_a_token_of_any_prefer_line(
    fields: list[str], prefers: bool
) -> None:
    assert prefers_redirect(fields) is prefers


@pytest.mark.parametrize(
    ("holder", "prefer", "expected"),
    [
        (
            HOLDER,
            [],
            Referral(
                status=400,
                message="not here; it is held at http://127.0.0.1:8010",
                headers={"Location": HOLDER + "/api/handles/88.100.1/X?overwrite=false"},
            ),
        ),
        (
            HOLDER + "/",
            ["redirect"],
            Referral(
                status=307,
                message="not here; it is held at http://127.0.0.1:8010/",
                headers={
                    "Location": HOLDER + "/api/handles/88.100.1/X?overwrite=false",
                    "Preference-Applied": "redirect",
                },
            ),
        ),
        (None, ["redirect"], Referral(status=400, message="not here")),
    ],
)
def test_a_misdirected_write_names_the_holder_and_redirects_only_when_asked(
    holder: str | None, prefer: list[str], expected: Referral
) -> None:
    target = "/api/handles/88.100.1/X?overwrite=false"
    assert refer("not here", holder, target, prefer=prefer) == expected
