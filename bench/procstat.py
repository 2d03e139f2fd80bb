"""CPU time and memory of another process, read from outside (Linux), so a measured process runs untouched.

CPU comes from the process's CPU-time clock (clock_gettime on the clock id the kernel derives from a
pid, as clock_getcpuclockid(3) does): the sum over all its threads, those that already exited
included, to the nanosecond. So the figure is fair whatever the thread structure: 32 long-lived
workers, or one event-loop thread with helpers that come and go. Where that clock cannot be read,
utime + stime from /proc/PID/stat (10 ms ticks, exited threads also included) stand in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_CPUCLOCK_SCHED = 2  # the kernel's process CPU clock that counts scheduler runtime (ns)


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu: float  # user + system seconds so far, all threads, exited ones included (clock-tick resolution)
    cpu_ns: int | None  # the same from the process CPU clock, to the nanosecond (None: not readable)
    rss_mb: float  # resident set now
    hwm_mb: float  # peak resident set so far
    threads: int  # live threads now


def process_cpu_clock(pid: int) -> int:
    """The clock id of a process's CPU time: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) of the kernel
    (what glibc's clock_getcpuclockid computes; Python exposes only the per-thread variant)."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


def _cpu_ns(pid: int) -> int | None:
    try:
        return time.clock_gettime_ns(process_cpu_clock(pid))
    except (OSError, OverflowError, AttributeError):  # gone, not Linux, or no such clock
        return None


def sample(pid: int) -> ProcSample:
    """Raises OSError once the process is gone."""
    cpu_ns = _cpu_ns(pid)
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
    return ProcSample((utime + stime) / _TICKS, cpu_ns, rss, hwm, threads)


def cpu_between(first: ProcSample, last: ProcSample) -> tuple[float, str]:
    """(CPU seconds the whole process spent between two samples, how it was measured)."""
    if first.cpu_ns is not None and last.cpu_ns is not None:
        return (last.cpu_ns - first.cpu_ns) / 1e9, "process CPU clock (ns, all threads)"
    return last.cpu - first.cpu, "utime + stime (10 ms ticks, all threads)"
