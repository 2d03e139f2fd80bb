"""Command line: verbs run, validate, doctor, status, stop, schema, emulator. Parses flags, hands over.

Exit codes: 0 clean stop; 2 usage or config error; anything else an unrecoverable fault (the runner's).
Under `run`, stdout carries records only (the runner writes them): every message here goes to stderr.
Flags for a single group are turned into the same document a config file holds, so one validation
(shardbeat.config) applies to both.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shardbeat import __version__
from shardbeat.cli_operator import add_operator_verbs
from shardbeat.cli_parser import ArgumentParser
from shardbeat.config import (
    Config,
    ConfigError,
    LoadedConfig,
    Problem,
    config_from_dict,
    load_config,
    parse_config_file,
)
from shardbeat.config.network import prefetch_ca_bundle
from shardbeat.config.problem_summary import summary_lines
from shardbeat.operator_output import GuardedStdout, StdoutUnwritable
from shardbeat.providers.service import CliFlag
from shardbeat.providers.services import DEFAULT as DEFAULT_SERVICE
from shardbeat.providers.services import SERVICES
from shardbeat.runtime import lifecycle_signals
from shardbeat.runtime.logs import LEVELS, setup_logging
from shardbeat.runtime.parent import remember_parent
from shardbeat.schemas import SCHEMA_NAMES, SchemaName, schema_text

log = logging.getLogger("shardbeat.cli")

USAGE_ERROR = 2
MAX_CALL_TIMEOUT = 600.0  # doctor: beyond this a "deadline" is no deadline
INTERNAL_ERROR = 1

# The flags each service reads (its descriptor's cli_flags), in the table's order.
_SERVICE_FLAGS: dict[str, CliFlag] = {f.flag: f for s in SERVICES.values() for f in s.cli_flags}
# Group flags -> config keys, in the order `run --help` shows them.
GROUP_FLAGS: dict[str, str] = {
    "--provider": "provider",
    "--endpoint": "endpoint",
    **{flag: f.key for flag, f in _SERVICE_FLAGS.items()},
    "--group": "consumer_group",
    "--consumer": "consumer",
    "--interval": "heartbeat_interval",
    "--timeout": "timeout",
    "--lease-margin": "lease_margin",
    "--credentials-file": "credentials_file",
}
# Credential flags -> (provider, credentials key, is it secret): each service's keys, e.g. --secret-id.
CREDENTIAL_FLAGS: dict[str, tuple[str, str, bool]] = {
    s.credential_keys.flag(key): (s.name, key, key != s.credential_keys.key_id)
    for s in SERVICES.values()
    for key in s.credential_keys.names
}


def _credential_sources() -> list[str]:
    """Every service's sources, merged position by position (static, the instance roles, ...)."""
    merged: list[str] = []
    for position in itertools.zip_longest(*(s.credential_sources for s in SERVICES.values())):
        merged += dict.fromkeys(name for name in position if name is not None and name not in merged)
    return merged


_FLAG_FOR_PATH = (
    {key: flag for flag, key in GROUP_FLAGS.items()}
    | {f"credentials.{key}": flag for flag, (_, key, _) in CREDENTIAL_FLAGS.items()}
    | {"credentials.source": "--credentials-source"}
    | {"checkpoints": "--checkpoints", "checkpoints.start": "--start"}
)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


# -- parser -----------------------------------------------------------------------------------------


def _add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", type=str.lower, choices=list(LEVELS), default="info")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")


