"""A tiny run of the benchmark (bench/, ``make bench``): it must deliver every message, and report.

Correctness only: the numbers of so small a run say nothing, and no speed is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import ROOT, project_env

pytestmark = [pytest.mark.daphne, pytest.mark.redis]

ROWS = ["ceiling", "stock-inmemory", "inprocess", "redis-core", "redis"]


@pytest.fixture(scope="module")
def bench_run(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("bench-results")
    env = project_env()
    env.pop("DJANGO_SETTINGS_MODULE")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            ",".join(ROWS),
            "--db",
            "sqlite",
            "--redis-url",
            redis_url,
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, f"python -m bench failed:\n{result.stdout}\n{result.stderr}"
    runs = [path for path in output.iterdir() if path.is_dir()]
    assert len(runs) == 1, f"expected one results folder in {output}: {runs}"
    return {"stdout": result.stdout, "stderr": result.stderr, "folder": runs[0], "output": output}


def test_writes_json_plot_and_latest(bench_run: dict[str, Any]) -> None:
    folder: Path = bench_run["folder"]
    report = json.loads((folder / "results.json").read_text())
    assert (folder / "results.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((bench_run["output"] / "latest.json").read_text()) == report
    assert report["machine"]["nproc"] >= 1
    assert set(report["rows"]) | set(report["skipped"]) == set(ROWS)
    assert set(report["skipped"]) <= {"inprocess"}, report[
        "skipped"
    ]  # only wsgateway's own layers may be absent


def test_prints_the_table(bench_run: dict[str, Any]) -> None:
    stdout = bench_run["stdout"]
    assert "| row" in stdout and "fan-out msg/s" in stdout
    for row in ROWS:
        assert f"| {row} " in stdout
    assert "machine: " in stdout


def test_every_socket_gets_exactly_m_messages(bench_run: dict[str, Any]) -> None:
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    messages, users = report["args"]["messages"], report["args"]["users"]
    for name, row in report["rows"].items():
        assert "error" not in row, f"{name}: {row.get('error')}"
        assert row["fanout"], name
        for round_ in row["fanout"]:
            assert round_["sockets"] == users, name
            assert round_["received"] == users * messages, (name, round_)
            assert (round_["missing"], round_["duplicates"], round_["sockets_not_exactly_m"]) == (0, 0, 0), (
                name
            )
            assert round_["exactly_m"] and round_["trigger_status"] == 200, (name, round_)
        assert row["summary"]["fanout_exactly_m"] is True, name


def test_end_to_end_and_connections_complete(bench_run: dict[str, Any]) -> None:
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    for name, row in report["rows"].items():
        connections = row["connections"]
        assert connections["connected"] == connections["requested"] == report["args"]["connections"], name
        assert connections["kib_per_socket"] is not None, name
        if name == "ceiling":  # the ceiling has no notify() path of its own
            assert "e2e" not in row
            continue
        e2e = row["e2e"]
        assert (e2e["received"], e2e["missing"], e2e["duplicates"]) == (e2e["expected"], 0, 0), (name, e2e)
        assert e2e["producer"].get("error_count") == 0, (name, e2e["producer"])
