"""The http.client floor (SLS) measured on its own, for runs without the per-beat part.

Issue 10 judges the whole process's CPU per beat against the floor measured in the same run, on the
same machine under the same load; a run of the scale part alone (`--only scale`) measures this short
floor first instead of borrowing one from another run.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bench import clients, per_beat
from bench.emulator import EmulatorProcess, per_beat_fixtures


def run(beats: int) -> dict[str, Any]:
    with EmulatorProcess(per_beat_fixtures(clients.group_names())) as emulator:
        client = clients.floor_sls(emulator.url)
        try:
            (figures,) = per_beat.measure([client], beats, rounds=4, warmup=min(100, beats))
        finally:
            client.close()
    return asdict(figures)


def sls_floor(results: dict[str, Any]) -> tuple[float, str] | None:
    """(CPU us per beat of the SLS floor of this run, where it comes from), or None if not measured."""
    for client in (results.get("per_beat") or {}).get("clients", []):
        if client["provider"] == "sls" and client["kind"] == "floor":
            return float(client["cpu_us"]), "part 1"
    short = results.get("floor")
    if short:
        return float(short["cpu_us"]), f"a short floor run ({short['beats']} beats)"
    return None
