"""The `shardbeat run` process: everything around the Runner that touches the operating system.

Guards stdout, takes the per-consumer instance locks, installs signal handlers, starts the control
channel readers, the parent watcher and the metrics endpoint, then blocks in Runner.run() until a stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from shardbeat.runtime import lifecycle_signals, open_files
from shardbeat.runtime.logs import stderr_handler
from shardbeat.runtime.network import Network, config_problems, endpoints_of
from shardbeat.runtime.output import RecordWriter, encoder_for, guard_stdout
from shardbeat.runtime.runner import Runner

if TYPE_CHECKING:
    from shardbeat.config import Config
    from shardbeat.runtime.control import ControlMessage, Reply

log = logging.getLogger("shardbeat.process")

USAGE_ERROR = 2
NOTHING_QUEUED = "NothingCommitted"  # the commit reply when every value was refused


class ControlHandler:
    """Turns validated control messages into runner operations (the runtime.control ControlSink)."""

    def __init__(self, runner: Runner, config: Config, config_path: str | None) -> None:
        from shardbeat.runtime.control_channels import ProblemBudget

        self._runner = runner
        self._config = config
        self._config_path = config_path
        # A flood of ops naming no configured group writes records like bad input does: rate limited
        # (socket clients still get every reply).
        self._refusals = ProblemBudget()
        self._reloads: Reloads | None = None
        self._reloads_lock = threading.Lock()

    def ask_reload(self) -> None:
        """A reload (the `reload` op, SIGHUP) runs on the reload thread, never on the caller's: a
        big config takes seconds to re-read, and the socket thread serves every client. Asks that
        come while one runs share the next. Signal-safe once started (start_reloads)."""
        self.start_reloads().ask()

    def close_reloads(self) -> None:
        """On the way out of run: the reload thread ends (a run in a test process leaves none)."""
        with self._reloads_lock:
            if self._reloads is not None:
                self._reloads.close()

    def start_reloads(self) -> Reloads:
        with self._reloads_lock:
            if self._reloads is None:
                self._reloads = Reloads(self.reload)
            return self._reloads

    def control(self, message: ControlMessage, reply: Reply | None = None) -> None:
        """Act on one message; with `reply` (a socket client), answer it (control_replies)."""
        from shardbeat.runtime import control_replies as replies

        answer = reply or (lambda doc: None)
        runner = self._runner
        op = message.op
        if op == "stop":
            log.info("control: stop requested")
            answer(replies.done(op))  # before the stop: the client hears it while we still serve
            runner.stop()
            return
        if op == "status":
            answer(replies.status(runner.emit_status(write=message.records)))
            return
        if op == "reload":
            self.ask_reload()
            answer(replies.done(op))  # asked: the outcome is logged by the reload thread
            return
        targets = runner.select(message.group, message.provider, message.consumer)
        if not targets:
            text = f"{op}: no configured group matches {_who(message)}"
            answer(replies.failed(op, "UnknownGroup", text))
            skipped = self._refusals.take()
            if skipped is not None:
                more = (
                    f" ({skipped} more messages naming no configured group not reported)" if skipped else ""
                )
                runner.control_error("UnknownGroup", text + more)
            return
        if op == "heartbeat":
            runner.beat_now(targets)
            answer(replies.heartbeat(targets))
        elif op == "released" and message.shards is not None:
            shards_released = runner.release(targets, message.shards, message.checkpoints, message.epoch)
            answer(replies.released(op, message.shards, targets, shards_released))
        elif op == "commit" and message.checkpoints is not None:
            queued = runner.commit(targets, message.checkpoints, message.epoch)
            if queued or not message.checkpoints:
                answer(replies.done(op))  # outcomes follow as `committed` / `error` records
            else:  # "ok" would tell a client that is no owner its values are on their way
                answer(
                    replies.failed(
                        op,
                        NOTHING_QUEUED,
                        "commit: no value was queued (not held under a valid lease or already released, "
                        "a stale epoch, or not a valid checkpoint): see the error records",
                    )
                )
        elif op == "held" and message.shards is not None:
            answer(replies.released(op, message.shards, targets, runner.held(targets, message.shards)))

    def control_error(self, source: str, code: str, message: str) -> None:
        self._runner.control_error(code, f"{source}: {message}")

    def control_eof(self) -> None:
        if self._config.control.exit_on_stdin_eof:
            log.info("stdin closed: stopping (exit_on_stdin_eof)")
            self._runner.stop()
        else:
            log.info("stdin closed: no more control messages from it")

    def reload(self) -> None:
        """Re-read credentials now; say which other config changes need a restart."""
        self._runner.refresh_credentials()
        self._runner.beat_now(self._runner.sessions)
        if self._config_path is None:
            log.info("reload: credentials will be re-read (no config file to re-read)")
            return
        from shardbeat.config import ConfigError, load_config

        try:
            fresh = load_config(self._config_path).config
        except ConfigError as exc:
            log.error("reload: %s no longer loads, keeping the running config: %s", self._config_path, exc)
            return
        if _without_credentials(fresh) != _without_credentials(self._config):
            log.warning(
                "reload: credentials re-read; other changes in %s take effect on restart", self._config_path
            )
        else:
            log.info("reload: credentials re-read")


class Reloads:
    """SIGHUP asks for a reload; the work (credentials, re-reading and validating the config file)
    runs on a thread of its own, never on the loop thread the signal interrupted, so a slow disk or a
    big config cannot delay a heartbeat or a `lost`. Signals that come while one runs share the next.

    An ask is a byte down a pipe, never a lock: a signal handler runs in the middle of whatever the
    main thread was doing, its own handler included, so one that took a lock (threading.Event.set)
    deadlocked the loop thread when the next SIGHUP came while it held it (a burst of SIGHUPs: no
    more heartbeats, and SIGTERM no longer stopped the process)."""

    def __init__(self, reload: Callable[[], None]) -> None:
        self._reload = reload
        self._closed = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self.thread = threading.Thread(target=self._run, name="shardbeat-reload", daemon=True)
        self.thread.start()

    def ask(self) -> None:
        """Signal-safe and lock-free; a full pipe means a reload is owed already."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            os.write(self._write, b"x")

    def close(self) -> None:
        """No more reloads: the thread ends (a run in a test process leaves none behind)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._write, b"x")
            os.close(self._write)

    def _run(self) -> None:
        try:
            while True:
                # Everything asked since the last reload is read at once: they share the next one.
                if not os.read(self._read, 1 << 16) or self._closed:
                    return
                try:
                    self._reload()
                except Exception:  # a bug in reload must not end reloads
                    log.exception("reload failed")
        finally:
            os.close(self._read)


def _without_credentials(config: Config) -> object:
    import dataclasses

    from shardbeat.providers.base import Credentials

    blank = Credentials("", "")
    groups = tuple(dataclasses.replace(g, credentials=blank) for g in config.groups)
    return groups, config.output, config.control


def _who(message: ControlMessage) -> str:
    parts = [f"{k} {v}" for k, v in (("group", message.group), ("provider", message.provider)) if v]
    if message.consumer:
        parts.append(f"consumer {message.consumer}")
    return ", ".join(parts) or "(any)"


def run(config: Config, config_path: str | None = None) -> int:
    from shardbeat.runtime.instance_lock import InstanceLockError, acquire_instance_locks

    problems = config_problems(config)  # proxy variables of the environment, per endpoint
    if problems:
        from shardbeat.config.problem_summary import summary_lines

        for line in summary_lines(problems):
            log.error("config: %s", line)
        return USAGE_ERROR
    room = open_files.make_room(len(config.groups))  # before the locks: one descriptor each
    if room is not None:
        log.error("%s", room)
        return USAGE_ERROR
    try:
        locks = acquire_instance_locks(config.groups, config.runtime_dir)
    except InstanceLockError as exc:
        log.error("%s", exc)
        return USAGE_ERROR
    with locks, contextlib.ExitStack() as cleanup:
        handler_for_logs = stderr_handler()
        if handler_for_logs is not None:
            handler_for_logs.write_in_background()
            cleanup.callback(handler_for_logs.flush_backlog, 0.5)
        fd = guard_stdout()
        box: list[Runner] = []
        encoder = encoder_for(config.output.format, _colour(fd))
        writer = RecordWriter(fd, encoder, on_broken=lambda why: _abandon(box, why))
        network = Network.of(config)
        _log_routes(network, config)
        runner = Runner(config.groups, writer, network=network)
        box.append(runner)
        if writer.broken:  # it broke before the runner was there to hear it
            runner.abandon(writer.broken_reason or "the record writer stopped")
        handler = ControlHandler(runner, config, config_path)
        cleanup.callback(handler.close_reloads)
        try:
            _start_services(runner, handler, config, cleanup)
        except (OSError, ValueError) as exc:  # ControlSocketError, MetricsError: a bad path or address
            log.error("%s", exc)
            return USAGE_ERROR
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: runner.stop())
            reloads = handler.start_reloads()  # one reload thread for SIGHUP and the `reload` op
            signal.signal(signal.SIGHUP, lambda *_: reloads.ask())
            if lifecycle_signals.reload_asked():
                log.info("SIGHUP came while starting: reloading now")
                reloads.ask()
        log.info(
            "shardbeat starting: %d group(s): %s",
            len(runner.sessions),
            ", ".join(s.config.label for s in runner.sessions),
        )
        try:
            return runner.run()
        finally:
            lifecycle_signals.ignore_after_stop()


def _start_services(
    runner: Runner, handler: ControlHandler, config: Config, cleanup: contextlib.ExitStack
) -> None:
    """Control channels, the parent watch and /metrics: each stopped by `cleanup` on the way out."""
    from shardbeat.runtime.control_channels import start_control
    from shardbeat.runtime.parent import watch_parent

    channels = start_control(handler, config.control)
    cleanup.callback(channels.close)
    watch = watch_parent(lambda old, new: runner.stop())
    cleanup.callback(watch.stop)
    if config.metrics is not None:
        from shardbeat.runtime.metrics import MetricsServer

        metrics = MetricsServer(config.metrics.listen, lambda: (runner.snapshot(), runner.writer_dropped))
        cleanup.callback(metrics.stop)
        metrics.start()
        log.info("metrics on http://%s:%d/metrics", metrics.host, metrics.port)


def _colour(fd: int) -> bool:
    import os

    from shardbeat.views.text_records import use_colour

    return use_colour(os.isatty(fd), os.environ)


def _log_routes(network: Network, config: Config) -> None:
    """Say how the endpoints are reached (proxy credentials hidden) and which CAs are trusted: one line
    per route, so a config of thousands of groups does not log thousands of lines."""
    by_route: dict[str, list[str]] = {}
    endpoints = endpoints_of(config)
    for _, endpoint in endpoints:
        where = f"{endpoint.scheme}://{endpoint.host}:{endpoint.port}"
        hosts = by_route.setdefault(network.route_to(endpoint).shown, [])
        if where not in hosts:
            hosts.append(where)
    for shown, hosts in by_route.items():
        more = f" and {len(hosts) - 3} more" if len(hosts) > 3 else ""
        log.info("network: %s: %s", ", ".join(hosts[:3]) + more, shown)
    if any(e.scheme == "https" for _, e in endpoints):
        log.info("network: TLS verified against %s", network.trust)


def _abandon(box: list[Runner], reason: str) -> None:
    """The writer is broken: the runner lets go of every shard and stops non-zero."""
    if box:
        box[0].abandon(reason)
    else:  # broken before the runner existed: nothing is claimed yet; say why all the same
        log.error("%s: stopping", reason)
