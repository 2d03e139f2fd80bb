"""One instance per consumer identity: flock'ed lock files in a private runtime dir.

flock locks belong to open file descriptions, so a second lock taken in this same process would
prove little: every "second instance" here is a real subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from harness import Plugin, write_config
from shardbeat.config import GroupConfig
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials
from shardbeat.runtime import instance_lock
from shardbeat.runtime.instance_lock import (
    InstanceLockError,
    InstanceLockHeld,
    acquire_instance_locks,
    default_runtime_dir,
    identity_label,
    lock_file_name,
    prepare_runtime_dir,
)

SECRET = "lock-test-Secret-77"


def sls_group(consumer: str = "c1", group: str = "g1", endpoint: str = "http://127.0.0.1:9") -> GroupConfig:
    return GroupConfig(
        provider="sls",
        endpoint=endpoint,
        consumer_group=group,
        consumer=consumer,
        credentials=Credentials("akid", SECRET),
        project="project",
        logstore="logstore",
    )


def cls_group(consumer: str = "c1") -> GroupConfig:
    return GroupConfig(
        provider="cls",
        endpoint="cls.ap-guangzhou.tencentcloudapi.com",
        consumer_group="g1",
        consumer=consumer,
        credentials=Credentials("sid", SECRET),
        region="ap-guangzhou",
        logset_id="logset",
        topics=("t1",),
    )


# A second process: lock the given (sls) consumers, report, then hold or exit as told.
_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from shardbeat.config import GroupConfig
    from shardbeat.providers.base import Credentials
    from shardbeat.runtime.instance_lock import InstanceLockError, acquire_instance_locks
    runtime_dir, consumers, hold = json.loads(sys.argv[1])
    groups = [GroupConfig(provider="sls", endpoint="http://127.0.0.1:9", consumer_group="g1", consumer=c,
                          credentials=Credentials("akid", "x"), project="project", logstore="logstore")
              for c in consumers]
    try:
        locks = acquire_instance_locks(groups, runtime_dir)
    except InstanceLockError as exc:
        print("refused:", exc, flush=True)
        sys.exit(2)
    print("locked", flush=True)
    if hold:
        time.sleep(60)
    """
)


