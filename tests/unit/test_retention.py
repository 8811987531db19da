from __future__ import annotations

from retailstream.kafka.retention import LostRange, lost_ranges


def test_offsets_older_than_the_earliest_kept_are_lost() -> None:
    needed = {"shop.orders": {0: 10, 1: 40}, "shop.ratings": {0: 5}}
    earliest = {"shop.orders": {0: 25, 1: 0}, "shop.ratings": {0: 5}}
    assert lost_ranges(needed, earliest) == [LostRange("shop.orders", 0, 10, 24)]
    assert lost_ranges(needed, earliest)[0].count == 15


def test_nothing_is_lost_when_retention_is_behind_the_checkpoint() -> None:
    assert lost_ranges({"t": {0: 100}}, {"t": {0: 100}}) == []
    assert lost_ranges({"t": {0: 100}}, {}) == []


def test_lost_range_reads_well() -> None:
    assert str(LostRange("shop.orders", 2, 7, 9)) == "shop.orders[2] offsets 7..9"
