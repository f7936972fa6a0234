"""Salted commitments of private values, and operations that carry them (issue 11)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec_cbor import record_to_cbor_obj
from schemas.commitment import (
    COMMITTED_TYPE,
    CommittedValue,
    SaltMissing,
    commit,
    commit_record,
    commitment,
    decode,
    encode,
    opens,
)
from schemas.errors import EncodingError
from schemas.oplog import Operation, decode_operation, encode_operation
from schemas.record import (
    MAX_TIMESTAMP,
    DataFormat,
    HandleValue,
    Permissions,
    Record,
    Reference,
    TtlType,
)

NOW = 1795420800
HANDLE = "88.100.1/P"
PRIVATE = Permissions(public_read=False)
SALT = bytes(range(16))
SECRET = "ops-secret@example.com"


def email(value: str = SECRET, *, index: int = 2, perms: Permissions = PRIVATE) -> HandleValue:
    return HandleValue(
        index=index,
        type="EMAIL",
        format=DataFormat.STRING,
        value=value,
        timestamp=NOW,
        permissions=perms,
    )


URL = HandleValue(
    index=1, type="URL", format=DataFormat.STRING, value="https://e.x/p", timestamp=NOW
)
RECORD = Record(handle=HANDLE, values=(URL, email()))


def test_the_commitment_is_sha256_of_salt_and_the_deterministic_cbor_of_the_value() -> None:
    bound = cbor2.dumps(
        {
            "handle": HANDLE,
            "index": 2,
            "type": "EMAIL",
            "format": "string",
            "data": SECRET,
            "refs": [],
        },
        canonical=True,
    )
    assert commitment(HANDLE, email(), SALT) == hashlib.sha256(SALT + bound).digest()


SHOWN = email()


@pytest.mark.parametrize(
    ("handle", "shown", "salt"),
    [
        pytest.param(HANDLE, email("other@example.com"), SALT, id="another value"),
        pytest.param(HANDLE, SHOWN, bytes(16), id="another salt"),
        pytest.param("88.100.1/Q", SHOWN, SALT, id="the same value of another record"),
        pytest.param(HANDLE, replace(SHOWN, type="DESC"), SALT, id="another type"),
        pytest.param(HANDLE, replace(SHOWN, ttl=60), SALT, id="another ttl"),
        pytest.param(HANDLE, replace(SHOWN, timestamp=NOW + 1), SALT, id="another timestamp"),
        pytest.param(
            HANDLE,
            replace(SHOWN, permissions=Permissions(public_read=False, admin_read=False)),
            SALT,
            id="other permissions",
        ),
        pytest.param(
            HANDLE,
            replace(SHOWN, references=(Reference(handle="88.1/R", index=1),)),
            SALT,
            id="other references",
        ),
    ],
)
def test_a_commitment_opens_only_with_the_value_and_salt_it_was_made_of(
    handle: str, shown: HandleValue, salt: bytes
) -> None:
    committed = commit(HANDLE, SHOWN, SALT)
    assert opens(HANDLE, committed, SHOWN, SALT)
    assert not opens(handle, committed, shown, salt)


def test_a_value_in_clear_is_not_an_opened_commitment() -> None:
    # a parent holding a value in clear must not pass it off as the chain's commitment
    assert not opens(HANDLE, SHOWN, SHOWN, SALT)


def test_a_committed_value_shows_neither_type_nor_data() -> None:
    sent = commit_record(RECORD, {2: SALT})
    committed = sent.values[1]
    assert isinstance(committed, CommittedValue)
    assert (committed.index, committed.type, committed.format) == (
        2,
        COMMITTED_TYPE,
        DataFormat.HEX,
    )
    assert (committed.ttl, committed.timestamp, committed.permissions) == (
        SHOWN.ttl,
        NOW,
        PRIVATE,
    )
    assert sent.values[0] == URL  # public values travel as they are
    data = encode(sent)
    assert SECRET.encode() not in data
    assert b"EMAIL" not in data
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)  # RFC 8949 §4.2.1


def test_committing_needs_a_salt_for_every_private_value() -> None:
    with pytest.raises(SaltMissing, match="private value 2"):
        commit_record(RECORD, {})
    public = Record(handle=HANDLE, values=(URL,))
    assert commit_record(public, {}) is public


def test_the_wire_form_of_a_committed_value_is_byte_exact() -> None:
    sent = Record(handle=HANDLE, values=(commit(HANDLE, SHOWN, SALT),))
    obj = cbor2.loads(encode(sent))
    assert obj == {
        "v": 2,
        "handle": HANDLE,
        "values": [
            {
                "ttl": 86400,
                "index": 2,
                "perms": 0b1100,
                "commit": commitment(HANDLE, SHOWN, SALT),
                "ttlType": 0,
                "timestamp": NOW,
            }
        ],
    }


def _op(record: Record | None, op: str = "create") -> Operation:
    return Operation(
        op=op,  # type: ignore[arg-type]
        handle=HANDLE,
        version=1,
        actor="300:0.NA/88.100",
        at=NOW,
        record=record,
    )


def test_an_operation_with_commitments_is_version_2_and_round_trips() -> None:
    op = _op(commit_record(RECORD, {2: SALT}))
    data = encode_operation(op)
    assert cbor2.loads(data)["v"] == 2
    assert SECRET.encode() not in data
    back = decode_operation(data)
    assert back == op
    assert back.record is not None
    assert isinstance(back.record.values[1], CommittedValue)


def test_an_operation_of_public_values_keeps_version_1_and_its_bytes() -> None:
    public = Record(handle=HANDLE, values=(URL,))
    data = encode_operation(_op(public))
    assert cbor2.loads(data)["v"] == 1
    assert cbor2.loads(data)["record"] == record_to_cbor_obj(public)
    assert decode_operation(encode_operation(_op(None, "delete"))).record is None


def test_a_private_value_in_clear_cannot_be_encoded_into_an_operation() -> None:
    with pytest.raises(ValueError, match="commit the private values at index 2"):
        encode_operation(_op(RECORD))


def _raw_op(v: int, record: object) -> bytes:
    return cbor2.dumps(
        {
            "v": v,
            "at": NOW,
            "op": "create",
            "actor": "a",
            "handle": HANDLE,
            "record": record,
            "version": 1,
        },
        canonical=True,
    )


def _committed_map(**changes: object) -> dict[str, object]:
    m: dict[str, object] = {
        "ttl": 0,
        "index": 2,
        "perms": 0b1100,
        "commit": bytes(32),
        "ttlType": 0,
        "timestamp": NOW,
    }
    m.update(changes)
    return m


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # what the code before commitments published: a private value in clear
        pytest.param(
            _raw_op(1, record_to_cbor_obj(RECORD)),
            "no public read but travels in clear",
            id="version 1 with a private value",
        ),
        pytest.param(
            _raw_op(2, {**record_to_cbor_obj(RECORD), "v": 2}),
            "holds no commitment",
            id="version 2 without a commitment",
        ),
        pytest.param(
            _raw_op(2, {"v": 2, "handle": HANDLE, "values": [_committed_map(commit=b"x")]}),
            "commit must be 32 bytes",
            id="short commitment",
        ),
        pytest.param(
            _raw_op(2, {"v": 2, "handle": HANDLE, "values": [_committed_map(perms=0b1110)]}),
            "public read clear",
            id="a committed value that claims public read",
        ),
        pytest.param(
            _raw_op(
                2,
                {
                    "v": 2,
                    "handle": HANDLE,
                    "values": [_committed_map(index=1), record_to_cbor_obj(RECORD)["values"][1]],
                },
            ),
            "no public read but travels in clear",
            id="a commitment beside a private value in clear",
        ),
        pytest.param(
            _raw_op(2, {"v": 2, "handle": HANDLE, "values": [_committed_map(), _committed_map()]}),
            "already used",
            id="one index twice",
        ),
        pytest.param(
            _raw_op(1, {"v": 2, "handle": HANDLE, "values": [_committed_map()]}),
            "record map of the same version",
            id="versions that disagree",
        ),
        pytest.param(_raw_op(3, None), "version 3 is not supported", id="unknown version"),
    ],
)
def test_operations_that_would_leak_or_lie_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        decode_operation(data)
    with pytest.raises(EncodingError, match=message):
        decode_operation(data, check_form=False)  # a follower's path: refused all the same


def test_stored_history_keeps_the_holders_values_in_clear_and_copies_committed() -> None:
    held = encode(RECORD)
    assert decode(held, clear_private=True) == RECORD
    with pytest.raises(EncodingError, match="in clear"):
        decode(held, clear_private=False)
    copy = commit_record(RECORD, {2: SALT})
    assert decode(encode(copy), clear_private=False) == copy


_value = st.builds(
    HandleValue,
    index=st.integers(1, 2**31 - 1),
    type=st.sampled_from(["URL", "EMAIL", "DESC", "x.custom"]),
    format=st.just(DataFormat.BASE64),
    value=st.binary(min_size=4, max_size=64),
    ttl=st.integers(0, 2**31 - 1),
    ttl_type=st.sampled_from(TtlType),
    timestamp=st.integers(0, MAX_TIMESTAMP),
    permissions=st.builds(
        Permissions,
        admin_read=st.booleans(),
        admin_write=st.booleans(),
        public_read=st.booleans(),
        public_write=st.booleans(),
    ),
)


@given(
    st.lists(_value, min_size=1, max_size=6, unique_by=lambda v: v.index),
    st.binary(min_size=16, max_size=16),
)
def test_every_operation_round_trips_and_carries_no_private_data(
    values: list[HandleValue], salt: bytes
) -> None:
    record = Record(handle=HANDLE, values=tuple(values))
    sent = commit_record(record, {v.index: salt for v in values})
    data = encode_operation(_op(sent))
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)
    back = decode_operation(data)
    assert back.record == sent
    wire = cbor2.loads(data)["record"]["values"]
    for v, shown, m in zip(sent.values, record.values, wire, strict=True):
        if not shown.permissions.public_read:
            # no field of the value but what the commitment leaves in clear
            assert set(m) == {"ttl", "index", "perms", "commit", "ttlType", "timestamp"}
            assert opens(HANDLE, v, shown, salt)
        else:
            assert m["data"] == shown.value
