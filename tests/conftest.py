"""Fixtures shared by the whole suite.

- `emulator`: the emulator with its default fixtures (in-process, port 0), stopped after the test.
  A module picks other fixtures with `pytestmark = pytest.mark.emulator_fixtures(doc)`, e.g. the fault
  suites' `fault_kit.fast_fixtures()` (6 shards / 2x3 partitions, group timeout 3 s).
- `start_emulator(doc_or_fixtures)`: any other fixtures; every one started is stopped after the test.
- `run_plugin(args, ...)`: `shardbeat` children (harness.Plugin: records read live from stdout);
  every one still running after the test is killed and reaped.
- The polling helper is `harness.wait_for` (a deadline, optionally woken by a condition).

Isolation for pytest-xdist (`make test` runs the suite on several workers): every worker gets its
own XDG_RUNTIME_DIR, so the instance locks and default control sockets of `shardbeat run` children
(and of in-process runs) never meet another worker's - or another checkout's - on /tmp/shardbeat-UID.
Servers bind port 0 and files live under tmp_path.
"""

from __future__ import annotations

import compileall
import contextlib
import copy
import hashlib
import importlib
import os
import stat
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

# Every xdist worker imports every test module, and pytest's assertion rewrite of them costs seconds
# of CPU per worker. With PYTHONDONTWRITEBYTECODE set (as on the build machines) nothing is cached
# and each worker (and each child process) pays it again on every run: keep bytecode in a private
# cache outside the tree instead (keyed by full path and validated by mtime, so checkouts never
# share one).
# The directory must be ours and private: bytecode planted there would run.


def _private_dir(path: str) -> bool:
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        info = os.lstat(path)
    except OSError:  # no usable temporary directory: run without the cache
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


_PYC = os.path.join(tempfile.gettempdir(), f"shardbeat-test-pyc-{os.getuid()}")
if sys.dont_write_bytecode and sys.pycache_prefix is None and _private_dir(_PYC):
    sys.pycache_prefix = _PYC
    sys.dont_write_bytecode = False
    # The `shardbeat` children the tests start (hundreds) would otherwise compile the package anew.
    os.environ["PYTHONPYCACHEPREFIX"] = _PYC
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _warm_the_cache() -> None:
    """Fill the bytecode cache once, here in xdist's controller, before the workers start: they start
    together, and into an empty cache (every run of a fresh CI machine) each would assertion-rewrite and
    compile every test module (~5 s of CPU per worker) and the first `shardbeat` children the package.
    Skipped while no source changed since the last warm-up (a stamp in the cache)."""
    root = Path(__file__).resolve().parent.parent
    sources = sorted([*root.joinpath("tests").glob("*.py"), *root.joinpath("plugin").rglob("*.py")])
    key = hashlib.sha256(
        repr([sys.version, pytest.__version__, *((str(p), p.stat().st_mtime_ns) for p in sources)]).encode()
    ).hexdigest()
    stamp = Path(_PYC, "warm-" + hashlib.sha256(str(root).encode()).hexdigest()[:16])
    with contextlib.suppress(OSError):
        if stamp.read_text() == key:
            return
    compileall.compile_dir(root / "plugin", quiet=2)  # what the children import (into sys.pycache_prefix)
    for path in sorted(root.joinpath("tests").glob("test_*.py")):
        # Through pytest's assertion rewriting, as a worker would; a failure is for the worker to report.
        with contextlib.suppress(Exception, pytest.skip.Exception):
            importlib.import_module(path.stem)
    with contextlib.suppress(OSError):
        stamp.write_text(key)


def pytest_configure(config: pytest.Config) -> None:
    xdist_controller = bool(getattr(config.option, "numprocesses", None)) and not os.environ.get(
        "PYTEST_XDIST_WORKER"
    )
    if xdist_controller and sys.pycache_prefix == _PYC:
        _warm_the_cache()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On xdist's worksteal (`make test`) each worker first gets one contiguous slice of the
    collection, and an idle worker steals from the end of another's slice. Deal the `slow` tests (a few
    seconds each, nearly half of the suite's time) round-robin to the heads of the slices: they all start
    early and the run ends on short tests any worker can take, not on one that started late. Only the
    order changes."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))  # set in xdist's workers only
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    ordered: list[pytest.Item] = []
    left = len(items)
    for worker in range(workers):
        size = left // (workers - worker)  # the slice worksteal cuts for this worker
        left -= size
        head = slow[worker::workers]
        take = max(0, size - len(head))
        ordered += head + rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest


from harness import Plugin  # noqa: E402 (after the cache is set up, so it is cached too)
from shardbeat.core.redaction import SECRETS  # noqa: E402
from shardbeat.core.secret_spellings import Spellings  # noqa: E402
from shardbeat.emulator.fixtures import Fixtures, parse_fixtures  # noqa: E402
from shardbeat.emulator.server import EmulatorServer  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def private_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One XDG_RUNTIME_DIR per worker (mode 0700, as tmp_path_factory makes them)."""
    path = tmp_path_factory.mktemp("xdg-runtime")
    path.chmod(0o700)
    old = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = old


@pytest.fixture(autouse=True)
def secrets_of_this_test() -> Iterator[None]:
    """The registry of secrets is the process's (core/redaction.SECRETS). In a worker it would carry
    every earlier test's secrets, and their fragments (core/secret_spellings) can mask another test's
    text ("check access_key_secret" after a test registered "groups[0].credentials.access_key_secret"):
    each test starts from the secrets registered before it and leaves none behind."""
    registry = SECRETS
    with registry._lock:
        saved = (OrderedDict(registry._values), set(registry._pinned))
    yield
    with registry._lock:
        if (list(registry._values.items()), registry._pinned) == (list(saved[0].items()), saved[1]):
            return
        registry._values, registry._pinned = saved
        if registry._values:
            registry._compile()
        else:  # an empty alternation would match everywhere: back to "nothing registered"
            registry._text = registry._bytes = None
            registry._spellings = Spellings(())


StartEmulator = Callable[..., EmulatorServer]


@pytest.fixture
def start_emulator() -> Iterator[StartEmulator]:
    """`start_emulator(fixtures=None, **server_kwargs)`: a started EmulatorServer; `fixtures` may be a
    fixtures document (parsed here) or parsed Fixtures. All are stopped at teardown."""
    started: list[EmulatorServer] = []

    def start(fixtures: Mapping[str, Any] | Fixtures | None = None, **kwargs: Any) -> EmulatorServer:
        parsed = parse_fixtures(dict(fixtures)) if isinstance(fixtures, Mapping) else fixtures
        server = EmulatorServer(parsed, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def emulator(request: pytest.FixtureRequest, start_emulator: StartEmulator) -> EmulatorServer:
    """The emulator, one per test: its default fixtures (demo groups time out after 6 s), or those of
    the closest `emulator_fixtures(doc)` mark (e.g. `pytestmark = pytest.mark.emulator_fixtures(FAST)`)."""
    mark = request.node.get_closest_marker("emulator_fixtures")
    return start_emulator(copy.deepcopy(mark.args[0]) if mark is not None else None)


StartPlugin = Callable[..., Plugin]


@pytest.fixture
def run_plugin() -> Iterator[StartPlugin]:
    """`run_plugin(args, env=None, cwd=None)`: a `shardbeat` child (harness.Plugin: stdout records
    read live, stderr kept); any still running at teardown is killed and reaped."""
    started: list[Plugin] = []

    def start(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Plugin:
        plugin = Plugin(args, env=env, cwd=cwd)
        started.append(plugin)
        return plugin

    yield start
    for plugin in started:
        plugin.kill()
        plugin.finish()
