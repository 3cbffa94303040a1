"""The benchmarks, small: each workload runs end to end and reports its figures, so they never
rot. No thresholds here: ratios are read from ``bench/README.md`` runs, not asserted in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import need

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> dict:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("workload", ["printer", "app", "mx"])
def test_each_load_workload_reports_a_ratio_against_aiosmtpd(workload):
    report = bench("bench/load.py", "--workload", workload, "--messages", "60", "--clients", "5", "--rounds", "1")
    assert report["workload"] == workload and report["messages"] == 60
    assert report["ratio"] > 0 and report["baseline_msg_per_s"] > 0 and report["edge_rss_mib"] > 0


def test_the_memory_workload_samples_the_edges_resident_size():
    report = bench("bench/load.py", "--workload", "memory", "--messages", "200", "--clients", "5")
    assert len(report["edge_rss_mib_every_tenth"]) == 10


def test_the_hold_workload_holds_every_connection_then_each_sends():
    report = bench("bench/load.py", "--workload", "hold", "--connections", "120")
    assert (report["held"], report["open_errors"], report["send_errors"]) == (120, 0, 0), report["errors"]


def test_the_in_process_benchmarks_run():
    assert bench("bench/bench_edge.py", "--messages", "30")["edge_over_stock_aiosmtpd"] > 0
    stall = bench("bench/bench_stall.py", "--rounds", "20", "--lines", "2")
    assert stall["hostile_lines"] > 0 and stall["ratio_p99"] > 0


def test_the_capture_benchmark_judges_and_compares_memory():
    report = bench("bench/bench_capture.py", "--packets", "3000")
    assert report["devices"] > 150 and report["packets_4x"] >= 4 * 3000  # a session is 16 packets
    assert report["judge_over_read"] > 0 and report["rss_ratio_4x"] > 0


def test_the_burst_serves_every_device_and_stores_every_message():
    report = bench("bench/load.py", "--workload", "burst", "--connections", "40", "--within", "1")
    assert report["edge"]["served"] == 40 and report["baseline"]["served"] == 40 and report["stored"] == 40
    assert report["edge"]["live_reads"] >= 1 and report["edge"]["p99_s"] > 0


def test_the_idle_workload_reports_the_edges_resident_size():
    report = bench("bench/load.py", "--workload", "idle")
    assert 0 < report["edge_rss_mib_idle"] <= report["edge_rss_mib_after_one_each"] + 5


def test_the_instruction_benchmark_counts_each_servers_messages():
    need("valgrind", "valgrind")
    report = bench("bench/instructions.py", "--workload", "mx", "--messages", "20", "--clients", "4", "--warm-up", "8")
    # a message is about 1.5 million instructions for either server: a count that stayed off (or
    # counted only the switching on) would be far below, one that took the start-up far above
    assert 300_000 < report["baseline_ir_per_msg"] < 20_000_000
    assert 300_000 < report["edge_ir_per_msg"] < 20_000_000