def _add_group_flags(parser: argparse.ArgumentParser) -> None:
    """One group as flags (run, doctor): the same document a config file holds."""
    flags = parser.add_argument_group("a single group, without a config file")
    defaults = "; ".join(s.endpoint_help for s in SERVICES.values() if s.endpoint_help)
    helps = {
        "endpoint": "host[:port], optional http:// or https://" + (f" ({defaults})" if defaults else ""),
        **{f.key: f.help for f in _SERVICE_FLAGS.values()},
        "consumer": "default: this host's name",
        "heartbeat_interval": "default 20",
        "timeout": "the group's timeout on the server; default 60",
        "lease_margin": "default max(1, timeout/10)",
        "credentials_file": "JSON object with the credential keys",
    }
    for flag, key in GROUP_FLAGS.items():
        if flag == "--provider":
            flags.add_argument(flag, dest=key, choices=list(SERVICES))
        elif flag in _SERVICE_FLAGS and _SERVICE_FLAGS[flag].metavar:  # repeatable
            flags.add_argument(
                flag, dest=key, action="append", metavar=_SERVICE_FLAGS[flag].metavar, help=helps[key]
            )
        elif key in ("heartbeat_interval", "timeout", "lease_margin"):
            flags.add_argument(flag, dest=key, type=float, metavar="SECONDS", help=helps[key])
        elif key == "credentials_file":
            flags.add_argument(flag, dest=key, metavar="FILE", help=helps[key])
        else:
            flags.add_argument(flag, dest=key, help=helps.get(key))
    flags.add_argument(
        "--credentials-source",
        choices=_credential_sources(),
        help="temporary keys from the instance role / pod identity / CLI profile, with the settings the "
        "official credential chains read from the environment (see README: Running on cloud nodes)",
    )
    flags.add_argument(
        "--checkpoints", action="store_true", default=None,
        help="start positions on assignment records and the `commit` control op (see README: Checkpoints)",
    )  # fmt: skip
    flags.add_argument(
        "--start", metavar="POS", type=_start_position,
        help="start of a shard never committed: begin, end (default) or unix seconds; implies --checkpoints",
    )  # fmt: skip
    secrets = parser.add_argument_group(
        "credentials on the command line (visible to other users in ps: prefer the environment "
        "or --credentials-file)"
    )
    for flag in CREDENTIAL_FLAGS:
        provider, key, _ = CREDENTIAL_FLAGS[flag]
        secrets.add_argument(flag, dest=_dest(flag), metavar="VALUE", help=f"{provider} credentials.{key}")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(  # usage errors name flags, never values (cli_parser)
        prog="shardbeat",
        description="Keep consumer-group memberships alive on Alibaba Cloud SLS and Tencent Cloud CLS, "
        "and write shard assignments as records on stdout.",
    )
    parser.add_argument("--version", action="version", version=f"shardbeat {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    run = verbs.add_parser(
        "run",
        help="heartbeat and write records (the plugin)",
        description="Run the plugin: records on stdout, logs on stderr. Give --config FILE, or one group "
        "as flags (credentials from the environment or --credentials-file), or --emulator.",
    )
    run.add_argument("--config", metavar="FILE", help="JSON or TOML (.toml) config file")
    run.add_argument(
        "--emulator",
        action="store_true",
        help="start the embedded emulator and run its demo group (--provider picks sls or cls)",
    )
    _add_group_flags(run)
    run.add_argument(
        "--output-format",
        choices=["json", "msgpack", "text"],
        help="overrides output.format; text (one readable line per record) is the default when stdout "
        "is a terminal and no format is given",
    )
    run.add_argument(
        "--control-socket",
        metavar="PATH",
        type=_socket_path,
        help="Unix socket (mode 0600) for control messages; overrides control.socket",
    )
    run.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin (a pipe, FIFO, file or socket) ends; sets control.exit_on_stdin_eof",
    )
    _add_logging_flags(run)
    run.set_defaults(handler=_run, parser=run)

    validate = verbs.add_parser(
        "validate", help="check a config file", description="Check a config file; exit 0 if it is valid."
    )
    validate.add_argument("--config", metavar="FILE", required=True)
    validate.add_argument(
        "--no-credentials",
        action="store_true",
        help="check structure only: credentials are not looked for and an unset ${VAR} is only a "
        "warning (for a build machine without the secrets)",
    )
    validate.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON document on stdout (schemas/validation.schema.json) instead of lines on stderr",
    )
    validate.set_defaults(handler=_validate, parser=validate)

    doctor = verbs.add_parser(
        "doctor",
        help="preflight checks against the real service",
        description="Check each group against its service: config sanity, instance lock, endpoint "
        "reachability, credentials, clock offset, the consumer group, and (CLS) the rate budget. One "
        "line per check (PASS, WARN or FAIL) on stdout; exit 0 without FAIL, 1 with, 2 for config errors.",
    )
    doctor.add_argument("--config", metavar="FILE", help="JSON or TOML (.toml) config file")
    doctor.add_argument(
        "--heartbeat",
        action="store_true",
        help="also send one heartbeat (empty claim) as the configured consumer to test the permission. "
        "Side effect: the consumer JOINS the group, the server rebalances shards to it, and they stay "
        "unread until the group's timeout passes. Use a consumer name no running instance uses.",
    )
    doctor.add_argument(
        "--call-timeout", type=float, default=5.0, metavar="SECONDS", help="deadline of each network step"
    )
    _add_group_flags(doctor)
    doctor.set_defaults(handler=_doctor, parser=doctor, output_format=None)

    add_operator_verbs(verbs, _socket_path)

    schema = verbs.add_parser("schema", help="print a JSON Schema", description="Print a JSON Schema.")
    schema.add_argument("name", nargs="?", choices=SCHEMA_NAMES, default="config")
    schema.set_defaults(handler=_schema, parser=schema)

    # Listed for --help only: main() hands `emulator ...` to the emulator's own parser.
    verbs.add_parser("emulator", help="run the local emulator of both services", add_help=False)
    return parser


