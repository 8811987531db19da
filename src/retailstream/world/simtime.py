"""Simulated time: shopping intensity over the week and fast timestamp formatting.

Times inside the generator are float seconds since the Unix epoch (UTC). Shop events
arrive as a Poisson process whose rate follows an hour-of-week curve (quiet nights, lunch
and evening peaks, busy Saturdays). It is simulated by drawing arrivals in "operational
time" u, where the rate is constant, and mapping them back to wall time t through the
inverse of the cumulative intensity Lambda(t). Because the curve has mean 1 over a week,
`sim_seconds_per_event` remains the average spacing of shop events.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

HOUR = 3600.0
DAY = 86_400.0
WEEK = 7 * DAY

# Shop traffic by local hour (Central European Time, UTC+1, used for the whole estate).
_HOURLY = np.array(
    [
        0.18,
        0.10,
        0.06,
        0.05,
        0.05,
        0.08,
        0.2,
        0.45,
        0.75,
        0.95,
        1.15,
        1.35,
        1.55,
        1.5,
        1.35,
        1.3,
        1.35,
        1.45,
        1.6,
        1.75,
        1.7,
        1.35,
        0.85,
        0.45,
    ]
)
# Monday .. Sunday.
_WEEKDAY = np.array([0.92, 0.93, 0.97, 1.0, 1.08, 1.25, 0.85])
_UTC_OFFSET_HOURS = 1
# 1970-01-05 was a Monday; shift so that hour 0 of the table is local midnight.
WEEK_ORIGIN = 4 * DAY - _UTC_OFFSET_HOURS * HOUR


def _build_week_curve() -> tuple[np.ndarray, np.ndarray]:
    intensity = (_WEEKDAY[:, None] * _HOURLY[None, :]).ravel()
    intensity = intensity / intensity.mean()
    cumulative = np.concatenate([[0.0], np.cumsum(intensity * HOUR)])
    return intensity, cumulative


WEEK_INTENSITY, _WEEK_CUMULATIVE = _build_week_curve()


def shop_intensity(t: np.ndarray | float) -> np.ndarray:
    """Relative shop traffic (mean 1 over a week) at epoch seconds `t`."""
    hour_of_week = ((np.asarray(t) - WEEK_ORIGIN) % WEEK) // HOUR
    return WEEK_INTENSITY[hour_of_week.astype(np.int64)]


def to_operational(t: float) -> float:
    """Cumulative intensity Lambda(t): operational seconds elapsed since the week origin."""
    x = t - WEEK_ORIGIN
    weeks, rest = divmod(x, WEEK)
    return float(weeks * WEEK + np.interp(rest, np.arange(169) * HOUR, _WEEK_CUMULATIVE))


def from_operational(u: np.ndarray) -> np.ndarray:
    """Inverse of `to_operational`, vectorised: maps operational seconds to epoch seconds."""
    weeks, rest = np.divmod(np.asarray(u, dtype=np.float64), WEEK)
    hour = np.clip(np.searchsorted(_WEEK_CUMULATIVE, rest, side="right") - 1, 0, 167)
    within = (rest - _WEEK_CUMULATIVE[hour]) / WEEK_INTENSITY[hour]
    return WEEK_ORIGIN + weeks * WEEK + hour * HOUR + within


def epoch_seconds(moment: datetime) -> float:
    """Epoch seconds of a datetime; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def to_datetime(t: float) -> datetime:
    """UTC datetime of epoch seconds, truncated to the millisecond like the ISO strings."""
    return datetime.fromtimestamp(int(t * 1000.0) / 1000.0, UTC)


def iso_ms(t: float) -> str:
    """ISO-8601 UTC with milliseconds and a trailing Z, e.g. 2025-03-01T09:30:00.125Z.

    Milliseconds are truncated, matching `iso_ms_array`, so both agree to the character.
    """
    ms = int(t * 1000.0)
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def iso_ms_array(t: np.ndarray) -> list[str]:
    """Vectorised `iso_ms` without the trailing Z (callers add it inside their f-string)."""
    ms = (np.asarray(t, dtype=np.float64) * 1000.0).astype(np.int64)
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").tolist()


def month_of(t: float) -> int:
    """Calendar month 0..11 (UTC) of epoch seconds."""
    return time.gmtime(int(t)).tm_mon - 1


def next_month_start(t: float) -> float:
    """Epoch seconds of the first instant of the calendar month after the one containing t."""
    g = time.gmtime(int(t))
    year, month = (g.tm_year + 1, 1) if g.tm_mon == 12 else (g.tm_year, g.tm_mon + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()
