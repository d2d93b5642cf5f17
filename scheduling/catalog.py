"""Fleet-template catalog: EC2 instance types with power draw and spot-interruption data.

Sources (packaged in ``scheduling/data``, see DATA-LICENSES.md):

- Teads' AWS EC2 power dataset (as republished by Cloud Carbon Footprint): ``Instance @ 50%`` watts,
  the measured/estimated whole-instance draw at 50 % CPU load (CCF's default utilisation).
- Cloud Carbon Footprint coefficients (Apache-2.0) for types Teads does not list:
  ``vcpu * (min + 0.5 * (max - min))`` W per vCPU of the CPU architecture, plus 0.392 W per GiB of memory
  (CCF: 0.000392 kWh per GB-hour). The architecture is inferred from the instance family (e.g. ``m6i`` ->
  Ice Lake, ``c7g`` -> Graviton3); unknown families use the mean over all architectures.
- AWS Spot Advisor (Linux): interruption-frequency bin (0 ``<5%``, 1 ``5-10%``, 2 ``10-15%``, 3 ``15-20%``,
  4 ``>20%``) and savings over on-demand, per region.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from scheduling.carbon import _data_bytes

__all__ = [
    "AWS_PUE",
    "SPOT_BIN_MONTHLY_FREQUENCY",
    "FleetTemplate",
    "fleet_power_kw",
    "get_fleet_template",
    "list_fleet_templates",
    "offered_in",
    "spot_interruption_probability",
]

AWS_PUE = 1.135  # CCF's power usage effectiveness for AWS data centres
MEMORY_W_PER_GIB = 0.392  # CCF: 0.000392 kWh per GB-hour
# Midpoint of each Spot Advisor bin, as the fraction of instances interrupted per month (the ">20%" bin
# has no upper edge; 25% is used).
SPOT_BIN_MONTHLY_FREQUENCY = {0: 0.025, 1: 0.075, 2: 0.125, 3: 0.175, 4: 0.25}
MONTH_SEC = 30.0 * 86400.0

# Instance family -> CPU architecture in the CCF coefficients, for types without Teads measurements.
# The family is letters + generation + processor/feature letters ("m6i", "c7gn", "i4i", "hpc6a").
_FAMILY = re.compile(r"^(?:u-)?([a-z]+?)(\d+)([a-z-]*)\.")
_GRAVITON = {6: "Graviton2", 7: "Graviton3", 8: "Graviton4"}
_AMD = {5: "EPYC 1st Gen", 6: "EPYC 3rd Gen", 7: "EPYC 4th Gen", 8: "EPYC 5th Gen"}
_INTEL = {
    3: "Ivy Bridge",
    4: "Broadwell",
    5: "Skylake",
    6: "Ice Lake",
    7: "Sapphire Rapids",
    8: "Granite Rapids",
}


def _architecture(instance_type: str) -> str | None:
    m = _FAMILY.match(instance_type)
    if m is None:
        return None
    gen, extra = int(m.group(2)), m.group(3)
    clamp = min(max(gen, 3), 8)
    if extra.startswith("g"):
        return _GRAVITON[min(max(gen, 6), 8)]
    if extra.startswith("a"):
        return _AMD[min(max(gen, 5), 8)]
    if extra.startswith("i"):  # explicit Intel: i4i / x2idn are Ice Lake
        return _INTEL[min(max(gen, 6), 8)]
    return _INTEL[clamp]


@dataclass(frozen=True)
class FleetTemplate:
    """One EC2 instance type as a fleet template.

    ``watts_50``: draw at 50 % CPU load (W, one instance, PUE not included); ``power_source`` says where it
    came from (``teads`` or ``ccf:<architecture>``); ``spot_bins``: region -> Spot Advisor interruption bin
    0..4 (Linux); ``spot_savings_pct``: region -> spot saving over on-demand (%).
    """

    id: str
    vcpu: int
    memory_gib: float
    watts_50: float
    power_source: str
    spot_bins: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    spot_savings_pct: dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vcpu": self.vcpu,
            "memory_gib": self.memory_gib,
            "watts_50": self.watts_50,
            "power_source": self.power_source,
            "power_kw_with_pue": fleet_power_kw(self),
            "spot_bins": dict(self.spot_bins),
            "spot_savings_pct": dict(self.spot_savings_pct),
        }


def _num(text: str) -> float:
    """Teads numbers use decimal commas ("1,88")."""
    return float(text.strip().replace(",", "."))


@lru_cache(maxsize=1)
def _ccf_coefficients() -> dict[str, tuple[float, float]]:
    rows = csv.DictReader(io.StringIO(_data_bytes("ccf-coefficients-aws-use.csv").decode()))
    return {r["Architecture"].strip(): (float(r["Min Watts"]), float(r["Max Watts"])) for r in rows}


def _ccf_watts(instance_type: str, vcpu: int, memory_gib: float) -> tuple[float, str]:
    coeffs = _ccf_coefficients()
    arch = _architecture(instance_type)
    if arch not in coeffs:
        lo = sum(c[0] for c in coeffs.values()) / len(coeffs)
        hi = sum(c[1] for c in coeffs.values()) / len(coeffs)
        arch = "average"
    else:
        lo, hi = coeffs[arch]  # type: ignore[index]
    return vcpu * (lo + 0.5 * (hi - lo)) + memory_gib * MEMORY_W_PER_GIB, f"ccf:{arch}"


@lru_cache(maxsize=1)
def _catalog() -> dict[str, FleetTemplate]:
    spot = json.loads(_data_bytes("spot-advisor-linux.json.gz"))
    bins: dict[str, dict[str, int]] = {}
    savings: dict[str, dict[str, int]] = {}
    for region, types in spot["linux"].items():
        for t, (r, s) in types.items():
            bins.setdefault(t, {})[region] = int(r)
            savings.setdefault(t, {})[region] = int(s)

    out: dict[str, FleetTemplate] = {}
    teads = csv.DictReader(io.StringIO(_data_bytes("aws-instances-teads.csv.gz").decode("utf-8")))
    for row in teads:
        t = row["Instance type"].strip()
        try:
            vcpu = int(_num(row["Instance vCPU"]))
            mem = _num(row["Instance Memory (in GB)"])
            watts = _num(row["Instance @ 50%"])
            source = "teads"
        except ValueError:
            continue
        if not math.isfinite(watts) or watts <= 0:
            watts, source = _ccf_watts(t, vcpu, mem)
        out[t] = FleetTemplate(t, vcpu, mem, round(watts, 3), source, bins.get(t, {}), savings.get(t, {}))
    for t, info in spot["instance_types"].items():
        if t in out:
            continue
        vcpu, mem = int(info["cores"]), float(info["ram_gb"])
        watts, source = _ccf_watts(t, vcpu, mem)
        out[t] = FleetTemplate(t, vcpu, mem, round(watts, 3), source, bins.get(t, {}), savings.get(t, {}))
    return dict(sorted(out.items()))


def list_fleet_templates() -> list[FleetTemplate]:
    """Every known instance type, sorted by id."""
    return list(_catalog().values())


def get_fleet_template(id: str) -> FleetTemplate | None:  # noqa: A002 - the API calls it id
    """The template for an instance type (e.g. ``"m5.4xlarge"``), or None."""
    return _catalog().get(id.strip().lower())


def fleet_power_kw(t: FleetTemplate, count: int = 1, pue: float = AWS_PUE) -> float:
    """Facility power of ``count`` instances at 50 % load, in kW: ``watts_50 * count * pue / 1000``."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if pue < 1:
        raise ValueError("pue must be >= 1")
    return t.watts_50 * count * pue / 1000.0


