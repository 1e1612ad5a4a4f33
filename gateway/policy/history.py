"""What a planning policy has observed: the grid's intensity and the requests served, in 15-minute buckets.

``BucketHistory`` keeps the last ``span_hours`` as a ring of buckets aligned to the epoch (the store's
buckets: ``gateway.state.models.BUCKET_S``), so a fleet's processes, a restarted one and the store all speak
of the same intervals. Each bucket holds the seconds observed in it, their intensity-weighted sum and the
requests served. A policy asks for the distribution over the whole span (``sums``, ``totals``), over a
trailing window (``binned_window``; ``window`` gives it bucket by bucket), or for the daily mean intensities
(``daily_means``).

The whole span's distribution is kept as it changes, summed into bins of intensity 1 % wide (``BIN_RATIO``,
log-spaced): a policy plans with it at every poll, and a month of buckets summed afresh each time would cost a
replayed year of 15-minute periods minutes rather than seconds. Relative bins make the planned price as
precise on a 30 g/kWh hydro grid as on a 600 g/kWh coal one, and any grid's distribution a few hundred bins.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ..arrays import FloatArray, IndexArray
from ..state.models import BUCKET_S

DAY_S = 86400.0
#: Each intensity bin spans BIN_RATIO times the intensity of its lower edge, from BIN_FLOOR g/kWh (bin 0 holds
#: everything below) up to the last of BINS (everything above, about 26 kg/kWh).
BIN_RATIO = 1.01
BIN_FLOOR = 1.0
BINS = 1024
_LOG_RATIO = math.log(BIN_RATIO)


def intensity_bins(intensities: npt.ArrayLike) -> IndexArray:
    """The bin of each intensity (g/kWh)."""
    c = np.maximum(np.asarray(intensities, dtype=np.float64), BIN_FLOOR)
    bins: IndexArray = np.minimum((np.log(c / BIN_FLOOR) / _LOG_RATIO).astype(np.intp), BINS - 1)
    return bins


def _bin_of(intensity: float) -> int:
    return min(int(math.log(max(intensity, BIN_FLOOR) / BIN_FLOOR) / _LOG_RATIO), BINS - 1)


class BucketHistory:
    """The trailing ``span_hours`` of observations, bucket by bucket."""

    def __init__(self, span_hours: float):
        self.capacity = max(1, int(np.ceil(span_hours * 3600.0 / BUCKET_S)) + 1)
        self._seconds = np.zeros(self.capacity)
        self._weighted = np.zeros(self.capacity)  # intensity x seconds
        self._requests = np.zeros(self.capacity)
        self._bin = np.full(self.capacity, -1, dtype=np.int64)  # each bucket's intensity bin in the histogram
        self._latest: int | None = None  # bucket number (epoch // BUCKET_S) of the newest bucket kept
        # Per intensity bin: seconds, intensity x seconds, requests, and the seconds of buckets with requests.
        self._hist = np.zeros((4, BINS))
        self._sums = [0.0, 0.0, 0.0, 0.0]  # the histogram's rows summed
        self._first, self._stop = BINS, 0  # the bins ever occupied since the last rebuild: [first, stop)
        self._changes = 0

    # --- the histogram of the whole span, kept as buckets change ---------------------------------------

    def _row(self, slot: int) -> tuple[float, float, float, float]:
        seconds, requests = float(self._seconds[slot]), float(self._requests[slot])
        return seconds, float(self._weighted[slot]), requests, seconds if requests > 0 else 0.0

    def _withdraw(self, slot: int) -> None:
        b = self._bin[slot]
        if b >= 0:
            row = self._row(slot)
            self._hist[:, b] -= row
            self._sums = [total - value for total, value in zip(self._sums, row, strict=True)]
            self._bin[slot] = -1

    def _deposit(self, slot: int) -> None:
        seconds = self._seconds[slot]
        if seconds <= 0:
            return
        b = _bin_of(float(self._weighted[slot] / seconds))
        self._bin[slot] = b
        row = self._row(slot)
        self._hist[:, b] += row
        self._sums = [total + value for total, value in zip(self._sums, row, strict=True)]
        self._first, self._stop = min(self._first, b), max(self._stop, b + 1)
        self._changes += 1
        if self._changes >= 4 * self.capacity:  # now and then, sum afresh: no rounding piles up
            self._rebuild()

    def _rebuild(self) -> None:
        self._hist[:] = 0.0
        kept = self._bin >= 0
        counted = np.where(self._requests > 0, self._seconds, 0.0)
        for row, values in enumerate((self._seconds, self._weighted, self._requests, counted)):
            self._hist[row, :] = np.bincount(self._bin[kept], weights=values[kept], minlength=self._hist.shape[1])
        self._sums = [float(total) for total in self._hist.sum(axis=1)]
        self._first = int(self._bin[kept].min()) if kept.any() else BINS
        self._stop = int(self._bin[kept].max()) + 1 if kept.any() else 0
        self._changes = 0

    def sums(self) -> tuple[float, float, float]:
        """Over the whole span: seconds observed, requests, and the seconds of buckets whose requests were
        counted (a bucket learned from a provider's past has none)."""
        seconds, _, requests, counted = self._sums
        return seconds, max(requests, 0.0), max(counted, 0.0)

    @property
    def occupied(self) -> tuple[int, int]:
        """The bins ``[first, stop)`` that hold the span's observations (perhaps a few more)."""
        return self._first, self._stop

    def totals(self, first: int, stop: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Per intensity bin from ``first`` to ``stop`` (read-only), over the whole span: seconds, intensity x
        seconds, requests, and the seconds of buckets whose requests were counted."""
        seconds, weighted, requests, counted = self._hist[:, first:stop]
        return seconds, weighted, requests, counted

    # --- buckets ---------------------------------------------------------------------------------------

    def _advance(self, number: int) -> int | None:
        """The slot of bucket ``number``, made the newest if it is (the ones it pushes out cleared); None if it
        is too old to keep."""
        if self._latest is None:
            self._latest = number
        elif number > self._latest:
            cleared = min(number - self._latest, self.capacity)
            for newer in range(number - cleared + 1, number + 1):
                slot = newer % self.capacity
                self._withdraw(slot)
                self._seconds[slot] = self._weighted[slot] = self._requests[slot] = 0.0
            self._latest = number
        elif number <= self._latest - self.capacity:
            return None
        return number % self.capacity

    def add(self, start: float, duration: float, intensity: float, requests: float = 0.0) -> list[tuple[int, float]]:
        """Observe ``intensity`` over ``[start, start + duration)`` and ``requests`` served in it (split over
        the buckets in proportion to time); each bucket it touched (start, epoch s) and the requests it got."""
        touched = []
        end = start + max(duration, 0.0)
        for number in range(int(start // BUCKET_S), int(max(end - 1e-9, start) // BUCKET_S) + 1):
            lo, hi = max(start, number * BUCKET_S), min(end, (number + 1) * BUCKET_S)
            slot = self._advance(number)
            if slot is None:
                continue
            share = requests * ((hi - lo) / duration if duration > 0 else 1.0)
            self._withdraw(slot)
            self._seconds[slot] += hi - lo
            self._weighted[slot] += intensity * (hi - lo)
            self._requests[slot] += share
            self._deposit(slot)
            touched.append((number * BUCKET_S, share))
        return touched

    def set_bucket(self, start: int, intensity: float | None = None, requests: float | None = None,
                   seconds: float | None = None) -> None:
        """What the store knows of a bucket: the fleet's requests in it, and its mean intensity (over
        ``seconds``, a whole bucket unless said) where this history saw none of it itself."""
        slot = self._advance(int(start // BUCKET_S))
        if slot is None:
            return
        self._withdraw(slot)
        if intensity is not None and self._seconds[slot] <= 0:
            observed = float(seconds or BUCKET_S)
            self._seconds[slot], self._weighted[slot] = observed, intensity * observed
        if requests is not None:
            self._requests[slot] = requests
        self._deposit(slot)

    def _slot_of(self, start: int) -> int | None:
        number = int(start // BUCKET_S)
        if self._latest is None or not self._latest - self.capacity < number <= self._latest:
            return None
        return number % self.capacity

    def mean_intensity(self, start: int) -> float | None:
        slot = self._slot_of(start)
        if slot is None or self._seconds[slot] <= 0:
            return None
        return float(self._weighted[slot] / self._seconds[slot])

    def requests(self, start: int) -> float:
        slot = self._slot_of(start)
        return 0.0 if slot is None else float(self._requests[slot])

    # --- windows ---------------------------------------------------------------------------------------

    def _numbers(self, now: float, hours: float) -> npt.NDArray[np.int64]:
        if self._latest is None:
            return np.empty(0, dtype=np.int64)
        newest = min(self._latest, int(now // BUCKET_S))
        oldest = max(newest - self.capacity + 1, int((now - hours * 3600.0) // BUCKET_S))
        return np.arange(oldest, newest + 1, dtype=np.int64)

    def window(self, now: float, hours: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Over the trailing ``hours``, per observed bucket: mean intensity, seconds, requests, and the seconds
        if its requests were counted (else 0)."""
        slots = self._numbers(now, hours) % self.capacity
        seconds = self._seconds[slots]
        seen = seconds > 0
        slots, seconds = slots[seen], seconds[seen]
        requests = self._requests[slots]
        return self._weighted[slots] / seconds, seconds, requests, np.where(requests > 0, seconds, 0.0)

    def binned_window(self, now: float, hours: float, rate: float, first: int, stop: int) -> FloatArray:
        """Over the trailing ``hours``, per intensity bin from ``first`` to ``stop`` (which must hold
        ``occupied``): the requests served, and where none were counted (a bucket learned from a provider's
        past) its seconds at ``rate``."""
        slots = self._numbers(now, hours) % self.capacity
        slots = slots[self._bin[slots] >= 0]
        requests = self._requests[slots]
        weights = np.where(requests > 0, requests, self._seconds[slots] * rate)
        per_bin: FloatArray = np.bincount(self._bin[slots] - first, weights=weights,
                                          minlength=stop - first).astype(np.float64, copy=False)
        return per_bin

    def daily_means(self, now: float, days: int) -> FloatArray:
        """The mean intensity of each of the last ``days`` whole UTC days before ``now`` that were mostly
        observed, oldest first."""
        midnight = (now // DAY_S) * DAY_S
        numbers = self._numbers(midnight - 1.0, days * 24.0)
        if len(numbers) == 0:
            return np.empty(0)
        slots = numbers % self.capacity
        day_of = numbers * BUCKET_S // int(DAY_S)
        day_of -= day_of[0]
        seconds = np.bincount(day_of, weights=self._seconds[slots])
        weighted = np.bincount(day_of, weights=self._weighted[slots])
        observed = seconds > 0.5 * DAY_S  # a day mostly unobserved says little of its level
        means: FloatArray = weighted[observed] / seconds[observed]
        return means

    @property
    def hours(self) -> float:
        """Hours observed in the span kept."""
        return float(self._seconds.sum() / 3600.0)
