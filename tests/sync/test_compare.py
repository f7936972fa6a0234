"""The records check's comparison (sync/compare.py): stored rows against the record
map an operation carries, with no I/O."""

from __future__ import annotations

import pytest

from registry.rows import value_to_row
from schemas.commitment import commit, commit_record, record_obj
from schemas.oplog import Operation, encode_operation
from schemas.record import (
    AdminPerm,
    AdminRef,
    DataFormat,
    HandleValue,
    Permissions,
    Record,
    Reference,
)
from sync.compare import NoSalt, Unreadable, op_fields, stored_map

H = "88.100.1/X"
SALT = bytes(range(16))
PRIVATE = Permissions(public_read=False)
VALUES = {
    "string": HandleValue(index=1, type="URL", format=DataFormat.STRING, value="https://e.x/é"),
    "hex": HandleValue(index=2, type="X", format=DataFormat.HEX, value=b"\x00\xff"),
    "admin": HandleValue(
        index=100,
        type="HS_ADMIN",
        format=DataFormat.ADMIN,
        value=AdminRef(handle="0.NA/88.100", index=300, permissions=AdminPerm(0xFFF)),
    ),
    "vlist": HandleValue(
        index=3,
        type="HS_VLIST",
        format=DataFormat.VLIST,
        value=(Reference(handle="88.100.1/Y", index=1),),
        references=(Reference(handle="88.100.1/Z", index=2),),
    ),
    "private": HandleValue(
        index=4, type="EMAIL", format=DataFormat.STRING, value="a@e.x", permissions=PRIVATE
    ),
}


def _rows(record: Record, salts: dict[int, bytes]) -> list[tuple[object, ...]]:
    return [(*value_to_row(record.handle, v)[1:], salts.get(v.index)) for v in record.values]


@pytest.mark.parametrize("kinds", [["string"], ["hex", "admin"], ["vlist"], ["string", "private"]])
def test_the_holders_rows_give_the_record_map_its_operation_carries(kinds: list[str]) -> None:
    record = Record(handle=H, values=tuple(VALUES[k] for k in kinds))
    salts = {4: SALT}
    chained = record_obj(commit_record(record, salts))
    assert stored_map(H, _rows(record, salts), holder=True) == chained


def test_a_copy_stores_a_private_value_committed_and_compares_it_as_such() -> None:
    record = Record(handle=H, values=(VALUES["string"], commit(H, VALUES["private"], SALT)))
    assert stored_map(H, _rows(record, {}), holder=False) == record_obj(record)


@pytest.mark.parametrize(
    ("column", "forged"),
    [(2, b"https://evil.example/"), (3, 1), (6, 15), (5, 99)],  # data, ttl, perms, timestamp
)
def test_any_changed_column_makes_the_maps_differ(column: int, forged: object) -> None:
    record = Record(handle=H, values=(VALUES["string"],))
    rows = _rows(record, {})
    changed = [(*rows[0][: column + 1], forged, *rows[0][column + 2 :])]
    assert stored_map(H, changed, holder=True) != record_obj(record)


def test_a_private_value_without_its_salt_cannot_be_committed() -> None:
    record = Record(handle=H, values=(VALUES["private"],))
    with pytest.raises(NoSalt) as caught:
        stored_map(H, _rows(record, {}), holder=True)
    assert caught.value.index == 4


def test_stored_bytes_no_value_could_hold_are_unreadable() -> None:
    record = Record(handle=H, values=(VALUES["string"],))
    row = _rows(record, {})[0]
    with pytest.raises(Unreadable, match="not UTF-8"):
        stored_map(H, [(row[0], row[1], row[2], b"\xff", *row[4:])], holder=False)


def test_op_fields_reads_what_the_check_needs() -> None:
    record = Record(handle=H, values=(VALUES["string"],))
    op = Operation(op="create", handle=H, version=3, actor="k", at=1, record=record)
    fields = op_fields(encode_operation(op))
    assert (fields.handle, fields.version, fields.record) == (H, 3, record_obj(record))
    gone = Operation(op="delete", handle=H, version=4, actor="k", at=1, record=None)
    assert op_fields(encode_operation(gone)).record is None
    for bad in (b"\xff", b"\xa1\x61v\x01"):
        with pytest.raises(Unreadable):
            op_fields(bad)