def _socket_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("give a file path")
    return os.path.abspath(os.path.expanduser(text))


# -- flags -> config document --------------------------------------------------------------------------


class FlagError(ValueError):
    """A flag that does not fit the others (a usage error, exit 2). Its own type: any other
    ValueError on the way (a corrupt bytecode file's "bad marshal data" in a lazy import, a bug) is
    an internal error, never reported as the user's flags."""


def _start_position(text: str) -> str | float:
    """--start: begin, end or unix seconds (range and sign are the config schema's to judge)."""
    if text in ("begin", "end"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be begin, end or unix seconds") from None
    if value != value:  # NaN
        raise argparse.ArgumentTypeError("must be begin, end or unix seconds")
    return value


def _group_flags_given(args: argparse.Namespace) -> list[str]:
    given = [flag for flag, key in GROUP_FLAGS.items() if getattr(args, key) is not None]
    given += [flag for flag in ("--checkpoints", "--start") if getattr(args, _dest(flag), None) is not None]
    return given + [flag for flag in CREDENTIAL_FLAGS if getattr(args, _dest(flag)) is not None]


def _group_from_flags(args: argparse.Namespace, provider: str) -> tuple[dict[str, Any], dict[str, str]]:
    """-> (group entry, credentials from flags); raises ValueError for a flag of the other provider."""
    group = {key: getattr(args, key) for key in GROUP_FLAGS.values() if getattr(args, key) is not None}
    if getattr(args, "checkpoints", None) or getattr(args, "start", None) is not None:
        group["checkpoints"] = {} if args.start is None else {"start": args.start}
    creds: dict[str, str] = {}
    for flag, (owner, key, _) in CREDENTIAL_FLAGS.items():
        value = getattr(args, _dest(flag))
        if value is None:
            continue
        if owner != provider:
            hint = [f for f, (p, _, _) in CREDENTIAL_FLAGS.items() if p == provider]
            also = f"; for {provider} use {', '.join(hint)}" if hint else ""
            raise FlagError(f"{flag} is for --provider {owner}{also}")
        creds[key] = value
    if getattr(args, "credentials_source", None):
        creds["source"] = args.credentials_source
    return group, creds


def flag_path(path: str) -> str:
    """groups[0].logset_id -> --logset-id: problems with flags name the flag the user typed."""
    if path == "output.format":
        return "--output-format"
    match = re.fullmatch(r"groups\[0\]\.?(.*?)(\[\d+\])?", path)
    if match is None:
        return path
    key = match.group(1)
    if key not in _FLAG_FOR_PATH and key.startswith("credentials."):
        # A source's setting no flag gives (role_arn, provider_id, ...): the user typed no groups[0];
        # the message names the environment variable that sets it.
        return f"--credentials-source setting {key.removeprefix('credentials.')}"
    return _FLAG_FOR_PATH.get(key, path)


def _on_flags(error: ConfigError) -> ConfigError:
    return ConfigError([Problem(flag_path(p.path), p.message) for p in error.problems])


def _config_from_flags(args: argparse.Namespace) -> LoadedConfig:
    provider = args.provider or ""
    group, creds = _group_from_flags(args, provider)
    if creds:
        group["credentials"] = creds
    raw: dict[str, Any] = {"groups": [group]}
    if args.output_format:
        raw["output"] = {"format": args.output_format}
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise _on_flags(exc) from None


def _with_control_flags(loaded: LoadedConfig, args: argparse.Namespace) -> LoadedConfig:
    """--control-socket and --exit-on-stdin-eof win over the config's `control` section."""
    control = loaded.config.control
    if args.control_socket:
        control = dataclasses.replace(control, socket=args.control_socket)
    if args.exit_on_stdin_eof:
        control = dataclasses.replace(control, exit_on_stdin_eof=True)
    return dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, control=control))


