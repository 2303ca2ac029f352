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

# The benchmark's optional pieces, all in the dev group and the daphne and redis extras: without one
# of them `python -m bench` fails at its end (the plot) or skips a row this test requires, so the whole
# module skips and says which is missing. With them present, nothing here is weakened.
pytest.importorskip("matplotlib", reason="no matplotlib (dev group): the benchmark draws results.png")
pytest.importorskip("daphne", reason="no daphne (daphne extra): the benchmark serves its rows with it")
pytest.importorskip("channels_redis", reason="no channels-redis (redis extra): the benchmark's Redis rows")

LAYER_ROWS = [
    "ceiling",
    "stock-inmemory",
    "inprocess",
    "inprocess-nolimits",
    "inprocess-nometrics",
    "redis-core",
    "redis",
]
#: The rows that run the connections and fan-out phases only.
CONNECTS_AND_FANOUT = ("ceiling", "inprocess-nolimits", "inprocess-nometrics")
#: The server rows (bench/servers.py) besides daphne's, whose phases are the inprocess row's: their
#: phases, and granian's attacks (each server's attacks are the same client; two keep the run short).
SERVER_ROWS = ["uvicorn", "uvicorn-websockets", "uvicorn-wsproto", "hypercorn", "granian"]
SERVER_ATTACK_ROWS = ["granian:flood", "granian:slow-reader"]
ATTACK_ROWS = ["flood", "slow-reader", *SERVER_ATTACK_ROWS]
RUNS = {
    "layers": [*LAYER_ROWS, "flood", "slow-reader"],
    "servers": [*SERVER_ROWS, *SERVER_ATTACK_ROWS],
}
#: wsgateway's own layers, which may be absent (the attack and server rows run on its in-process
#: layer), and the servers, which may not be installed.
OPTIONAL = {"inprocess", "inprocess-nolimits", "inprocess-nometrics", *ATTACK_ROWS, *SERVER_ROWS}


@pytest.fixture(scope="module", params=list(RUNS))
def bench_run(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    rows = RUNS[request.param]
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
            ",".join(rows),
            "--no-server-attacks",
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
        timeout=150,
    )
    assert result.returncode == 0, f"python -m bench failed:\n{result.stdout}\n{result.stderr}"
    runs = [path for path in output.iterdir() if path.is_dir()]
    assert len(runs) == 1, f"expected one results folder in {output}: {runs}"
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "folder": runs[0],
        "output": output,
        "rows": rows,
    }


