"""The event store's hash chain on small in-memory partitions: it continues across
batches, and the first change, removal or insertion is found and named."""

from __future__ import annotations

import pandas as pd

from retailstream.transforms.chain import GENESIS, chain_hashes, first_break, record_digest


def _records(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "topic": "shop.orders",
            "partition": 1,
            "offset": range(start, start + n),
            "timestamp_ms": [1_700_000_000_000 + i for i in range(start, start + n)],
            "key": [f"k{i}".encode() for i in range(start, start + n)],
            "value": [f'{{"n": {i}}}'.encode() for i in range(start, start + n)],
        }
    )


def _stored(n: int = 10) -> pd.DataFrame:
    records = _records(n)
    return records.assign(chain_hash=chain_hashes(records, GENESIS))


def test_a_chain_continues_across_batches_from_the_previous_hash() -> None:
    whole = chain_hashes(_records(10), GENESIS)
    first = chain_hashes(_records(6), GENESIS)
    rest = chain_hashes(_records(4, start=6), first[-1])
    assert first + rest == whole
    assert len(set(whole)) == 10


def test_every_field_kafka_gave_is_covered_and_null_is_not_empty() -> None:
    base = ("shop.orders", 1, 5, 1_700_000_000_000, b"k", b"v")
    variants = [
        record_digest(*base),
        record_digest("shop.ratings", *base[1:]),
        record_digest(base[0], 2, *base[2:]),
        record_digest(*base[:2], 6, *base[3:]),
        record_digest(*base[:3], 1_700_000_000_001, *base[4:]),
        record_digest(*base[:4], None, b"v"),
        record_digest(*base[:4], b"", b"v"),
        record_digest(*base[:5], b"v2"),
        # Moving bytes from the key to the value must not give the same encoding.
        record_digest(*base[:4], b"kv", b""),
    ]
    assert len(set(variants)) == len(variants)
    assert record_digest(*base) == record_digest(*base)


def test_an_untouched_chain_has_no_break() -> None:
    assert first_break(_stored()) is None


def test_a_changed_value_breaks_the_chain_at_that_record() -> None:
    stored = _stored()
    stored.loc[4, "value"] = b'{"n": 999}'
    found = first_break(stored)
    assert found is not None and (found.offset, found.kind) == (4, "changed")


def test_a_removed_record_is_named_by_its_offset() -> None:
    stored = _stored().drop(index=6).reset_index(drop=True)
    found = first_break(stored)
    assert found is not None and (found.offset, found.kind) == (6, "removed")
    assert "6..6" in found.detail


def test_an_inserted_record_is_found_whether_its_offset_is_new_or_taken() -> None:
    stored = _stored()
    fake = stored.iloc[[3]].assign(value=b'{"n": "fake"}', chain_hash=b"\x01" * 32)
    taken = pd.concat([stored.iloc[:4], fake, stored.iloc[4:]]).reset_index(drop=True)
    found = first_break(taken)
    assert found is not None and (found.offset, found.kind) == (3, "inserted")
    copy = pd.concat([stored.iloc[:4], stored.iloc[[3]], stored.iloc[4:]]).reset_index(drop=True)
    found = first_break(copy)
    assert found is not None and (found.offset, found.kind) == (3, "inserted")
