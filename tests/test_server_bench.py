"""`localpref bench --server`, smoke-sized: both servers start, answer streamed requests from
concurrent clients, and the report holds every figure (no timing is asserted)."""

from __future__ import annotations

import json

from localpref.cli import main
from localpref.server.bench import ServerBenchSettings, format_server_report, run_server_bench


def test_server_bench_measures_both_servers_with_concurrent_clients() -> None:
    settings = ServerBenchSettings(max_tokens=2, rounds=1, clients=(1, 2), n_ctx=512)
    report = run_server_bench(settings, progress=lambda message: None)
    assert report["model"] == "smollm2-135m-instruct" and report["max_tokens"] == 2
    assert set(report["servers"]) == {"localpref base", "localpref amulet",
                                      "llama-cpp-python base"}
    for rows in report["servers"].values():
        assert set(rows) == {"1", "2"}
        for clients, row in rows.items():
            assert row["requests"] == int(clients)  # every stream sent text
            assert 1 <= row["tokens"] <= 2 * int(clients)
            assert row["tokens_per_s"] > 0 and row["ttft_p95_ms"] >= row["ttft_p50_ms"] > 0
    assert set(report["base_ratio_to_llama_cpp_python"]) == {"1", "2"}
    table = format_server_report(report)
    assert "llama-cpp-python base" in table and "localpref base / llama-cpp-python base" in table
    json.dumps(report)


def test_bench_server_flag_checks_its_settings(capsys) -> None:
    assert main(["bench", "--server", "--max-tokens", "0", "--quiet"]) == 2
    assert "--max-tokens and --repeat must be 1 or more." in capsys.readouterr().err
