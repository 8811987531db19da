from __future__ import annotations

import pytest

from retailstream.errors import UserError
from retailstream.jobs.produce_events import defect_rates, parse_duration
from retailstream.world import DefectRates


def test_defect_share_scales_every_kind_in_proportion() -> None:
    default = DefectRates()
    doubled = defect_rates(2 * default.total)
    assert doubled.total == pytest.approx(2 * default.total)
    assert doubled.invalid_json == pytest.approx(2 * default.invalid_json)
    assert defect_rates(0).total == 0


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_says_what_is_expected() -> None:
    with pytest.raises(UserError, match="expected seconds or a number with s, m or h"):
        parse_duration("soon")
