"""``orch carbon skill``: the live carbon forecasts' measured skill (``GET /v1/carbon/skill``, issue 18).

Per provider and zone: the forecast/measured pairs, MAE and bias (g/kWh), the coverage of the stated 80 %
interval and, per lead time, the sigma planning uses and whether it is still the documented prior.
``--json`` prints the API's JSON. Exit codes as ``orch runs`` (3: refused, 4: unreachable).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.client import Api, JsonOpt, _dump, out

carbon_app = typer.Typer(help="Carbon forecasts: their measured skill", no_args_is_help=True)


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _lead(b: dict[str, Any]) -> str:
    hi = b.get("lead_to_h")
    return f"{b['lead_from_h']:g}-{hi:g} h" if hi is not None else f">= {b['lead_from_h']:g} h"


@carbon_app.command("skill")
def skill(
    provider: str = typer.Option(None, "--provider", help="Only this provider (e.g. electricitymaps)"),
    zone: str = typer.Option(None, "--zone", help="Only this zone (e.g. DE)"),
    as_json: bool = JsonOpt,
) -> None:
    """Measured skill of the live forecasts the product used, per provider, zone and lead time."""
    params = {k: v for k, v in {"provider": provider, "zone": zone}.items() if v}
    data = Api().json("GET", "/v1/carbon/skill", params=params)
    if as_json:
        _dump(data)
        return
    if not data["items"]:
        out.print("no forecast/measured pairs yet: planning uses each provider's documented sigma (prior)")
        return
    for item in data["items"]:
        out.print(
            f"[bold]{item['provider']} {item['zone']}[/bold] ({item['signal']}): {item['pairs']} pairs, "
            f"MAE {_num(item['mae'])} g/kWh, bias {_num(item['bias'], '{:+.1f}')} g/kWh, "
            f"80 % interval covered {_num(item['coverage_80'], '{:.0%}')}"
        )
        t = Table("lead", "pairs", "bias %", "MAE g/kWh", "RMS error %", "covered", "prior %", "sigma in use")
        for b in item["by_lead"]:
            use = f"{b['sigma_pct']:.1f} %" + (" (prior)" if b["is_prior"] else "")
            t.add_row(
                _lead(b),
                str(b["pairs"]),
                _num(b["bias_pct"], "{:+.1f}"),
                _num(b["mae"]),
                _num(b["measured_sigma_pct"]),
                _num(b["coverage_80"], "{:.0%}"),
                f"{b['prior_sigma_pct']:.1f}",
                use,
            )
        out.print(t)
    out.print(data["method"], style="dim")
