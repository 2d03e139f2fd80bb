"""The operator's verbs: `status` (what a running instance holds) and `stop` (a clean stop), both over
the instance's control socket, named directly or by its config file. Parses flags and hands over."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from shardbeat.config import ConfigError, load_config

USAGE_ERROR = 2
MIN_WATCH = 0.1  # seconds between `status --watch` refreshes, as the heartbeat interval's floor


def add_operator_verbs(verbs: argparse._SubParsersAction[Any], socket_path: Callable[[str], str]) -> None:
    """Add `status` and `stop` to the subparsers `verbs`; `socket_path` normalises a --socket value."""
    _socket_path = socket_path
    status = verbs.add_parser(
        "status",
        help="ask a running instance what it holds (over its control socket)",
        description="Ask a running shardbeat over its control socket and print one row per group: "
        "provider, group, consumer, shards held, releasing, lease left, last heartbeat latency, errors "
        "and the last error. Writes nothing to the instance's record stream.",
    )
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", metavar="PATH", type=_socket_path, help="the control socket")
    where.add_argument("--config", metavar="FILE", help="the instance's config file (its control.socket)")
    status.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_watch_seconds,
        metavar="SECONDS",
        help=f"refresh every SECONDS (default 2, at least {MIN_WATCH:g}) until Ctrl-C",
    )
    status.add_argument("--json", action="store_true", help="print the reply as JSON, for scripts")
    status.add_argument(
        "--timeout", type=_positive_seconds, default=5.0, metavar="SECONDS", help="give up after (default 5)"
    )
    status.set_defaults(handler=_status, parser=status)

    stop = verbs.add_parser(
        "stop",
        help="stop a running instance cleanly (over its control socket)",
        description='Send {"op": "stop"} to a running shardbeat and wait until it has exited: it '
        "writes `lost` and `stopped` records first, so downstream hears of it (use it before stopping the "
        "host, e.g. as a Kubernetes preStop hook).",
    )
    where = stop.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", metavar="PATH", type=_socket_path, help="the control socket")
    where.add_argument("--config", metavar="FILE", help="the instance's config file (its control.socket)")
    stop.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up after (default 10)",
    )
    stop.set_defaults(handler=_stop, parser=stop)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError("give a number of seconds above 0 and below 86400")
    return value


def _watch_seconds(text: str) -> float:
    value = _positive_seconds(text)
    if value < MIN_WATCH:  # 1e-9 polled the socket in a busy loop, megabytes a second on stdout
        raise argparse.ArgumentTypeError(f"give at least {MIN_WATCH:g} seconds")
    return value


def _socket_of(args: argparse.Namespace) -> str | int:
    """--socket, or the control.socket of --config; an int is the exit status of a problem."""
    path: str = args.socket
    if args.config:
        try:  # only control.socket is needed: never require the secrets to ask for status
            loaded = load_config(args.config, check_credentials=False)
        except ConfigError as exc:
            from shardbeat.config.problem_summary import summary_lines

            for line in summary_lines(exc.problems, "config: "):
                print(line, file=sys.stderr)
            return USAGE_ERROR
        unset = [w for w in loaded.warnings if w.path == "control.socket"]
        if unset:  # e.g. ${SHARDBEAT_CONSUMER}.sock with the variable not set here
            return _usage(args.parser, f"{args.config}: {unset[0]}")
        configured = loaded.config.control.socket
        if configured is None:
            return _usage(
                args.parser,
                f"{args.config} sets no control.socket: add one (and restart shardbeat), "
                "or pass --socket PATH",
            )
        path = configured
    return path


def _status(args: argparse.Namespace) -> int:
    path = _socket_of(args)
    if isinstance(path, int):
        return path
    from shardbeat.runtime.status_client import run_status

    return run_status(path, as_json=args.json, watch=args.watch, timeout=args.timeout)


def _stop(args: argparse.Namespace) -> int:
    path = _socket_of(args)
    if isinstance(path, int):
        return path
    from shardbeat.runtime.status_client import run_stop

    return run_stop(path, timeout=args.timeout)


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return USAGE_ERROR