def child(runtime_dir: Path, consumers: list[str], hold: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps([str(runtime_dir), consumers, hold])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_child(runtime_dir: Path, consumers: list[str]) -> tuple[int, str]:
    proc = child(runtime_dir, consumers)
    out, err = proc.communicate(timeout=30)
    assert not err, err
    return proc.returncode, out


def holding_child(runtime_dir: Path, consumers: list[str]) -> subprocess.Popen[str]:
    proc = child(runtime_dir, consumers, hold=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    return proc


@pytest.fixture
def rundir(tmp_path: Path) -> Path:
    return tmp_path / "run"


# -- in one process vs another ----------------------------------------------------------------------


def test_second_process_with_the_same_identity_is_refused(rundir: Path) -> None:
    with acquire_instance_locks([sls_group("c1")], str(rundir)):
        code, out = run_child(rundir, ["c1"])
        assert code == 2
        assert (
            f"another shardbeat (pid {os.getpid()}) already runs consumer c1 of group g1 "
            "(sls:project/logstore)" in out
        )
        assert str(rundir) in out  # names the lock file, so an operator can look
        # another consumer of the same group is a different identity: allowed alongside
        assert run_child(rundir, ["c2"]) == (0, "locked\n")


def test_released_lock_can_be_taken_and_its_file_is_gone(rundir: Path) -> None:
    locks = acquire_instance_locks([sls_group("c1"), sls_group("c2")], str(rundir))
    assert len(locks.paths) == 2 and all(os.path.exists(p) for p in locks.paths)
    locks.release()
    locks.release()  # idempotent
    assert not any(os.path.exists(p) for p in locks.paths)
    assert run_child(rundir, ["c1", "c2"]) == (0, "locked\n")


def test_lock_file_holds_pid_and_label(rundir: Path) -> None:
    with acquire_instance_locks([sls_group("c1")], str(rundir)) as locks:
        (path,) = locks.paths
        assert Path(path).read_text() == f"{os.getpid()}\nconsumer c1 of group g1 (sls:project/logstore)\n"
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def test_held_by_another_process_then_released_when_it_exits(rundir: Path) -> None:
    holder = holding_child(rundir, ["c1"])
    try:
        with pytest.raises(InstanceLockHeld, match=rf"pid {holder.pid}\) already runs consumer c1") as caught:
            acquire_instance_locks([sls_group("c1")], str(rundir))
        assert caught.value.pid == holder.pid
        assert caught.value.path == str(rundir / lock_file_name(sls_group("c1").identity))
        holder.terminate()  # SIGTERM: the child dies without calling release()
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait(10)
    acquire_instance_locks([sls_group("c1")], str(rundir)).release()


def test_sigkill_of_the_holder_leaves_no_stale_lock(rundir: Path) -> None:
    holder = holding_child(rundir, ["c1"])
    with pytest.raises(InstanceLockError):
        acquire_instance_locks([sls_group("c1")], str(rundir))
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    leftover = list(rundir.iterdir())
    assert len(leftover) == 1  # the file stays (nobody unlinked it) but the kernel dropped the lock
    with acquire_instance_locks([sls_group("c1")], str(rundir)) as locks:
        assert Path(locks.paths[0]).read_text().startswith(f"{os.getpid()}\n")


def test_all_or_nothing(rundir: Path) -> None:
    holder = holding_child(rundir, ["c2"])
    try:
        with pytest.raises(InstanceLockError, match="consumer c2"):
            acquire_instance_locks([sls_group("c1"), sls_group("c2")], str(rundir))
        # c1 was locked first and must have been given back
        assert run_child(rundir, ["c1"]) == (0, "locked\n")
    finally:
        holder.kill()
        holder.wait(10)


def test_same_identity_twice_in_one_call(rundir: Path) -> None:
    with pytest.raises(InstanceLockError, match="configured twice"):
        acquire_instance_locks([sls_group("c1"), sls_group("c1")], str(rundir))
    assert list(rundir.iterdir()) == []


def test_unlink_race_takes_the_new_file(rundir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder that releases (unlinks) between our open and flock must not leave us on a dead inode."""
    prepare_runtime_dir(str(rundir))
    real_flock = instance_lock.fcntl.flock
    calls = 0

    def flock_after_unlink(fd: int, op: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            os.unlink(rundir / lock_file_name(sls_group("c1").identity))
        real_flock(fd, op)

    monkeypatch.setattr(instance_lock.fcntl, "flock", flock_after_unlink)
    with acquire_instance_locks([sls_group("c1")], str(rundir)) as locks:
        assert calls == 2
        monkeypatch.undo()
        assert os.path.exists(locks.paths[0])
        code, out = run_child(rundir, ["c1"])
        assert code == 2 and "already runs" in out


def test_full_runtime_dir_is_a_clear_refusal(rundir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime_dir on a full disk (ENOSPC writing the holder) refuses cleanly and keeps no lock."""

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(instance_lock.os, "pwrite", full)
    with pytest.raises(InstanceLockError, match="cannot write it: No space left on device"):
        acquire_instance_locks([sls_group("c1"), sls_group("c2")], str(rundir))
    monkeypatch.undo()
    assert list(rundir.iterdir()) == []
    assert run_child(rundir, ["c1"]) == (0, "locked\n")


# -- names ------------------------------------------------------------------------------------------


def test_lock_file_names() -> None:
    a = lock_file_name(sls_group("c1").identity)
    assert a == lock_file_name(sls_group("c1").identity)  # stable across processes and restarts
    assert a.startswith("sls-g1-c1.") and a.endswith(".lock")
    others = {
        lock_file_name(g.identity)
        for g in (
            sls_group("c2"),
            sls_group(group="g2"),
            cls_group(),
        )
    }
    assert len(others | {a}) == 4
    # The endpoint's spelling never makes a different consumer: the server sees one.
    spellings = [
        "http://127.0.0.1:9",
        "http://localhost:9",
        "HTTP://[::ffff:127.0.0.1]:9",
        "https://127.0.0.1:9",
        "cn-hangzhou.log.aliyuncs.com",
        "cn-hangzhou-intranet.log.aliyuncs.com",
    ]
    assert {lock_file_name(sls_group(endpoint=e).identity) for e in spellings} == {a}
    odd = lock_file_name(sls_group(consumer="../../etc/passwd x" + "y" * 300).identity)
    assert "/" not in odd and " " not in odd and len(odd) < 128


def test_identity_label() -> None:
    assert identity_label(cls_group("c9").identity) == "consumer c9 of group g1 (cls:ap-guangzhou/logset)"


# -- the runtime directory --------------------------------------------------------------------------


def test_runtime_dir_created_private(rundir: Path) -> None:
    old = os.umask(0o002)  # a permissive umask must not leak into the dir's mode
    try:
        prepare_runtime_dir(str(rundir))
    finally:
        os.umask(old)
    assert stat.S_IMODE(rundir.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_runtime_dir_writable_by_others_refused(rundir: Path, mode: int) -> None:
    rundir.mkdir()
    rundir.chmod(mode)
    with pytest.raises(InstanceLockError, match=r"writable by group or others .*chmod 700"):
        acquire_instance_locks([sls_group()], str(rundir))
    assert list(rundir.iterdir()) == []


def test_runtime_dir_owned_by_someone_else_refused(rundir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rundir.mkdir(mode=0o700)
    me = os.getuid()
    monkeypatch.setattr(instance_lock.os, "getuid", lambda: me + 1)
    with pytest.raises(InstanceLockError, match=rf"owned by uid {me}, not by this user \(uid {me + 1}\)"):
        prepare_runtime_dir(str(rundir))


def test_runtime_dir_symlink_planted_by_someone_else_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    me = os.getuid()
    prepare_runtime_dir(str(link))  # our own symlink to our own dir is fine
    if me == 0:
        os.chown(link, 4242, 4242, follow_symlinks=False)
        with pytest.raises(InstanceLockError, match="symlink owned by uid 4242"):
            prepare_runtime_dir(str(link))
    else:
        monkeypatch.setattr(instance_lock.os, "getuid", lambda: me + 1)
        with pytest.raises(InstanceLockError, match="symlink owned by uid"):
            prepare_runtime_dir(str(link))


def test_runtime_dir_not_a_directory_or_not_creatable(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(InstanceLockError, match="not a directory"):
        prepare_runtime_dir(str(file))
    with pytest.raises(InstanceLockError, match="cannot create it"):
        prepare_runtime_dir(str(tmp_path / "missing-parent" / "run"))


def test_default_runtime_dir(tmp_path: Path) -> None:
    assert default_runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)}, uid=1000) == str(tmp_path / "shardbeat")
    assert default_runtime_dir({}, uid=1000) == "/tmp/shardbeat-1000"
    assert default_runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path / "gone")}, uid=7) == "/tmp/shardbeat-7"
    assert default_runtime_dir({"XDG_RUNTIME_DIR": "relative"}, uid=7) == "/tmp/shardbeat-7"
    assert default_runtime_dir({}) == f"/tmp/shardbeat-{os.getuid()}"


