"""The Handle benchmark's pure parts (benchmarks/handle.py): requests built from the CNRI
client's captured bytes, the steps' judgement and the ratios. No server, no timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.handle import (
    BOUND_MS,
    TEMPLATES,
    answers_of,
    counters,
    cpu_ratios,
    cpu_split,
    failed,
    held,
    http_step,
    judged,
    ratios,
    request_bytes,
    table,
    top_frames,
    us_per_answer,
    vs_floor,
)
from schemas.handle_wire import (
    ENVELOPE_SIZE,
    Envelope,
    OpCode,
    ResolutionRequest,
    decode_request,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "handle"


def capture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# -- requests from the captures --------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "sent", "handle"),
    [
        ("resolve-udp-plain.bin", "resolve-udp-plain.bin", "88.100.1/ABC-123"),
        ("resolve-udp-plain.bin", "resolve-tcp-plain.bin", "88.100.1/ABC-123"),
        ("resolve-udp-plain.bin", "resolve-udp-utf8.bin", "88.100.1/Grüße-東京"),
        ("resolve-tcp-plain.bin", "resolve-tcp-utf8.bin", "88.100.1/Grüße-東京"),
        ("resolve-udp-types.bin", "resolve-udp-types.bin", "88.100.1/ABC-123"),
        ("resolve-udp-indexes.bin", "resolve-tcp-indexes.bin", "88.100.1/ABC-123"),
    ],
)
def test_a_built_request_is_byte_for_byte_what_the_client_sent(
    template: str, sent: str, handle: str
) -> None:
    want = capture(sent)
    built = request_bytes(
        capture(template),
        handle,
        request_id=int.from_bytes(want[8:12], "big"),
        expires=int.from_bytes(want[36:40], "big"),
    )
    assert built == want


@pytest.mark.parametrize(
    ("template", "types"),
    [("resolve-udp-plain.bin", ()), ("resolve-udp-types.bin", (b"URL", b"EMAIL"))],
)
def test_a_built_request_decodes_with_its_handle_id_and_expiration(
    template: str, types: tuple[bytes, ...]
) -> None:
    handle = "86.1000.12/a-suffix-longer-than-the-captured-one"
    built = request_bytes(capture(template), handle, request_id=123_456, expires=1_800_000_000)
    envelope = Envelope.decode(built)
    message = decode_request(envelope, built[ENVELOPE_SIZE:])
    assert envelope.request_id == 123_456
    assert message.header.opcode == OpCode.RESOLUTION
    assert message.header.expiration == 1_800_000_000
    assert message.header.op_flags == 0x19000000  # the client's defaults, kept
    assert message.body == ResolutionRequest(handle=handle.encode(), types=types)


def test_the_benchmark_sends_the_plain_captures() -> None:
    for path in TEMPLATES.values():
        raw = path.read_bytes()
        body = decode_request(Envelope.decode(raw), raw[ENVELOPE_SIZE:]).body
        assert body == ResolutionRequest(handle=b"88.100.1/ABC-123")


@pytest.mark.parametrize(
    "broken",
    [
        capture("resolve-udp-plain.bin")[:40],  # no handle
        capture("resolve-udp-plain.bin")[:44] + (200).to_bytes(4, "big") + b"x" * 10,
    ],
)
def test_a_template_without_a_whole_handle_is_refused(broken: bytes) -> None:
    with pytest.raises(ValueError, match="handle"):
        request_bytes(broken, "88.100.1/A", request_id=1, expires=1)


# -- steps, held rates, ratios ---------------------------------------------------------


def step(
    rate: float,
    p99: float = 2.0,
    *,
    lost: int = 0,
    errors: int | None = None,
    achieved: float | None = None,
    us: float | None = 20.0,
) -> dict[str, Any]:
    """A step as handleperf prints it (and http_step makes of loadgen's Result)."""
    sent = int(rate * 10)
    return {
        "offered_rate": rate,
        "achieved_rate": rate if achieved is None else achieved,
        "duration": 10.0,
        "sent": sent,
        "lost": lost,
        "errors": lost if errors is None else errors,
        "p50_ms": 0.5,
        "p99_ms": p99,
        "p999_ms": p99,
        "us_per_answer": us,
    }


@pytest.mark.parametrize(
    ("steps", "want"),
    [
        ([step(1000), step(2000), step(5000)], 5000),
        ([step(1000), step(2000, p99=12), step(5000)], 1000),  # a lucky step past a failed one
        ([step(1000, p99=BOUND_MS)], 1000),  # on the bound holds
        ([step(1000), step(2000, lost=20)], 2000),  # 0.1% lost: held
        ([step(1000), step(2000, lost=21)], 1000),  # past 0.1%
        ([step(1000), step(2000, errors=40)], 1000),  # an unexpected response code
        ([step(1000), step(2000, achieved=1800)], 1000),  # under 95% of the offered rate
        ([step(1000, p99=30)], None),
        ([], None),
    ],
)
def test_the_held_rate_is_the_top_of_the_unbroken_run_within_the_bound(
    steps: list[dict[str, Any]], want: float | None
) -> None:
    assert held(steps, BOUND_MS) == want


def test_failed_says_why() -> None:
    assert failed(step(1000)) == ""
    assert "p99 12.0 ms > 10 ms" in failed(step(1000, p99=12))
    assert "errors" in failed(step(1000, lost=100))


def test_ratios_are_each_transport_against_http_at_one_bound() -> None:
    steps = {
        "http": [step(1000), step(2000), step(5000, p99=7)],
        "handle_udp": [step(1000), step(2000), step(5000, p99=4), step(10_000, p99=6)],
        "handle_tcp": [step(1000), step(2000, p99=20)],
        "handle_tcp_per_request": [step(1000, p99=20)],
    }
    assert ratios(steps, 10.0) == {"udp": 2.0, "tcp": 0.2, "tcp_per_request": None}
    # at 5 ms HTTP held 2,000/s only
    assert ratios(steps, 5.0) == {"udp": 2.5, "tcp": 0.5, "tcp_per_request": None}
    verdict = judged(steps)
    assert verdict["held"]["10"] == {
        "http": 5000,
        "handle_udp": 10_000,
        "handle_tcp": 1000,
        "handle_tcp_per_request": None,
        "floor_tcp_per_request": None,
    }
    assert verdict["ratios"]["5"]["udp"] == 2.5


def test_the_connection_a_request_figures_are_read_beside_the_reference_server() -> None:
    steps = {
        "handle_tcp_per_request": [step(1000, us=60), step(2000, us=55), step(4000, p99=30, us=50)],
        "floor_tcp_per_request": [step(1000, us=50), step(2000, us=44), step(4000, us=40)],
    }
    # held 2,000/s against the reference's 4,000/s; CPU compared at 4,000/s, where both
    # answered in full (the face's late tail is not a cost)
    assert vs_floor(steps) == {"held": 0.5, "cpu": {"at": 4000, "ratio": 0.8}}
    # 1% lost at 4,000/s: compared at 2,000/s
    steps["handle_tcp_per_request"][2] = step(4000, lost=400, us=50)
    assert vs_floor(steps) == {"held": 0.5, "cpu": {"at": 2000, "ratio": 0.8}}
    assert vs_floor({}) == {"held": None, "cpu": None}


def test_cpu_ratios_compare_at_the_highest_rate_both_answered_in_full() -> None:
    steps = {
        "http": [
            step(1000, us=30),
            step(2000, us=24),
            step(5000, us=20, p99=30),
            step(7500, us=19, lost=100),
        ],
        "handle_udp": [step(1000, us=15), step(2000, us=12), step(5000, us=10), step(7500, us=9)],
        "handle_tcp": [step(1000, us=60), step(2000, us=None)],  # CPU not read at 2,000/s
    }
    # a late tail (HTTP's 30 ms p99 at 5,000/s) is not a cost; 1% lost (at 7,500/s) is
    assert cpu_ratios(steps) == {
        "udp": {"at": 5000, "ratio": 2.0},
        "tcp": {"at": 1000, "ratio": 0.5},
        "tcp_per_request": None,
    }


@pytest.mark.parametrize(
    ("cpu_seconds", "answers", "want"), [(2.0, 100_000, 20.0), (0.5, 10_000, 50.0), (1.0, 0, None)]
)
def test_us_per_answer_is_the_node_cpu_over_its_answers(
    cpu_seconds: float, answers: float, want: float | None
) -> None:
    assert us_per_answer(cpu_seconds, answers) == want


@pytest.mark.parametrize(
    ("kind", "want"),
    [("http", 7_000 + 20 + 30), ("handle_udp", 5_000 + 400), ("handle_tcp_per_request", 5_400)],
)
def test_answers_are_read_from_the_counters_of_the_path_asked(kind: str, want: float) -> None:
    before = {
        "idres_edge_hits_total": 1_000,
        "idres_edge_store_answers_total": 10,
        "idres_edge_forwarded_total": 5,
        "idres_handle_requests_total": 200,
        "idres_handle_kept_answers_total": 100,
        "idres_edge_handle_hits_total": 100,  # over TCP, the edge's
    }
    after = {
        "idres_edge_hits_total": 8_000,
        "idres_edge_store_answers_total": 30,
        "idres_edge_forwarded_total": 35,
        "idres_handle_requests_total": 5_200,
        "idres_handle_kept_answers_total": 5_000,
        "idres_edge_handle_hits_total": 500,
    }
    assert answers_of(kind, before, after) == want


def test_http_step_keeps_the_judged_fields_and_counts_timeouts_as_lost() -> None:
    result = {
        **step(1000),
        "completed": 9990,
        "timeouts": 10,
        "status": {"200": 9500, "404": 490, "0": 10},
        "p90_ms": 1.0,
        "max_ms": 9.0,
        "lateness_p99_ms": 0.4,
        "histogram": [[0.01, 0]],
        "timeline": [{"t": 0}],
    }
    got = http_step(result)
    assert got["lost"] == 10
    assert got["status"] == {"200": 9500, "404": 490, "0": 10}
    assert set(got) >= {"offered_rate", "p99_ms", "errors", "lost"}
    assert not set(got) & {"histogram", "timeline"}


def test_counters_sum_the_face_edge_and_cache_series_over_their_labels() -> None:
    text = "\n".join(
        [
            "# HELP idres_handle_requests_total Handle protocol requests this process answered.",
            'idres_handle_requests_total{node="a"} 10',
            'idres_handle_requests_total{node="b"} 5',
            "idres_edge_hits_total 7",
            'idres_cache_hits_total{node="a"} 2.5',
            'idres_known_identifiers{node="a"} 1000',  # not a counter of answers
            'idres_edge_entries{node="a"} 3',  # a gauge of the edge
        ]
    )
    assert counters(text) == {
        "idres_handle_requests_total": 15.0,
        "idres_edge_hits_total": 7.0,
        "idres_cache_hits_total": 2.5,
    }


def test_cpu_split_is_each_kind_of_time_over_the_whole() -> None:
    before = [100, 0, 50, 1000, 0, 0, 10, 0]
    after = [400, 0, 150, 1500, 0, 0, 110, 0]
    assert cpu_split(before, after) == {"user": 0.3, "system": 0.1, "idle": 0.5, "softirq": 0.1}


def test_top_frames_are_the_lines_running_when_sampled() -> None:
    raw = [
        "<module> (a.py:1);run (a.py:5);sendto (b.py:9) 5",
        "<module> (a.py:1);kept (c.py:3);sendto (b.py:9) 1",
        "<module> (a.py:1);kept (c.py:3) 3",
        "<module> (a.py:1);idle 1",
        "not a line",
    ]
    assert top_frames(raw, 2) == [("sendto (b.py:9)", 0.6), ("kept (c.py:3)", 0.3)]
    assert top_frames([]) == []


def test_the_table_marks_steps_not_held_and_gives_the_ratios() -> None:
    steps = {
        "http": [step(1000), step(2000, p99=30)],
        "handle_udp": [step(1000), step(2000)],
    }
    text = table(steps)
    assert "   30.0 lost    0   20us x" in text
    assert "held at p99 <= 10 ms: http 1,000, handle_udp 2,000" in text
    assert "Handle/HTTP held: udp 2.00x" in text
