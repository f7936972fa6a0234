"""Patterns /openapi.json states for write bodies, against the rules the server applies."""

from __future__ import annotations

import re

import pytest

from registry.openapi import TYPE_NAME
from schemas.record import KNOWN_HS_TYPES, DataFormat, _type_problems


@pytest.mark.parametrize(
    "name",
    [
        "URL",
        "URL.mobile",
        "10320/loc",
        "gs1:defaultLink",
        "a" * 128,
        "a" * 129,
        "",
        "x y",
        "HS_",
        "HS_FOO",
        "HS_ADMINX",
        "é",
        *sorted(KNOWN_HS_TYPES),
    ],
)
def test_the_type_pattern_is_the_record_s_type_name_rule(name: str) -> None:
    refused = any(field == "type" for field, _ in _type_problems(name, DataFormat.STRING))
    assert bool(re.fullmatch(TYPE_NAME, name)) is not refused
