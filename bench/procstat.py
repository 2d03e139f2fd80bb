"""CPU time and memory of another process, read from /proc (Linux), so a measured process runs untouched."""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu: float  # user + system seconds so far, all threads, exited ones included (clock-tick resolution)
    threads_cpu: float | None  # on-CPU seconds of the live threads, to the nanosecond (schedstat)
    tids: frozenset[int]  # the live threads
    rss_mb: float  # resident set now
    hwm_mb: float  # peak resident set so far
    threads: int


def sample(pid: int) -> ProcSample:
    """Raises OSError once the process is gone."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = f.read().rpartition(")")[2].split()
    utime, stime, threads = int(fields[11]), int(fields[12]), int(fields[17])
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    tids: set[int] = set()
    runtime_ns: int | None = 0
    for name in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{name}/schedstat", encoding="ascii") as f:
                runtime_ns = None if runtime_ns is None else runtime_ns + int(f.read().split()[0])
        except FileNotFoundError:  # the thread just exited; its time stays in `cpu`
            continue
        except OSError:  # no schedstat on this kernel
            runtime_ns = None
        tids.add(int(name))
    threads_cpu = None if runtime_ns is None else runtime_ns / 1e9
    return ProcSample((utime + stime) / _TICKS, threads_cpu, frozenset(tids), rss, hwm, threads)


def cpu_between(first: ProcSample, last: ProcSample) -> float:
    """CPU seconds spent between two samples: nanosecond figures when the same threads lived through
    both, else clock ticks (which also count threads that exited in between)."""
    if first.threads_cpu is not None and last.threads_cpu is not None and first.tids == last.tids:
        return last.threads_cpu - first.threads_cpu
    return last.cpu - first.cpu