def _stdout_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _config_from_file(args: argparse.Namespace) -> LoadedConfig:
    raw = parse_config_file(args.config)
    if args.output_format is None and args.verb == "run" and _stdout_is_terminal():
        output = raw.get("output") if isinstance(raw, dict) else None
        if not (isinstance(output, dict) and "format" in output):
            args.output_format = "text"  # a person is watching, and the config did not choose
    if args.output_format and isinstance(raw, dict):
        output = raw.setdefault("output", {})
        if isinstance(output, dict):
            output["format"] = args.output_format
    if args.verb == "run":
        # While OpenSSL parses the environment's CA bundle on another core (without the GIL), import
        # the runtime `run` needs next: ~30 ms less from exec to the first record on two cores.
        prefetch_ca_bundle(raw, os.environ)
        from shardbeat.runtime import process  # noqa: F401
    return config_from_dict(raw, base_dir=Path(args.config).parent)


# -- verbs ----------------------------------------------------------------------------------------------


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def _log_problems(error: ConfigError) -> int:
    for line in summary_lines(error.problems):  # many of one kind in one line
        log.error("config: %s", line)
    return USAGE_ERROR


def _secret_flags_warning(args: argparse.Namespace) -> str | None:
    """Every verb that takes the credential flags warns (run and doctor alike): ps shows them to all."""
    secret_flags = [f for f, (_, _, secret) in CREDENTIAL_FLAGS.items() if secret and getattr(args, _dest(f))]
    if not secret_flags:
        return None
    return (
        f"secrets given on the command line ({', '.join(secret_flags)}) are visible to other users of "
        "this machine (ps); use environment variables or --credentials-file instead"
    )


def _run(args: argparse.Namespace) -> int:
    lifecycle_signals.install()  # first: a big config takes seconds to load (see the module)
    remember_parent()  # a host killed while it loads is noticed once the watch runs
    try:
        return _run_installed(args)
    finally:
        lifecycle_signals.leave()


