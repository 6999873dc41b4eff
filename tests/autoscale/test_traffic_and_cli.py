"""Traffic CSVs (the shipped ones and bad ones) and the `autoscale` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breedops.autoscale.traffic import TrafficError, read_traffic, write_example_curves
from breedops.cli import main

SHIPPED = Path(__file__).resolve().parents[2] / "benchmarks" / "traffic"


@pytest.mark.parametrize("name", ["steady", "daily_cycle", "spike"])
def test_read_traffic_shipped_curves_are_valid(name):
    demand = read_traffic(SHIPPED / f"{name}.csv")
    assert len(demand) >= 60 and min(demand) >= 0 and max(demand) > 0


def test_write_example_curves_matches_shipped(tmp_path):
    for path in write_example_curves(tmp_path):
        assert path.read_text() == (SHIPPED / path.name).read_text()


@pytest.mark.parametrize(("text", "message"), [
    ("", "first line must be"),
    ("time,rps\n0,1\n", "first line must be"),
    ("minute,requests_per_minute\n", "no data rows"),
    ("minute,requests_per_minute\n0,10\n2,10\n", r":3: expected minute 1, found 2"),
    ("minute,requests_per_minute\n0,ten\n", r":2: not a number"),
    ("minute,requests_per_minute\n0,-5\n", r":2: requests_per_minute must be"),
    ("minute,requests_per_minute\n0,5,7\n", r":2: expected 2 columns"),
])
def test_read_traffic_bad_csv_raises_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TrafficError, match=message):
        read_traffic(path)


def test_read_traffic_missing_file_raises(tmp_path):
    with pytest.raises(TrafficError, match="no such file"):
        read_traffic(tmp_path / "nope.csv")


def test_simulate_command_writes_plot_and_json(tmp_path, capsys):
    plot = tmp_path / "spike.png"
    code = main(["autoscale", "simulate", "--traffic", str(SHIPPED / "spike.csv"),
                 "--capacity-rps", "20", "--target", "600", "--plot", str(plot), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["policy"]["target"] == 600
    assert result["summary"]["scale_outs"] >= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_command_without_capacity_reports_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BREEDOPS_ROOT", str(tmp_path))  # no benchmarks/results there
    code = main(["autoscale", "simulate", "--traffic", str(SHIPPED / "steady.csv")])
    assert code == 2
    assert "--capacity-rps" in capsys.readouterr().err


def test_simulate_command_bad_csv_reports_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("minute,requests_per_minute\n0,x\n")
    code = main(["autoscale", "simulate", "--traffic", str(bad), "--capacity-rps", "10"])
    assert code == 2
    assert "bad.csv:2: not a number" in capsys.readouterr().err


def test_sweep_command_prints_a_row_per_combination(tmp_path, capsys):
    output = tmp_path / "sweep.json"
    code = main(["autoscale", "sweep", "--traffic", str(SHIPPED / "spike.csv"),
                 "--capacity-rps", "20", "--targets", "300,600", "--cooldowns", "60",
                 "--output", str(output)])
    assert code == 0
    assert len(json.loads(output.read_text())) == 2
    assert "spike" in capsys.readouterr().out


def test_sweep_command_rejects_bad_numbers(capsys):
    code = main(["autoscale", "sweep", "--traffic", str(SHIPPED / "spike.csv"),
                 "--capacity-rps", "20", "--targets", "a,b"])
    assert code == 2
    assert "--targets must be comma-separated" in capsys.readouterr().err
