"""Regional weather and world events on a 10-minute grid, generated lazily ahead of time.

Both are simulated in advance (weather up to about a day ahead, world events about ten
days ahead) because causes must be known before their effects are drawn: a shipment's
delay probability depends on the weather at its planned departure, and a strike is
announced before it starts. Everything is deterministic given the seed, since blocks are
always generated in order.

Weather per region is a persistent latent storm process (an AR(1) with a correlation time
of roughly half a day) whose threshold depends on how storm-prone the region is and on
the season, plus temperature from climate normals, a daily cycle and noise. Severity
0..5 is the maximum of storm, snow, heat and fog severities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retailstream.world import catalog
from retailstream.world.simtime import DAY, HOUR, month_of

BUCKET_SECONDS = 600.0
BUCKETS_PER_DAY = int(DAY // BUCKET_SECONDS)
WORLD_EVENT_LOOKAHEAD_DAYS = 10

CONDITIONS: tuple[str, ...] = ("clear", "rain", "snow", "storm", "heat", "fog")
CLEAR, RAIN, SNOW, STORM, HEAT, FOG = range(6)
WORLD_EVENT_KINDS: tuple[str, ...] = (
    "strike",
    "port_closure",
    "holiday",
    "protest",
    "road_closure",
)
ALERT_SEVERITY = 3
# Each region reports 1 s after a bucket starts, regions 2 s apart, so records of one
# bucket never share a timestamp.
_REPORT_DELAY_SECONDS = 1.0
_REGION_STAGGER_SECONDS = 2.0

# Share of store visits that still happen at each weather severity: storms keep people home.
_WEATHER_TRAFFIC = np.array([1.0, 0.97, 0.9, 0.72, 0.5, 0.3])
# Holidays bring shoppers out; strikes and protests keep them away. Max factor = 1.2.
MAX_TRAFFIC_FACTOR = 1.2
_WINTERNESS = np.array([1.0, 0.9, 0.6, 0.3, 0.1, 0.0, 0.0, 0.0, 0.2, 0.5, 0.8, 1.0])
_STORM_PHI = 0.985  # per 10 minutes: storms last hours, fronts last about a day
_FOG_PHI = 0.97
_TEMP_PHI = 0.99


@dataclass(frozen=True)
class WorldEvent:
    """A disruption in a region during [starts_at, ends_at), announced at `announced_at`."""

    world_event_id: str
    region: int
    kind: str
    severity: int
    starts_at: float
    ends_at: float
    announced_at: float

    def traffic_factor(self) -> float:
        """Multiplier on store visits in the region while the event is active."""
        if self.kind == "holiday":
            return 1.2
        if self.kind == "strike":
            return 1.0 - 0.07 * self.severity
        if self.kind == "protest":
            return 1.0 - 0.08 * self.severity
        if self.kind == "road_closure":
            return 1.0 - 0.04 * self.severity
        return 1.0


class RegionTimeline:
    """Weather and world-event state per region and 10-minute bucket.

    `origin` (epoch seconds) is the start of bucket 0. Call `ensure(t)` before asking about
    any time up to t; it extends the grid in whole days. Newly created world events are
    collected in `new_world_events` for the caller to schedule their announcements.
    """

    def __init__(self, seed: int, origin: float) -> None:
        self.start = float(origin)  # nothing is announced before the simulation starts
        self.origin = float(np.floor(origin / BUCKET_SECONDS) * BUCKET_SECONDS)
        self.n_regions = len(catalog.REGIONS)
        self._weather_rng = np.random.default_rng([seed, 101])
        self._events_rng = np.random.default_rng([seed, 102])
        self._climate = np.array(
            [catalog.MONTHLY_MEAN_TEMPERATURE_C[r] for r in catalog.REGIONS], dtype=np.float64
        )
        self._storminess = np.array([catalog.STORMINESS[r] for r in catalog.REGIONS])
        r = self.n_regions
        # Latent states carried from one day block to the next.
        self._storm_state = self._weather_rng.normal(0.0, 1.0, r)
        self._fog_state = self._weather_rng.normal(0.0, 1.0, r)
        self._temp_state = self._weather_rng.normal(0.0, 1.0, r)
        self.days = 0
        cap = 16 * BUCKETS_PER_DAY
        self.severity = np.zeros((r, cap), dtype=np.int64)
        self.condition = np.zeros((r, cap), dtype=np.int64)
        self.temperature = np.zeros((r, cap), dtype=np.float64)
        self.wind = np.zeros((r, cap), dtype=np.float64)
        self.event_severity = np.zeros((r, cap), dtype=np.int64)
        self.traffic = np.ones((r, cap), dtype=np.float64)
        self.events: list[WorldEvent] = []  # those that may still touch ungenerated days
        self._active_by_region: list[list[WorldEvent]] = [[] for _ in range(r)]
        self.new_world_events: list[WorldEvent] = []
        self._event_days = 0
        self._event_counter = 0

    # ------------------------------------------------------------------ extension
    def ensure(self, until: float) -> None:
        """Make sure buckets up to time `until` (and world events well beyond) exist."""
        needed_days = int((until - self.origin) // DAY) + 1
        while self.days < needed_days:
            self._generate_events_until(self.days + WORLD_EVENT_LOOKAHEAD_DAYS)
            self._generate_weather_day()

    def _grow(self, buckets: int) -> None:
        cap = self.severity.shape[1]
        if buckets <= cap:
            return
        new_cap = max(buckets, 2 * cap)
        for name in ("severity", "condition", "temperature", "wind", "event_severity", "traffic"):
            old = getattr(self, name)
            fill = 1.0 if name == "traffic" else 0
            grown = np.full((old.shape[0], new_cap), fill, dtype=old.dtype)
            grown[:, :cap] = old
            setattr(self, name, grown)

    def _ar1_block(self, state: np.ndarray, phi: float, steps: int) -> np.ndarray:
        """AR(1) path with unit stationary variance for each region, vectorised over time.

        Uses x_t = phi^t (x_0 + sum_j phi^-j a_j), which is stable over one day of steps.
        """
        innovations = self._weather_rng.normal(0.0, np.sqrt(1.0 - phi**2), (self.n_regions, steps))
        powers = phi ** np.arange(1, steps + 1)
        path = powers * (state[:, None] + np.cumsum(innovations / powers, axis=1))
        state[:] = path[:, -1]
        return path

    def _generate_weather_day(self) -> None:
        d = self.days
        n = BUCKETS_PER_DAY
        start_bucket = d * n
        self._grow(start_bucket + n)
        sl = slice(start_bucket, start_bucket + n)
        mid_times = self.origin + (start_bucket + np.arange(n) + 0.5) * BUCKET_SECONDS
        month = np.full(n, month_of(mid_times[0]))  # climate changes slowly; a day is fine
        local_hour = ((mid_times / HOUR) + 1.0) % 24.0

        storm = self._ar1_block(self._storm_state, _STORM_PHI, n)
        fog = self._ar1_block(self._fog_state, _FOG_PHI, n)
        temp_noise = self._ar1_block(self._temp_state, _TEMP_PHI, n)

        storminess = self._storminess[:, None] * (1.0 + 0.6 * _WINTERNESS[month][None, :])
        threshold = 1.0 - 0.8 * storminess
        storm_sev = np.where(storm > threshold, np.floor((storm - threshold) * 1.8) + 1, 0)
        storm_sev = np.clip(storm_sev, 0, 5).astype(np.int64)

        temperature = (
            self._climate[:, month]
            + 4.0 * np.cos(2 * np.pi * (local_hour[None, :] - 15.0) / 24.0)
            + 2.5 * temp_noise
        )
        heat_sev = np.clip(np.floor((temperature - 30.0) / 2.0) + 1, 0, 5).astype(np.int64)
        snowing = (temperature <= 0.5) & (storm_sev >= 1)
        storm_sev = np.where(snowing, np.minimum(storm_sev + 1, 5), storm_sev)
        foggy = (storm_sev == 0) & (fog > 1.4) & (local_hour[None, :] < 10.0) & (temperature < 14.0)
        severity = np.maximum(np.maximum(storm_sev, heat_sev), foggy.astype(np.int64))

        condition = np.full(storm_sev.shape, CLEAR, dtype=np.int64)
        condition[foggy] = FOG
        condition[storm_sev >= 1] = RAIN
        condition[storm_sev >= ALERT_SEVERITY] = STORM
        condition[snowing] = SNOW
        condition[(heat_sev > 0) & (heat_sev >= storm_sev)] = HEAT

        wind = 6.0 + 11.0 * storm_sev + np.abs(self._weather_rng.normal(0.0, 5.0, storm_sev.shape))

        self.severity[:, sl] = severity
        self.condition[:, sl] = condition
        self.temperature[:, sl] = np.round(temperature, 1)
        self.wind[:, sl] = np.round(wind, 1)
        self._apply_events_to_day(start_bucket, n)
        self.traffic[:, sl] *= _WEATHER_TRAFFIC[severity]
        self.days += 1

    # ------------------------------------------------------------------ world events
    def _generate_events_until(self, days: int) -> None:
        rng = self._events_rng
        while self._event_days < days:
            day_start = self.origin + self._event_days * DAY
            for region in range(self.n_regions):
                for _ in range(rng.poisson(0.25)):
                    event = self._draw_event(region, day_start, rng)
                    self.new_world_events.append(event)
                    self.events.append(event)
                    self._active_by_region[region].append(event)
            self._event_days += 1

    def _draw_event(self, region: int, day_start: float, rng: np.random.Generator) -> WorldEvent:
        kind = WORLD_EVENT_KINDS[rng.choice(5, p=[0.2, 0.1, 0.15, 0.3, 0.25])]
        start = day_start + rng.uniform(0.0, DAY)
        if kind == "strike":
            severity, duration, lead = rng.integers(2, 6), rng.uniform(8, 48), rng.uniform(12, 48)
        elif kind == "port_closure":
            severity, duration, lead = rng.integers(3, 6), rng.uniform(6, 36), rng.uniform(0, 3)
        elif kind == "holiday":
            # Holidays run from local midnight to midnight and are known a week ahead.
            local_midnight = np.ceil((start + HOUR) / DAY) * DAY - HOUR
            start, severity, duration, lead = local_midnight, rng.integers(1, 3), 24.0, 168.0
        elif kind == "protest":
            severity, duration, lead = rng.integers(1, 4), rng.uniform(2, 8), rng.uniform(0, 12)
        else:  # road_closure, reported as it happens
            severity, duration, lead = rng.integers(1, 5), rng.uniform(1, 12), 0.0
        self._event_counter += 1
        announced = max(start - lead * HOUR, self.start) + 0.25
        return WorldEvent(
            world_event_id=f"WE-{self._event_counter:07d}",
            region=region,
            kind=kind,
            severity=int(severity),
            starts_at=float(start),
            ends_at=float(start + duration * HOUR),
            announced_at=float(announced),
        )

    def _apply_events_to_day(self, start_bucket: int, n: int) -> None:
        day_from = self.origin + start_bucket * BUCKET_SECONDS
        day_to = day_from + n * BUCKET_SECONDS
        # Old events can never touch future days again; keep the list short.
        self.events = [e for e in self.events if e.ends_at > day_from]
        for e in self.events:
            if e.starts_at >= day_to:
                continue
            b0 = max(int((e.starts_at - self.origin) // BUCKET_SECONDS), start_bucket)
            b1 = min(int(np.ceil((e.ends_at - self.origin) / BUCKET_SECONDS)), start_bucket + n)
            if b1 <= b0:
                continue
            seg = self.event_severity[e.region, b0:b1]
            np.maximum(seg, e.severity, out=seg)
            self.traffic[e.region, b0:b1] *= e.traffic_factor()

    def take_new_world_events(self) -> list[WorldEvent]:
        """World events created since the last call (to schedule their announcements)."""
        events, self.new_world_events = self.new_world_events, []
        return events

    # ------------------------------------------------------------------ lookups
    def bucket(self, t: np.ndarray | float) -> np.ndarray:
        """Bucket index of epoch seconds t (vectorised)."""
        return ((np.asarray(t) - self.origin) // BUCKET_SECONDS).astype(np.int64)

    def _report_time(self, bucket: int, region: int) -> float:
        return (
            self.origin
            + bucket * BUCKET_SECONDS
            + _REPORT_DELAY_SECONDS
            + _REGION_STAGGER_SECONDS * region
        )

    def weather_severity_at(self, region: int, t: float) -> int:
        """Severity 0..5 of the latest weather observation of a region at or before t.

        Exactly what a consumer of the weather topic knows at t, so causes drawn from it
        can be recovered from the events.
        """
        offset = _REPORT_DELAY_SECONDS + _REGION_STAGGER_SECONDS * region
        bucket = int((t - self.origin - offset) // BUCKET_SECONDS)
        return int(self.severity[region, max(bucket, 0)])

    def event_severity_at(self, region: int, t: float) -> int:
        """Max severity of world events active in a region at t, i.e. with
        starts_at <= t < ends_at (0 when none)."""
        return max(
            (e.severity for e in self._active_by_region[region] if e.starts_at <= t < e.ends_at),
            default=0,
        )

    def forget_before(self, t: float) -> None:
        """Drop world events that ended before t; later lookups must be at or after t."""
        for region, events in enumerate(self._active_by_region):
            self._active_by_region[region] = [e for e in events if e.ends_at > t]

    def store_traffic_factor(self, region: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Multiplier on store visits (<= MAX_TRAFFIC_FACTOR) per (region, time) pair."""
        return self.traffic[region, self.bucket(t)]

    def observations_between(
        self, t_from: float, t_to: float
    ) -> list[tuple[float, int, int, bool]]:
        """Weather records due in (t_from, t_to]: (time, region, bucket, is_alert), by time.

        Each region reports at the start of every bucket (staggered by region so records
        do not share a timestamp); an alert follows when severity reaches or rises above
        ALERT_SEVERITY.
        """
        out: list[tuple[float, int, int, bool]] = []
        b_first = max(int((t_from - self.origin) // BUCKET_SECONDS), 0)
        b_last = int((t_to - self.origin) // BUCKET_SECONDS)
        for b in range(b_first, b_last + 1):
            for r in range(self.n_regions):
                t_obs = self._report_time(b, r)
                if t_from < t_obs <= t_to:
                    out.append((t_obs, r, b, False))
                sev = self.severity[r, b]
                prev = self.severity[r, b - 1] if b > 0 else 0
                t_alert = t_obs + 0.5
                if sev >= ALERT_SEVERITY and sev > prev and t_from < t_alert <= t_to:
                    out.append((t_alert, r, b, True))
        out.sort()
        return out