def _run_installed(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    parser: argparse.ArgumentParser = args.parser
    if warning := _secret_flags_warning(args):  # first: ps showed it whatever else is wrong
        log.warning("%s", warning)
    group_flags = _group_flags_given(args)
    if args.config and (group_flags or args.emulator):
        clash = "--emulator" if args.emulator else ", ".join(group_flags)
        return _usage(parser, f"--config cannot be combined with {clash}")
    if not (args.config or args.emulator or group_flags):
        return _usage(parser, "give --config FILE, or --provider and the group flags, or --emulator")
    if args.output_format is None and not args.config and _stdout_is_terminal():
        args.output_format = "text"  # a person is watching (a config file may still choose)
    try:
        if args.emulator:
            return _run_emulator(args)
        loaded = _config_from_file(args) if args.config else _config_from_flags(args)
    except FlagError as exc:  # a credential flag of the other provider
        return _usage(parser, str(exc))
    except ConfigError as exc:
        return _log_problems(exc)
    loaded = _with_control_flags(loaded, args)
    return _start(loaded, lambda config: config, args.config)


def _start(loaded: LoadedConfig, prepare: Callable[[Config], Config], config_path: str | None = None) -> int:
    for line in summary_lines(loaded.warnings):
        log.warning("config: %s", line)
    from shardbeat.runtime import process  # lazy: only `run` needs threads and sockets

    return process.run(prepare(loaded.config), config_path)


def _run_emulator(args: argparse.Namespace) -> int:
    if args.endpoint is not None:
        return _usage(args.parser, "--endpoint cannot be combined with --emulator (it serves its own)")
    from shardbeat.emulator.fixtures import load_fixtures
    from shardbeat.emulator.server import EmulatorServer

    fixtures = load_fixtures(None)
    provider = args.provider or DEFAULT_SERVICE
    demo = fixtures.demo.get(provider)
    if demo is None:
        return _usage(args.parser, f"the emulator has no demo group for provider {provider}")
    group, creds = _group_from_flags(args, provider)
    if creds.get("source", "static") != "static":
        return _usage(
            args.parser, "--credentials-source cannot be combined with --emulator (it uses its demo keys)"
        )
    entry: dict[str, Any] = {**demo, **group, "provider": provider, "endpoint": "http://127.0.0.1"}
    if "credentials_file" in group:
        entry.pop("credentials", None)
    if creds:
        entry["credentials"] = {**entry.get("credentials", {}), **creds}
    # The embedded emulator is a world of its own: its consumer cannot be another process's, so its
    # instance lock lives in a private directory (two demos on one machine must not refuse each other).
    import tempfile  # lazy: only the embedded emulator needs it

    private = tempfile.TemporaryDirectory(prefix="shardbeat-emulator-")
    raw: dict[str, Any] = {"groups": [entry], "runtime_dir": private.name}
    if args.output_format:
        raw["output"] = {"format": args.output_format}
    try:
        loaded = config_from_dict(raw)  # validated before anything starts
    except ConfigError as exc:
        return _log_problems(_on_flags(exc))
    loaded = _with_control_flags(loaded, args)
    server = EmulatorServer(fixtures)
    server.start()
    log.info("emulator listening on %s (provider %s)", server.url, provider)
    try:
        url = server.url
        return _start(
            loaded,
            lambda config: dataclasses.replace(
                config, groups=tuple(dataclasses.replace(g, endpoint=url) for g in config.groups)
            ),
        )
    finally:
        server.stop()
        private.cleanup()


def _validate(args: argparse.Namespace) -> int:
    problems: Sequence[Problem]
    warnings: Sequence[Problem] = ()
    try:
        loaded = load_config(args.config, check_credentials=not args.no_credentials)
    except ConfigError as exc:
        problems = exc.problems
    else:
        from shardbeat.runtime.network import config_problems  # the environment's proxies, per endpoint

        problems = config_problems(loaded.config)
        warnings = () if problems else loaded.warnings
    if args.format == "json":
        import json

        from shardbeat.config.problem_summary import validation_document

        document = validation_document(problems, warnings, structure_only=args.no_credentials)
        print(json.dumps(document, ensure_ascii=False))
        return USAGE_ERROR if problems else 0
    for line in summary_lines(problems):
        print(line, file=sys.stderr)
    if problems:
        return USAGE_ERROR
    for line in summary_lines(warnings, "warning: "):
        print(line, file=sys.stderr)
    print("ok (structure only: credentials not checked)" if args.no_credentials else "ok")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if warning := _secret_flags_warning(args):  # first: ps showed it whatever else is wrong
        print(f"warning: {warning}", file=sys.stderr)  # doctor's stdout is its report
    group_flags = _group_flags_given(args)
    if args.config and group_flags:
        return _usage(parser, f"--config cannot be combined with {', '.join(group_flags)}")
    if not (args.config or group_flags):
        return _usage(parser, "give --config FILE, or --provider and the group flags")
    if not 0 < args.call_timeout <= MAX_CALL_TIMEOUT:  # NaN and inf fail too
        return _usage(
            parser, f"--call-timeout must be a number of seconds above 0 and at most {MAX_CALL_TIMEOUT:g}"
        )
    try:
        loaded = _config_from_file(args) if args.config else _config_from_flags(args)
    except FlagError as exc:  # a credential flag of the other provider
        return _usage(parser, str(exc))
    except ConfigError as exc:
        for line in summary_lines(exc.problems, "config: "):
            print(line, file=sys.stderr)
        return USAGE_ERROR
    from shardbeat.runtime.doctor import run_doctor  # lazy: sockets and providers
    from shardbeat.runtime.network import config_problems

    problems = config_problems(loaded.config)
    for line in summary_lines(problems, "config: "):
        print(line, file=sys.stderr)
    if problems:
        return USAGE_ERROR
    return run_doctor(loaded, sys.stdout, heartbeat=args.heartbeat, call_timeout=args.call_timeout)


def _schema(args: argparse.Namespace) -> int:
    name: SchemaName = args.name
    sys.stdout.write(schema_text(name))
    return 0


def _emulator(argv: Sequence[str]) -> int:
    from shardbeat.emulator import server

    return server.main(list(argv))


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def main(argv: list[str] | None = None) -> int:
    from shardbeat.runtime.stdio import reserve_standard_fds, unwritable_stdout

    closed = reserve_standard_fds()  # first: before anything here opens a file (locks, sockets)
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] != ["emulator"] and (why := "stdout is closed" if 1 in closed else unwritable_stdout()):
        # Nothing could reach downstream: refuse before claiming anything (records into /dev/null
        # would let this node hold shards nobody is told about).
        print(f"shardbeat: error: {why}: records could not be written; not starting", file=sys.stderr)
        return USAGE_ERROR
    if arguments[:1] == ["run"]:
        return _main(arguments)
    real_stdout = sys.stdout
    sys.stdout = GuardedStdout(real_stdout)
    try:
        return _main(arguments)
    except StdoutUnwritable as exc:
        print(f"shardbeat: error: {exc}", file=sys.stderr)
        return INTERNAL_ERROR
    finally:
        sys.stdout = real_stdout


