"""Rebuild ``scheduling/data/`` from the public source files (run by hand, never at run time).

    .venv/bin/python bench/make_data.py SOURCE_DIR   # the folder with carbon/ and ec2/ source files

The directory is flat because setuptools package-data ``"*"`` does not recurse. Writes compact,
compressed copies of only what the product reads:
- ``em2023_<ZONE>.csv.gz``: ``timestamp,g_per_kwh`` (hourly, UTC, Electricity Maps LCA intensity; ODbL).
- ``aws-region-zones.csv``, ``aws-region-factors-ccf.csv`` (CCF, Apache-2.0).
- ``aws-instances-teads.csv.gz`` (Teads / CCF), ``ccf-coefficients-aws-use.csv`` (CCF, Apache-2.0).
- ``spot-advisor-linux.json.gz``: the AWS Spot Advisor feed reduced to Linux
  ``{region: {type: [bin, savings%]}}`` plus ``instance_types`` and ``ranges``.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "scheduling" / "data"
LCA = "Carbon Intensity gCO₂eq/kWh (LCA)"


def _parse_time(text: str) -> datetime:
    text = text.strip()
    if "/" in text:  # GB file: DD/MM/YYYY HH:MM
        return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=UTC)
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def build_carbon(src: Path) -> None:
    out = OUT
    for path in sorted((src / "carbon" / "electricitymaps-2023").glob("*_2023_hourly.csv")):
        zone = path.name.removesuffix("_2023_hourly.csv")
        with path.open(newline="", encoding="utf-8") as f:
            rows = [(_parse_time(r["Datetime (UTC)"]), float(r[LCA])) for r in csv.DictReader(f)]
        rows.sort()
        lines = ["timestamp,g_per_kwh"] + [f"{t:%Y-%m-%dT%H:%MZ},{v:g}" for t, v in rows]
        # mtime=0 keeps the gzip bytes reproducible
        with gzip.GzipFile(out / f"em2023_{zone}.csv.gz", "wb", mtime=0) as g:
            g.write(("\n".join(lines) + "\n").encode())
        print(zone, len(rows), rows[0][0], rows[-1][0])
    for name in ("aws-region-zones.csv", "aws-region-factors-ccf.csv"):
        shutil.copyfile(src / "carbon" / name, out / name)


def build_ec2(src: Path) -> None:
    out = OUT
    with gzip.GzipFile(out / "aws-instances-teads.csv.gz", "wb", mtime=0) as g:
        g.write((src / "ec2" / "aws-instances-teads.csv").read_bytes())
    shutil.copyfile(src / "ec2" / "ccf-coefficients-aws-use.csv", out / "ccf-coefficients-aws-use.csv")
    feed = json.loads((src / "ec2" / "spot-advisor-data.json").read_text())
    compact = {
        "source": "AWS Spot Advisor feed (spot-bid-advisor.s3.amazonaws.com), Linux only, 2025-06 snapshot",
        "ranges": feed["ranges"],
        "instance_types": feed["instance_types"],
        "linux": {
            region: {t: [v["r"], v["s"]] for t, v in sorted(oses.get("Linux", {}).items())}
            for region, oses in sorted(feed["spot_advisor"].items())
        },
    }
    with gzip.GzipFile(out / "spot-advisor-linux.json.gz", "wb", mtime=0) as g:
        g.write(json.dumps(compact, separators=(",", ":"), sort_keys=True).encode())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench/make_data.py SOURCE_DIR  (the folder holding carbon/ and ec2/)")
    source = Path(sys.argv[1])
    build_carbon(source)
    build_ec2(source)
