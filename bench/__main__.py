"""`python -m bench`: run the benchmark, print PASS/MISS per target, write bench/results/latest.{md,json}.

Never fails on a missed target (exit 0); exits 1 only if the benchmark itself could not run, 2 on
bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import baseline, floor, per_beat, report, scale, startup

SECTIONS = ("per_beat", "scale", "startup")
FULL_GROUPS = (1, 100, 1000, 3000)
QUICK_GROUPS = (1, 100)
MAX_GROUPS = 10_000  # the emulator's fixtures and the join wait grow with it; beyond is not a sidecar


def window_for(groups: int, quick: bool) -> float:
    """The issue asks for 60 s per size; below 1000 groups 30 s, so that the whole run stays under
    5 minutes on 2 cores (their figures are steady well within that). Quick: 5 s, one interval."""
    if quick:
        return scale.INTERVAL
    return 60.0 if groups >= 1000 else 30.0


def _groups(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of groups: {text!r}") from None
    if not 1 <= value <= MAX_GROUPS:
        raise argparse.ArgumentTypeError(f"groups must be 1 to {MAX_GROUPS}, not {value}")
    return value


def _window(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    intervals = value / scale.INTERVAL
    # A whole number of intervals: a group on time then beats the same number of times in it.
    if not (1 <= intervals <= 120 and intervals == int(intervals)):
        raise argparse.ArgumentTypeError(
            f"the window must be a whole number of {scale.INTERVAL:g} s intervals, "
            f"{scale.INTERVAL:g} to {120 * scale.INTERVAL:g} s, not {text}"
        )
    return value


def _beats(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of beats: {text!r}") from None
    if not 4 <= value <= 1_000_000:  # four rounds of at least one beat
        raise argparse.ArgumentTypeError(f"beats must be 4 to 1000000, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small samples: checks the bench, not the code")
    p.add_argument("--only", action="append", choices=SECTIONS, help="run only this part (repeatable)")
    p.add_argument("--beats", type=_beats, help="beats per client in part 1 (default 2000; quick 200)")
    p.add_argument(
        "--groups",
        type=_groups,
        action="append",
        help="part 2 at this many groups only (repeatable; default 1, 100, 1000, 3000; quick 1, 100)",
    )
    p.add_argument(
        "--window",
        type=_window,
        help="part 2's window in seconds for every size (default 60 s from 1000 "
        "groups, 30 s below; quick 5 s)",
    )
    p.add_argument(
        "--baseline",
        default=str(baseline.DEFAULT),
        help="the earlier run shown as 'before' (default: the figures before issue 10); 'none' for none",
    )
    p.add_argument(
        "--compare",
        type=Path,
        metavar="RESULTS_JSON",
        help="run nothing: print the report of an earlier run's JSON against the baseline on stdout",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument(
        "--name",
        help="file stem of the results (default 'latest' for a full run, 'partial' for --quick, --only or "
        "--groups runs, so a quick check never overwrites the quoted figures)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        base = baseline.load(None if args.baseline.lower() == "none" else Path(args.baseline))
        if base is not None:  # a baseline the report cannot read fails now, not after a 4-minute run
            report.markdown(base, base)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        _say(
            f"bench: cannot read the baseline {args.baseline}: {type(exc).__name__}: {exc} "
            "(pass --baseline none to run without one)"
        )
        return 2
    if args.compare is not None:
        return _compare(args.compare, base)
    sections = args.only or list(SECTIONS)
    if (args.groups or args.window) and "scale" not in sections:
        _say("bench: --groups and --window size part 2 (scale), which this run does not include")
        return 2
    partial = bool(args.quick or args.only or args.groups)
    stem = args.name or ("partial" if partial else "latest")
    beats = args.beats or (200 if args.quick else 2000)
    groups = args.groups or (QUICK_GROUPS if args.quick else FULL_GROUPS)
    sizes = [(g, args.window or window_for(g, args.quick)) for g in dict.fromkeys(groups)]
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": report.machine(), "quick": args.quick, "partial": partial}
    workroot = Path(tempfile.mkdtemp(prefix="shardbeat-bench-"))
    try:
        if "per_beat" in sections:
            _say(f"1/3 per heartbeat: {beats} beats x 8 clients ...")
            results["per_beat"] = per_beat.run(
                beats, rounds=4, warmup=min(100, beats), stage_n=2000 if args.quick else 10000
            )
        if "scale" in sections:
            if "per_beat" not in sections:  # issue 10 judges part 2 against a floor of this run
                floor_beats = 200 if args.quick else 1000
                _say(f"2/3 floor: {floor_beats} beats of the SLS http.client floor ...")
                results["floor"] = floor.run(floor_beats)
            _say(f"2/3 scale: {', '.join(f'{g} groups for {w:.0f} s' for g, w in sizes)} ...")
            results["scale"] = scale.run(sizes, workroot)
            _say(scale.summary(results["scale"]))
        if "startup" in sections:
            _say("3/3 start-up ...")
            results["startup"] = startup.run(3 if args.quick else 7, 2.0 if args.quick else 5.0, workroot)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    results["took_s"] = time.perf_counter() - started
    md, js = report.write(results, args.out, base, stem)
    _say(report.console(results, base))
    _say(f"wrote {md} and {js} in {results['took_s']:.0f} s")
    return 0


def _compare(path: Path, base: dict[str, Any] | None) -> int:
    try:
        results = json.loads(path.read_text())
        if not isinstance(results, dict) or "machine" not in results:
            raise ValueError("not a benchmark results file (no 'machine')")
        text = report.markdown(results, base)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        _say(f"bench: cannot compare {path}: {type(exc).__name__}: {exc}")
        return 2
    _say(report.console(results, base))
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader had enough; not an error of the comparison
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