def _main(arguments: list[str]) -> int:
    try:
        if arguments[:1] == ["emulator"]:
            code = _emulator(arguments[1:])
            sys.stdout.flush()
            return code
        parser = build_parser()
        try:
            args = parser.parse_args(arguments)
        except SystemExit as exc:  # argparse: usage errors exit 2 (message already on stderr), --help 0
            return _exit_code(exc)
        if args.verb is None:
            return _usage(parser, "give a verb: run, validate, doctor, status, stop, schema or emulator")
        if args.verb != "run":  # run sets its own level and format
            # Every verb's log lines (a library's, the internal-error line below with its traceback)
            # pass the redaction point, one line each: doctor holds keys and talks to servers too.
            setup_logging("warning")
        handler: Callable[[argparse.Namespace], int] = args.handler
        code = handler(args)
        sys.stdout.flush()
        return code
    except StdoutUnwritable:
        raise
    except lifecycle_signals.StartupInterrupted as exc:  # before the runner's handlers: nothing claimed
        log.info("stopped by %s while starting; nothing was claimed", exc.signal_name)
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not bad input: one log line with the traceback, then a fault exit
        log.critical("internal error (please report it): %s", exc, exc_info=True)
        return INTERNAL_ERROR
    finally:
        _flush_logs()


def _flush_logs() -> None:
    """Lines logged after `run` stopped its background stderr writer (the internal error above, above
    all) still go out: that writer is a daemon thread, and the process is about to exit under it."""
    from shardbeat.runtime.logs import stderr_handler

    handler = stderr_handler()
    if handler is not None:
        handler.flush_backlog(1.0)
