"""Fleet-template catalog: Teads watts, CCF fallback, spot data, power and interruption probability."""

from __future__ import annotations

import pytest

from scheduling.catalog import (
    fleet_power_kw,
    get_fleet_template,
    list_fleet_templates,
    spot_interruption_probability,
)


def test_teads_instance():
    t = get_fleet_template("m5.4xlarge")
    assert t is not None and t.vcpu == 16 and t.memory_gib == 64
    assert t.watts_50 == pytest.approx(113.0) and t.power_source == "teads"  # "113,0" decimal comma
    assert t.spot_bins["us-east-1"] in range(5) and 0 < t.spot_savings_pct["us-east-1"] < 100
    d = t.to_dict()
    assert d["id"] == "m5.4xlarge" and d["power_kw_with_pue"] == pytest.approx(0.113 * 1.135)


def test_ccf_fallback_for_types_without_measurements():
    t = get_fleet_template("c6i.large")
    assert t is not None and t.power_source == "ccf:Ice Lake"
    lo, hi = 0.766796875, 3.7582031249999996  # CCF Ice Lake W/vCPU
    assert t.watts_50 == pytest.approx(2 * (lo + 0.5 * (hi - lo)) + 4 * 0.392, abs=1e-3)
    g = get_fleet_template("c7g.xlarge")
    assert g is not None and g.power_source == "ccf:Graviton3"


def test_list_sorted_and_lookup():
    ts = list_fleet_templates()
    ids = [t.id for t in ts]
    assert ids == sorted(ids) and len(ids) > 900
    assert all(t.watts_50 > 0 for t in ts)
    assert get_fleet_template("no.such") is None
    assert get_fleet_template(" M5.4XLARGE ") is not None


def test_fleet_power_kw():
    t = get_fleet_template("m5.4xlarge")
    assert fleet_power_kw(t) == pytest.approx(0.113 * 1.135)
    assert fleet_power_kw(t, count=4, pue=1.0) == pytest.approx(0.452)
    with pytest.raises(ValueError):
        fleet_power_kw(t, count=-1)


def test_spot_interruption_probability_mapping():
    t = get_fleet_template("m5.4xlarge")
    region = next(iter(t.spot_bins))
    f = {0: 0.025, 1: 0.075, 2: 0.125, 3: 0.175, 4: 0.25}[t.spot_bins[region]]
    month = 30 * 86400
    assert spot_interruption_probability(t, region, month) == pytest.approx(f)
    assert spot_interruption_probability(t, region, 0) == 0.0
    one_hour = spot_interruption_probability(t, region, 3600)
    assert 0 < one_hour < f and one_hour == pytest.approx(1 - (1 - f) ** (3600 / month))
    assert spot_interruption_probability(t, "mars-1", 3600) == 1.0  # not offered


def test_offered_in_reads_the_spot_advisor_regions():
    from scheduling.catalog import offered_in

    a1 = get_fleet_template("a1.2xlarge")
    m5 = get_fleet_template("m5.large")
    assert a1 is not None and m5 is not None
    assert offered_in(m5, "eu-west-3") is True
    assert offered_in(a1, "eu-central-1") is True
    assert offered_in(a1, "eu-west-3") is False  # the first Graviton never came to Paris
    assert offered_in(m5, "xx-nowhere-1") is None  # not in the data: unknown, not "not offered"
