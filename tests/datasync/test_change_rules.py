"""Pure rules of corrections (更正) and voids (作废): what a record asks for, the record
id it must name, and the revision it makes against the stored version."""

from __future__ import annotations

from typing import Any

import pytest

from services.datasync.columns import column_map
from services.datasync.domain import (
    CORRECTION,
    VOID,
    FieldError,
    StoredRecord,
    change_of,
    changed_record_id,
    next_revision,
)

STORED = StoredRecord(revision=1, voided=False, id_hash="h1", content_hash="c1")


def code_of(call: Any) -> tuple[str, str]:
    with pytest.raises(FieldError) as info:
        call()
    return info.value.field, info.value.code


def test_a_record_asks_for_a_correction_or_a_void_with_a_yes_no_flag() -> None:
    assert change_of({"record_id": "R1"}) is None
    assert change_of({"correction": True}) == CORRECTION
    assert change_of({"correction": "是", "void": "否"}) == CORRECTION
    assert change_of({"void": "1"}) == VOID
    assert change_of({"correction": "", "void": None}) is None  # blank cells: a new record
    assert change_of({"correction": False}) is None
    assert code_of(lambda: change_of({"correction": "yes", "void": "是"})) == (
        VOID,
        "correction_and_void",
    )
    assert code_of(lambda: change_of({"void": "maybe"})) == (VOID, "not_yes_no")


def test_a_change_must_name_its_record_id() -> None:
    assert changed_record_id({"record_id": " R1 "}) == "R1"
    assert changed_record_id({"record_id": 1001.0}) == "1001"  # as a spreadsheet gives it
    assert code_of(lambda: changed_record_id({"void": True})) == ("record_id", "required")
    assert code_of(lambda: changed_record_id({"record_id": "x" * 65})) == ("record_id", "too_long")


def test_file_columns_for_the_flags() -> None:
    assert column_map("medical", ["结算单号", "更正标志", "是否作废"]) == {
        0: "record_id",
        1: "correction",
        2: "void",
    }


def test_a_correction_makes_the_next_revision_unless_nothing_changed() -> None:
    assert next_revision(CORRECTION, STORED, record_id="R1", id_hash="h1", content_hash="c2") == 2
    later = StoredRecord(revision=4, voided=False, id_hash="h1", content_hash="c2")
    assert next_revision(CORRECTION, later, record_id="R1", id_hash="h1", content_hash="c3") == 5
    # The same correction sent again changes nothing: a duplicate.
    assert next_revision(CORRECTION, later, record_id="R1", id_hash="h1", content_hash="c2") is None


def test_a_void_makes_the_next_revision_once() -> None:
    assert next_revision(VOID, STORED, record_id="R1") == 2
    voided = StoredRecord(revision=2, voided=True, id_hash="h1", content_hash="c1")
    assert next_revision(VOID, voided, record_id="R1") is None


def test_changes_that_cannot_apply_are_refused_with_their_reason() -> None:
    for change in (CORRECTION, VOID):
        field, code = code_of(
            lambda change=change: next_revision(
                change, None, record_id="R9", id_hash="h1", content_hash="c1"
            )
        )
        assert (field, code) == ("record_id", "unknown_record")
    voided = StoredRecord(revision=2, voided=True, id_hash="h1", content_hash="c1")
    assert code_of(
        lambda: next_revision(CORRECTION, voided, record_id="R1", id_hash="h1", content_hash="c2")
    ) == ("record_id", "voided_record")
    # 更正 fixes a record's facts, not whose record it is.
    assert code_of(
        lambda: next_revision(CORRECTION, STORED, record_id="R1", id_hash="h2", content_hash="c2")
    ) == ("id_number", "changed_person")
