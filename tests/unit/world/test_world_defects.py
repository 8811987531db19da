from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest

from retailstream.world import DefectRates
from retailstream.world.defects import MALFORMED_KINDS

from .conftest import Run

CONTRACT_KINDS = {"wrong_type", "missing_field", "out_of_range", "unknown_sku"}


@pytest.fixture(scope="module")
def defects(defect_run: Run) -> pd.DataFrame:
    return defect_run.truth("defects")


def _time(value: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(value)["event_time"])


def test_default_rates_add_up_to_about_two_percent() -> None:
    assert 0.015 <= DefectRates().total <= 0.025
    assert DefectRates.none().total == 0.0


def test_invalid_rates_are_rejected() -> None:
    with pytest.raises(ValueError, match="within"):
        DefectRates(empty=-0.1)
    with pytest.raises(ValueError, match="above 0.5"):
        DefectRates(empty=0.3, truncated=0.3)


def test_clean_stream_reports_no_defects(clean_run: Run) -> None:
    assert clean_run.truth("defects").empty


def test_every_kind_is_injected_at_about_its_rate(defect_run: Run, defects: pd.DataFrame) -> None:
    assert set(defects["kind"]) == set(DefectRates().kinds())
    share = len(defects) / len(defect_run.records)
    # Ten times the default ~2%; out_of_order reports two records per swap.
    assert 0.17 < share < 0.25


def test_defect_rows_identify_their_records(defect_run: Run, defects: pd.DataFrame) -> None:
    for batch in defect_run.batches:
        for row in batch.defects:
            record = batch.records[row["record_index"]]
            assert row["record_seq"] == batch.first_seq + row["record_index"]
            assert row["topic"] == record.topic
            assert len(row["original_event_id"]) == 32
            if row["kind"] in MALFORMED_KINDS:
                assert row["event_id"] is None
            else:
                assert json.loads(record.value)["event_id"] == row["event_id"]
    assert not defects.duplicated("record_seq").any()


def test_malformed_values_cannot_be_parsed(defect_run: Run, defects: pd.DataFrame) -> None:
    malformed = defects[defects["kind"].isin(MALFORMED_KINDS)]
    assert len(malformed) > 100
    for row in malformed.itertuples():
        assert isinstance(row.record_seq, int)
        with pytest.raises(ValueError):  # JSONDecodeError and UnicodeDecodeError alike
            json.loads(defect_run.records[row.record_seq].value)


def test_contract_defects_parse_but_break_the_contract(
    defect_run: Run, defects: pd.DataFrame, contract
) -> None:
    broken = defects[defects["kind"].isin(CONTRACT_KINDS)]
    assert len(broken) > 100
    skus = set(defect_run.world.products["sku"])
    for row in broken.itertuples():
        assert isinstance(row.record_seq, int)
        record = defect_run.records[row.record_seq]
        doc = json.loads(record.value)
        assert contract(defect_run.world, record.topic, doc), (row.kind, row.detail, doc)
        if row.kind == "unknown_sku":
            found = [doc.get("sku")] + [line["sku"] for line in doc.get("lines", [])]
            assert any(s not in skus for s in found if s is not None)


def test_time_defects_move_event_time_by_hours(defect_run: Run, defects: pd.DataFrame) -> None:
    records = defect_run.records
    shifted = defects[defects["kind"].isin({"future_time", "late_time"})]
    assert len(shifted) > 50
    reported = set(defects["record_seq"])
    for row in shifted.itertuples():
        assert isinstance(row.record_seq, int)
        # The nearest clean record before it tells the simulated clock.
        seq = row.record_seq - 1
        while seq in reported:
            seq -= 1
        offset = _time(records[row.record_seq].value) - _time(records[seq].value)
        if row.kind == "future_time":
            assert offset > timedelta(hours=1.9)
        else:
            assert offset < -timedelta(hours=1.9)


def test_duplicates_repeat_an_earlier_record_exactly(
    defect_run: Run, defects: pd.DataFrame
) -> None:
    records = defect_run.records
    duplicates = defects[defects["kind"] == "duplicate"]
    assert len(duplicates) > 50
    for row in duplicates.itertuples():
        assert isinstance(row.record_seq, int)
        copy = records[row.record_seq]
        window = records[max(row.record_seq - 25, 0) : row.record_seq]
        assert copy in window
        assert json.loads(copy.value)["event_id"] == row.event_id


def test_out_of_order_records_come_in_swapped_pairs(defect_run: Run, defects: pd.DataFrame) -> None:
    records = defect_run.records
    swapped = defects[defects["kind"] == "out_of_order"].sort_values("record_seq")
    assert len(swapped) % 2 == 0 and len(swapped) > 50
    pairs = 0
    for row in swapped.itertuples():
        assert isinstance(row.record_seq, int)
        later_partner = next(
            (
                s
                for s in swapped["record_seq"]
                if s > row.record_seq and records[s].topic == row.topic
            ),
            None,
        )
        if later_partner is not None and _time(records[row.record_seq].value) > _time(
            records[later_partner].value
        ):
            pairs += 1
    assert pairs >= len(swapped) // 2 * 0.9


def test_records_not_reported_are_clean(defect_run: Run, defects: pd.DataFrame, contract) -> None:
    reported = set(defects["record_seq"])
    seen_ids: set[str] = set()
    last_time = ""
    for seq, record in enumerate(defect_run.records):
        if seq in reported:
            continue
        doc = json.loads(record.value)
        assert contract(defect_run.world, record.topic, doc) == [], doc
        assert doc["event_id"] not in seen_ids
        assert doc["event_time"] >= last_time
        seen_ids.add(doc["event_id"])
        last_time = doc["event_time"]
