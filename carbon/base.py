"""The provider interface, the registry, errors and the live-data record every provider returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
import numpy as np

from core.settings import Settings
from scheduling.carbon import CarbonSeries

__all__ = [
    "REGISTRY",
    "CarbonProvider",
    "CarbonProviderError",
    "LiveData",
    "LiveProvider",
    "NotCovered",
    "describe_error",
    "register",
]


class CarbonProviderError(RuntimeError):
    """A provider could not be used (from get_series: nothing was left to fall back on)."""


class NotCovered(CarbonProviderError):
    """The provider is not configured for, or has no data for, this region (a reason, not an outage)."""


@dataclass(frozen=True)
class LiveData:
    """What one call of a live provider returned, normalised: g/kWh on a regular UTC grid.

    ``forecast``: points from (about) now on; ``actuals``: measured recent points (sigma 0), or None.
    ``fetched_at`` is the forecast's issue time, from which lead times (and so sigma) are counted.
    """

    target: str
    fetched_at: datetime
    forecast: CarbonSeries | None
    actuals: CarbonSeries | None = None


@runtime_checkable
class CarbonProvider(Protocol):
    """A live carbon-intensity source. Instances are built from ``Settings`` only (``cls(settings)``).

    - ``name``: the ``ORCH_CARBON_PROVIDER`` value; ``signal``: "average" or "marginal";
      ``keyed``: needs credentials (``auto`` prefers a configured keyed provider over a keyless one).
    - ``target(region)``: the provider's key for an AWS region; raises :class:`NotCovered` with the reason.
    - ``configured()``: credentials present (always True for keyless providers).
    - ``fetch(http, target, now)``: one call, parsed into :class:`LiveData`; raises httpx errors or
      ValueError / KeyError / TypeError on a bad response (the service turns them into a fallback reason).
    - ``relative_sigma(lead_hours)``: 1-sigma relative error of its forecast at those lead times.
    """

    name: ClassVar[str]
    signal: ClassVar[str]
    keyed: ClassVar[bool]

    def target(self, region: str) -> str: ...

    def configured(self) -> bool: ...

    def fetch(self, http: httpx.Client, target: str, now: datetime) -> LiveData: ...

    def relative_sigma(self, lead_hours: np.ndarray) -> np.ndarray: ...


class LiveProvider:
    """Base class of the HTTP providers: settings, the default sigma model, ``configured``.

    Forecast error model (documented constants, per provider): relative 1-sigma
    ``min(SIGMA0 + SIGMA_PER_HOUR x lead_hours, SIGMA_MAX)``: a day-ahead grid forecast is typically
    within 5-15 % at the first hours and degrades with lead time; marginal signals are noisier.
    """

    name: ClassVar[str] = ""
    signal: ClassVar[str] = "average"
    keyed: ClassVar[bool] = False
    SIGMA0: ClassVar[float] = 0.05
    SIGMA_PER_HOUR: ClassVar[float] = 0.004
    SIGMA_MAX: ClassVar[float] = 0.3

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def configured(self) -> bool:
        return True

    def relative_sigma(self, lead_hours: np.ndarray) -> np.ndarray:
        lead = np.maximum(np.asarray(lead_hours, dtype=np.float64), 0.0)
        return np.minimum(self.SIGMA0 + self.SIGMA_PER_HOUR * lead, self.SIGMA_MAX)

    def target(self, region: str) -> str:  # pragma: no cover - every provider overrides it
        raise NotImplementedError

    def fetch(self, http: httpx.Client, target: str, now: datetime) -> LiveData:  # pragma: no cover
        raise NotImplementedError

    def history(self, http: httpx.Client, target: str, start: datetime, end: datetime) -> CarbonSeries:
        """Measured intensity (actuals, not a forecast) around ``[start, end)``, g/kWh on a regular UTC grid;
        it may cover less than asked (the caller checks). Raises :class:`NotCovered` when the provider
        publishes no measured history (the default), httpx errors or ValueError / KeyError / TypeError on a
        bad response, like :meth:`fetch`."""
        raise NotCovered(f"{self.name} publishes no measured history")


#: name -> provider class; providers register themselves with :func:`register` when carbon/ is imported.
REGISTRY: dict[str, type[LiveProvider]] = {}


def register(cls: type[LiveProvider]) -> type[LiveProvider]:
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"provider name {cls.name!r} is empty or taken")
    REGISTRY[cls.name] = cls
    return cls


def secret(value: Any) -> str | None:
    """A SecretStr's value, or the string itself; None for unset."""
    if value is None:
        return None
    v = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return v or None


def describe_error(e: BaseException) -> str:
    """Short reason for the rationale; never contains credentials (URLs are reduced to their host)."""
    if isinstance(e, httpx.HTTPStatusError):
        return f"HTTP {e.response.status_code} from {e.request.url.host}"
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, httpx.HTTPError):
        return f"{type(e).__name__} reaching the provider"
    if isinstance(e, KeyError | TypeError | IndexError | AttributeError):
        return f"unexpected response shape ({type(e).__name__}: {e})"
    return str(e)


Fetcher = Callable[[httpx.Client, str, datetime], LiveData]
