"""Bounded load against local hosting: zero errors below capacity, errors counted by status."""

from __future__ import annotations

import json

import pytest

from breedops.cli import main
from breedops.load.generator import LoadError, open_loop
from breedops.load.targets import endpoint_sender, require_loopback, sample_image

pytestmark = pytest.mark.emulator


def test_open_loop_below_capacity_has_zero_errors(load_deployment):
    send = endpoint_sender(load_deployment.endpoint_name, sample_image(64))
    send()  # the first request loads the model; capacity is about the warm endpoint
    report = open_loop(send, rps=15, duration_s=2).to_dict()
    assert report["completed"] == 30
    assert report["errors"] == 0 and report["throttled"] == 0
    assert report["latency_ms"]["p50"] > 0


def test_open_loop_unknown_endpoint_counts_errors_by_status(load_deployment):
    report = open_loop(endpoint_sender("no-such-endpoint", sample_image(32)),
                       rps=10, duration_s=0.5).to_dict()
    assert report["ok"] == 0
    assert report["errors_by_status"] == {"400": 5}


def test_load_command_prints_report(load_deployment, capsys):
    code = main(["load", "--rps", "5", "--duration", "1",
                 "--endpoint", load_deployment.endpoint_name])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["target"] == "endpoint" and report["ok"] == 5


def test_load_command_refuses_remote_endpoint(monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://192.0.2.10:5567")
    code = main(["load", "--rps", "1", "--duration", "1", "--endpoint", "x"])
    assert code == 2
    assert "not a loopback address" in capsys.readouterr().err


@pytest.mark.parametrize("url", [None, "https://runtime.sagemaker.us-east-1.amazonaws.com",
                                 "http://10.0.0.5:5567"])
def test_require_loopback_refuses_missing_or_remote(url):
    with pytest.raises(LoadError):
        require_loopback(url, "the URL")


@pytest.mark.parametrize("url", ["http://127.0.0.1:5567", "http://localhost:1", "http://[::1]:9"])
def test_require_loopback_accepts_loopback(url):
    require_loopback(url, "the URL")
