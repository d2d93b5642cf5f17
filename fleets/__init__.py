"""Fleet drivers behind one interface (``fleets.base.FleetDriver``): ``local`` and ``ec2``."""

from __future__ import annotations

from core.settings import Settings
from fleets.base import FleetDriver

DRIVERS = ("local", "ec2")


def get_driver(name: str, settings: Settings) -> FleetDriver:
    """The driver called ``name`` (``"local"`` or ``"ec2"``), built from ``settings``."""
    if name == "local":
        from fleets.local import LocalFleetDriver

        return LocalFleetDriver(settings)
    if name == "ec2":
        from fleets.ec2 import Ec2FleetDriver

        return Ec2FleetDriver(settings)
    raise ValueError(f"unknown fleet driver {name!r}; known: {', '.join(DRIVERS)}")
