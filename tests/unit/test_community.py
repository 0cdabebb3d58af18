"""The clearing engine's input: validated community model, community.yaml, synthetic communities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from peerwatt.errors import InputError
from settlement.community import (
    Battery,
    Community,
    MemberForecast,
    ShiftableLoad,
    load_community,
    synthetic_community,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "community.yaml"

EXPLICIT = """
slot_seconds: 3600
fee_per_kwh: 5_000
tariffs:
  import_per_kwh: [200_000, 300_000, 400_000, 250_000]
  export_per_kwh: 50_000
members:
  - name: alice
    load_wh: [100, 200, 300, 400, 999]
    pv_wh: [0, 1_500, 800, 0, 0]
    battery: {capacity_wh: 5_000, max_charge_w: 2_500, max_discharge_w: 2_500, soc_initial_wh: 1_000}
  - name: bob
    load_wh: [500, 500, 500, 500]
    shiftable:
      - {energy_wh: 2_000, earliest_slot: 1, latest_slot: 3, max_power_w: 1_000}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "community.yaml"
    path.write_text(text)
    return path


def test_the_example_community_loads_with_simulated_profiles_and_time_of_use() -> None:
    community = load_community(EXAMPLE, horizon=96)
    assert community.n_members == 8 and community.n_slots == 96 and community.slot_seconds == 900
    assert sum(m.battery is not None for m in community.members) == 2
    assert sum(len(m.shiftable) for m in community.members) == 1
    # 00:00-07:00 night rate, 16:00-20:00 peak, default otherwise (local time, slot 0 at midnight)
    assert community.import_price[[0, 27, 28, 63, 64, 79, 80]].tolist() == [
        180_000,
        180_000,
        250_000,
        250_000,
        350_000,
        350_000,
        250_000,
    ]
    assert (community.export_price == 60_000).all() and community.fee_per_kwh == 5_000
    names = community.names
    assert community.pv_wh[names.index("bob")].sum() == 0
    assert community.pv_wh[names.index("school")][48] > 5_000  # 40 kWp at midsummer noon
    assert 5_000 < community.load_wh[names.index("alice")].sum() < 15_000  # ~9.6 kWh a day


def test_explicit_forecasts_and_per_slot_tariffs(tmp_path: Path) -> None:
    community = load_community(write(tmp_path, EXPLICIT), horizon=4)
    assert community.import_price.tolist() == [200_000, 300_000, 400_000, 250_000]
    alice, bob = community.members
    assert alice.load_wh.tolist() == [100, 200, 300, 400]  # the first horizon values
    assert bob.pv_wh.tolist() == [0, 0, 0, 0]
    assert alice.battery == Battery(5_000, 2_500, 2_500, soc_initial_wh=1_000)
    assert bob.shiftable == (ShiftableLoad(2_000, 1, 3, 1_000),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("members: [", "not valid YAML at line"),
        (EXPLICIT.replace("fee_per_kwh: 5_000", "fee_per_kwh: -1"), "fee_per_kwh: must be >= 0, got -1"),
        (EXPLICIT.replace("fee_per_kwh: 5_000", "fee_per_kwh: 0.005"), "fee_per_kwh: expected an integer"),
        (
            EXPLICIT.replace("export_per_kwh: 50_000", "export_per_kwh: 300_000"),
            "slot 0: export 300000 >= import 200000",
        ),
        (EXPLICIT.replace("pv_wh: [0, 1_500", "pv_kw: [0, 1_500"), "members[0]: unknown key 'pv_kw'"),
        (EXPLICIT.replace("load_wh: [500, 500, 500, 500]", "load_wh: [500, 500]"), "2 values for a horizon of 4 slots"),
        (EXPLICIT.replace("latest_slot: 3", "latest_slot: 4"), "window ends at slot 4, beyond the horizon of 4 slots"),
        (
            EXPLICIT.replace("energy_wh: 2_000", "energy_wh: 9_000"),
            "9000.0 Wh cannot be delivered at 1000.0 W in 3 slots",
        ),
        (EXPLICIT.replace("soc_initial_wh: 1_000", "soc_initial_wh: 9_000"), "battery needs 0 <= soc_min_wh"),
        (EXPLICIT.replace("  - name: bob\n", "  - name: alice\n"), "member names must be unique, repeated: alice"),
        (EXPLICIT.replace("    load_wh: [500, 500, 500, 500]\n", "    profile: h0\n"), "needs profile and annual_kwh"),
    ],
)
def test_bad_files_give_one_line_input_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load_community(path, horizon=4)
    assert message in str(raised.value)
    assert str(raised.value).startswith(str(path)) and "\n" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_time_of_use_and_simulated_profiles_need_a_start_date(tmp_path: Path) -> None:
    text = EXPLICIT.replace("export_per_kwh: 50_000", "export_per_kwh: {default: 50_000, periods: []}")
    with pytest.raises(InputError, match="needs 'start'"):
        load_community(write(tmp_path, text), horizon=4)


def test_models_are_validated_and_read_only() -> None:
    with pytest.raises(InputError, match="must be >= 0, slot 1 is -5.0"):
        MemberForecast("a", np.array([1.0, -5.0]), np.zeros(2))
    member = MemberForecast("a", np.array([1.0, 2.0]), np.zeros(2))
    with pytest.raises(ValueError):
        member.load_wh[0] = 3.0
    with pytest.raises(InputError, match="prices must be integers"):
        Community((member,), np.array([250_000.5, 250_000]), np.full(2, 60_000), 0)
    battery = Battery(10_000, 5_000, 5_000)
    assert (battery.soc_max_wh, battery.soc_initial_wh) == (10_000, 5_000)


def test_synthetic_communities_are_deterministic_and_mixed() -> None:
    community = synthetic_community(200, seed=1)
    again = synthetic_community(200, seed=1)
    assert np.array_equal(community.load_wh, again.load_wh) and np.array_equal(community.pv_wh, again.pv_wh)
    assert sum(m.battery is not None for m in community.members) == 60  # 30%
    assert any(m.name.startswith("business") for m in community.members)
    net = community.pv_wh - community.load_wh
    assert (net.sum(axis=0)[:24] < 0).all()  # nights import
    assert (net > 0).any(axis=0)[48]  # someone exports at noon


def test_a_member_with_pv_only_and_an_unknown_time_zone(tmp_path: Path) -> None:
    text = EXPLICIT.replace("slot_seconds: 3600", "slot_seconds: 3600\nstart: 2026-06-21")
    text = text.replace("    load_wh: [500, 500, 500, 500]\n", "    profile: g0\n    annual_kwh: 0\n    pv_kwp: 10\n")
    community = load_community(write(tmp_path, text), horizon=4)
    assert community.members[1].load_wh.tolist() == [0, 0, 0, 0]  # night: no PV either
    with pytest.raises(InputError, match="site.timezone: unknown time zone 'Mars/Olympus'"):
        load_community(write(tmp_path, text + "site: {timezone: Mars/Olympus}\n"), horizon=4)