@lru_cache(maxsize=1)
def _spot_regions() -> frozenset[str]:
    return frozenset(json.loads(_data_bytes("spot-advisor-linux.json.gz"))["linux"])


def offered_in(t: FleetTemplate, region: str) -> bool | None:
    """Whether the instance type is offered in ``region``, as far as the packaged data tells: Spot Advisor
    lists every type with spot capacity per region, and an EC2 type offered in a region is offered there as
    spot too, so a type missing from a listed region is taken as not offered (True/False). None: the region
    is not in the data (unknown; the planner then allows it). ``POST /v1/clients/{id}/aws/verify`` checks
    the account's own offerings with DescribeInstanceTypeOfferings."""
    r = region.strip().lower()
    if r not in _spot_regions():
        return None
    return r in t.spot_bins


def spot_interruption_probability(t: FleetTemplate, region: str, runtime_sec: float) -> float:
    """Probability that a spot instance of ``t`` in ``region`` is interrupted within ``runtime_sec`` seconds.

    The Spot Advisor bin gives the share of instances interrupted per month; its midpoint ``f``
    (``SPOT_BIN_MONTHLY_FREQUENCY``) is read as a constant hazard: ``P = 1 - (1 - f) ** (runtime / 30 days)``.
    Returns 1.0 when spot has no data for the type in that region (treated as "not offered").
    """
    b = t.spot_bins.get(region.strip().lower())
    if b is None:
        return 1.0
    if runtime_sec < 0 or not math.isfinite(runtime_sec):
        raise ValueError("runtime_sec must be a finite number >= 0")
    f = SPOT_BIN_MONTHLY_FREQUENCY[int(b)]
    return 1.0 - (1.0 - f) ** (runtime_sec / MONTH_SEC)
