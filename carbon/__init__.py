"""Carbon-intensity providers behind one small interface, configured from ``Settings`` only.

- :func:`get_series` / :class:`CarbonService`: intensity for (AWS region, range) from the configured
  source chain (``ORCH_CARBON_PROVIDER``; default ``auto``), cached, spliced, with fallback reasons.
- Providers (:data:`REGISTRY`, the :class:`CarbonProvider` protocol): ``electricitymaps``, ``watttime``,
  ``carbon-aware-sdk`` (keyed, ``carbon.keyed``), ``uk-carbon-intensity``, ``energy-charts`` (keyless,
  ``carbon.keyless``); ``embedded`` (``carbon.embedded``) and ``csv`` (``carbon.csvfile``) need no network.
- :func:`measured_series`: measured intensity (actuals only) of a past interval, for the ledger.
- Caches: :class:`MemoryTTLCache`, :class:`DbCarbonCache` (``carbon.cache``).

Adding a provider: a class with the :class:`CarbonProvider` members decorated with ``@register`` in a
module of this package imported below, and its settings in the carbon block of ``core/settings.py``.
``scheduling/`` stays pure (series maths, forecasting, scoring) and never imports this package.
"""

from carbon import keyed, keyless  # noqa: F401  (register the providers)
from carbon.actuals import Measured, measured_series
from carbon.base import REGISTRY, CarbonProvider, CarbonProviderError, LiveData, NotCovered, register
from carbon.cache import CarbonCache, DbCarbonCache, MemoryTTLCache
from carbon.csvfile import load_csv, load_csv_series
from carbon.embedded import embedded_series
from carbon.service import DEFAULT_CACHE, CarbonService, SeriesSource, get_series, get_series_info, providers

__all__ = [
    "DEFAULT_CACHE",
    "REGISTRY",
    "CarbonCache",
    "CarbonProvider",
    "CarbonProviderError",
    "CarbonService",
    "DbCarbonCache",
    "LiveData",
    "Measured",
    "MemoryTTLCache",
    "NotCovered",
    "SeriesSource",
    "embedded_series",
    "get_series",
    "get_series_info",
    "load_csv",
    "load_csv_series",
    "measured_series",
    "providers",
    "register",
]