def test_none_means_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with acquire_instance_locks([sls_group()], None) as locks:
        assert locks.runtime_dir == str(tmp_path / "shardbeat")
        assert Path(locks.paths[0]).parent == tmp_path / "shardbeat"


# -- the process contract: `shardbeat run` twice -----------------------------------------------------


@pytest.mark.slow
def test_second_shardbeat_run_exits_2_while_the_first_keeps_running(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    group: dict[str, Any] = emulator.demo_config("sls") | {"heartbeat_interval": 0.5}
    config = write_config(tmp_path / "c.json", [group], runtime_dir=str(tmp_path / "run"))
    first = Plugin(["run", "--config", str(config)])
    try:
        assert first.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 15), first.log()
        second = subprocess.run(
            [sys.executable, "-m", "shardbeat", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2, second.stderr
        assert second.stdout == ""
        assert (
            f"another shardbeat (pid {first.proc.pid}) already runs consumer demo-consumer of group "
            "demo-group (sls:demo-project/demo-logstore)" in second.stderr
        )
        assert "Traceback" not in second.stderr
        # the first keeps heartbeating, undisturbed
        _, since = emulator.world.receipts()
        time.sleep(1.2)
        later, _ = emulator.world.receipts(since)
        assert first.proc.poll() is None
        assert [r.status for r in later if r.call.consumer == "demo-consumer"][:2] == [200, 200]
        assert first.events("lost") == []
        assert first.terminate() == 0
        # after a clean stop the identity is free again
        third = Plugin(["run", "--config", str(config)])
        try:
            assert third.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 15), third.log()
        finally:
            third.terminate()
    finally:
        first.kill()


@pytest.mark.slow
def test_three_spellings_of_one_endpoint_are_one_consumer(emulator: EmulatorServer, tmp_path: Path) -> None:
    """localhost, 127.0.0.1 and an IPv4-mapped IPv6 literal (upper-case scheme) reach one server: the
    second and third process are refused before they send anything."""
    port = emulator.port
    spellings = [f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"HTTP://[::ffff:127.0.0.1]:{port}"]
    configs = []
    for i, endpoint in enumerate(spellings):
        group: dict[str, Any] = emulator.demo_config("sls") | {
            "heartbeat_interval": 0.5,
            "endpoint": endpoint,
        }
        configs.append(write_config(tmp_path / f"c{i}.json", [group], runtime_dir=str(tmp_path / "run")))
    first = Plugin(["run", "--config", str(configs[0])])
    try:
        assert first.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 15), first.log()
        _, since = emulator.world.receipts()
        for config in configs[1:]:
            other = subprocess.run(
                [sys.executable, "-m", "shardbeat", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert other.returncode == 2, other.stderr
            assert "already runs consumer demo-consumer" in other.stderr
        later, _ = emulator.world.receipts(since)
        assert {r.call.consumer for r in later} <= {"demo-consumer"}
        assert all(r.status == 200 for r in later)
    finally:
        first.kill()