def test_writes_json_plot_and_latest(bench_run: dict[str, Any]) -> None:
    folder: Path = bench_run["folder"]
    report = json.loads((folder / "results.json").read_text())
    assert (folder / "results.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((bench_run["output"] / "latest.json").read_text()) == report
    assert report["machine"]["nproc"] >= 1
    assert set(report["rows"]) | set(report["skipped"]) == set(bench_run["rows"])
    assert set(report["skipped"]) <= OPTIONAL, report["skipped"]  # only wsgateway's own layers may be absent


def test_prints_the_table(bench_run: dict[str, Any]) -> None:
    stdout = bench_run["stdout"]
    assert "| row" in stdout and "fan-out msg/s" in stdout
    for row in bench_run["rows"]:
        assert f"| {row} " in stdout
    assert "machine: " in stdout


def test_the_servers_are_side_by_side(bench_run: dict[str, Any]) -> None:
    """The server rows' columns, one line a server, in the Which server table; each server row names its
    server in the main table."""
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    served = [name for name in SERVER_ROWS if name in report["rows"]]
    if not served:
        assert "Which server" not in bench_run["stdout"]
        return
    table = bench_run["stdout"].split("Which server", 1)[1]
    for name in served:
        assert report["rows"][name]["server"] == name
        assert f"| 1 {name}, sqlite " in bench_run["stdout"]
        line = next(line for line in table.splitlines() if line.startswith(f"| {name} "))
        assert " - " not in line.split("|")[7], line  # KiB/socket measured
    if "granian:flood" in report["rows"]:
        assert report["rows"]["granian:flood"]["server"] == "granian"


def test_every_socket_gets_exactly_m_messages(bench_run: dict[str, Any]) -> None:
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    messages, users = report["args"]["messages"], report["args"]["users"]
    for name, row in report["rows"].items():
        assert "error" not in row, f"{name}: {row.get('error')}"
        if name in ATTACK_ROWS:
            continue
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
        if name in ATTACK_ROWS:
            continue
        connections = row["connections"]
        assert connections["connected"] == connections["requested"] == report["args"]["connections"], name
        assert connections["kib_per_socket"] is not None, name
        if name in CONNECTS_AND_FANOUT:
            assert "e2e" not in row
            continue
        e2e = row["e2e"]
        assert (e2e["received"], e2e["missing"], e2e["duplicates"]) == (e2e["expected"], 0, 0), (name, e2e)
        assert e2e["producer"].get("error_count") == 0, (name, e2e["producer"])


def test_a_broadcast_reaches_every_socket_once_on_every_layer_row(bench_run: dict[str, Any]) -> None:
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    users, repeat = report["args"]["users"], report["args"]["repeat"]
    for name, row in report["rows"].items():
        if name in ATTACK_ROWS or name in CONNECTS_AND_FANOUT:  # no broadcast phase
            assert "broadcast" not in row, name
            continue
        assert len(row["broadcast"]) == repeat, name
        for round_ in row["broadcast"]:
            everyone, one_user = round_["broadcast"], round_["one_user"]
            assert (everyone["expected"], everyone["received"], everyone["duplicates"]) == (
                users,
                users,
                0,
            ), name
            assert (one_user["expected"], one_user["received"], one_user["duplicates"]) == (1, 1, 0), name
            assert everyone["trigger_status"] == one_user["trigger_status"] == 200, (name, round_)
        assert row["summary"]["broadcast_complete"] is True, name
    assert "Broadcast: one abroadcast()" in bench_run["stdout"]


def test_limits_off_row_is_compared(bench_run: dict[str, Any]) -> None:
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    if "inprocess-nolimits" not in bench_run["rows"] or "inprocess" in report["skipped"]:
        pytest.skip("not in this run, or wsgateway's in-process layer is not available")
    assert set(report["ratios"]["inprocess"]["inprocess-nolimits"]) >= {"fanout_rate", "connect_rate"}


def test_metrics_off_row_is_compared(bench_run: dict[str, Any]) -> None:
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    if "inprocess-nometrics" not in bench_run["rows"] or "inprocess" in report["skipped"]:
        pytest.skip("not in this run, or wsgateway's in-process layer is not available")
    assert set(report["ratios"]["inprocess"]["inprocess-nometrics"]) >= {"fanout_rate", "connect_rate"}
    assert report["rows"]["inprocess-nometrics"]["summary"]["fanout_exactly_m"] is True


def test_attack_rows_report(bench_run: dict[str, Any]) -> None:
    report = json.loads((bench_run["folder"] / "results.json").read_text())
    attacks = [name for name in ATTACK_ROWS if name in bench_run["rows"]]
    assert attacks, "every run has attack rows"
    for name in attacks:
        if name in report["skipped"]:
            continue
        row = report["rows"][name]
        assert "error" not in row, f"{name}: {row.get('error')}"
        for window in ("baseline", "during"):  # the other user got every push, alone and under attack
            assert (row[window]["received"], row[window]["duplicates"]) == (row[window]["expected"], 0), name
            assert row[window]["from_send"]["p99_ms"] is not None, name
        assert row["rss_kib"]["before"] > 0 and row["rss_kib"]["peak"] >= row["rss_kib"]["after"] > 0, name
    for name in [name for name in attacks if name.endswith("flood") and name in report["rows"]]:
        flood = report["rows"][name]
        assert flood["frames_accepted"] > 0 and flood["connections"] >= 1, name
        assert flood["processed"] + flood["rate_limited"] > 0, (name, flood)
        assert sum(flood["close_codes"].values()) == flood["connections"], name
    for name in [name for name in attacks if name.endswith("slow-reader") and name in report["rows"]]:
        slow = report["rows"][name]
        assert slow["pushed"] == report["args"]["pushes"], (name, slow)
        # Everything pushed reached the socket once it read, or the server closed it (an outbound bound).
        assert slow["received_at_end"] >= slow["pushed"] or slow["close_code"] is not None, (name, slow)
