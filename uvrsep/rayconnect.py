"""Ray itself, for ``--ray``: the import, the address, and starting or joining a Ray cluster.

Joining a running cluster (``--ray HOST:PORT`` or ``auto``) is bounded: it fails within
:data:`CONNECT_DEADLINE_S` seconds (``UVRSEP_RAY_CONNECT_TIMEOUT`` overrides it) with one line
that names the address, where Ray itself would retry for many minutes. A ``HOST:PORT`` is first
tried with a plain TCP connection, so an address where nothing listens, or whose name does not
resolve, fails at once; the rest of the deadline bounds Ray's own connection (something listens
there that is not Ray, or does not answer).

Ray's own messages stay off the terminal on normal runs, by Ray's documented settings only:
``ray.init(logging_level=ERROR, log_to_driver=False)`` for its Python side, and
``RAY_BACKEND_LOG_LEVEL=fatal`` (unless already set) for its C++ core, whose log lines
(``core_worker.cc: ...``, written to file descriptor 2) would otherwise show even on runs that
go well. While Ray starts or connects, file descriptor 2 goes to a temporary file that is then
dropped: Ray's C++ client writes there before that setting applies. ``UVRSEP_RAY_DEBUG=1``
(:data:`DEBUG_ENV`) shows all of Ray's messages instead. A run's Ray Data progress bars are off
(:func:`quiet_ray_data`), and a Ray error is shown by its one line that matters (:func:`ray_reason`).

Nothing here touches Ray's private modules. On this machine's loopback address (``--ray`` /
``local``, ``127.0.0.1:PORT``) Ray runs in its documented single-machine mode,
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which Ray reads when it is imported: it is set before
uvrsep imports Ray, and a process that imported Ray without it is told so.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import ConfigError, UvrsepError, one_line

#: Oldest Ray whose ``map_batches`` takes ``compute=ActorPoolStrategy(size=n)`` without a
#: deprecation warning (2.9–2.50 wanted ``concurrency=``, deprecated again in 2.51).
MIN_RAY = (2, 51)
INSTALL_HINT = 'pip install "uvrsep[ray]"'
#: Seconds that joining a running Ray cluster may take before ``--ray ADDRESS`` fails.
CONNECT_DEADLINE_S = 30.0
#: Environment variable that overrides :data:`CONNECT_DEADLINE_S` (seconds, > 0).
DEADLINE_ENV = "UVRSEP_RAY_CONNECT_TIMEOUT"
#: Environment variable: ``1`` shows Ray's own log lines (hidden on normal runs).
DEBUG_ENV = "UVRSEP_RAY_DEBUG"
#: Ray's documented switch to its single-machine mode (``0``: this machine is 127.0.0.1).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Ray's documented log level of its C++ core (trace, debug, info, warning, error, fatal).
BACKEND_LOG_ENV = "RAY_BACKEND_LOG_LEVEL"

_ADDRESS = re.compile(r"(?:ray://)?(?:\[(?P<ip6>[0-9a-fA-F:]+)\]|(?P<host>[\w.\-]+)):(?P<port>\d+)")
_LOOPBACK = re.compile(r"(?:ray://)?(?:127\.0\.0\.1|localhost|\[::1\]):")


def check_address(address: str) -> str:
    """``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; anything else is a usage error
    (usually an input taken for the address: ``--ray`` takes the next word)."""
    if address in ("local", "auto"):
        return address
    m = _ADDRESS.fullmatch(address)
    if m is None:
        raise ConfigError(
            f"--ray {address}: not a Ray address (local, auto or HOST:PORT); "
            "put the inputs before --ray, or write --ray=ADDRESS"
        )
    if not 0 < int(m["port"]) < 65536:
        raise ConfigError(f"--ray {address}: the port must be 1 to 65535")
    return address


def _loopback(address: str | None) -> bool:
    return address is not None and (address == "local" or _LOOPBACK.match(address) is not None)


def require_ray(address: str | None = None):
    """The ``ray`` module, with Ray Data; a one-line :class:`ConfigError` saying how to install
    it when it is missing or too old. For an ``address`` on this machine's loopback interface
    (``local``, ``127.0.0.1:PORT``) Ray is imported in its single-machine mode, and refused
    where it was imported before without it (and is not connected yet)."""
    if _loopback(address) and "ray" not in sys.modules:
        os.environ[LOOPBACK_ENV] = "0"  # read when ray is imported, also by the daemons it starts
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(f"--ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    version = tuple(int(x) for x in re.findall(r"\d+", ray.__version__)[:2])
    if version < MIN_RAY:
        raise ConfigError(
            f"--ray needs Ray {'.'.join(map(str, MIN_RAY))} or newer (this is {ray.__version__}): "
            f"{INSTALL_HINT} --upgrade"
        )
    if address not in (None, "local"):
        connect_deadline()  # a bad override is a usage error, found before any work
    if _loopback(address) and not ray.is_initialized() and ray.util.get_node_ip_address() != "127.0.0.1":
        # Otherwise Ray replaces a loopback address by the machine's outward one, both when it
        # starts an instance (which then listens there) and when it connects to 127.0.0.1:PORT.
        raise ConfigError(
            f"--ray {address}: Ray was imported before uvrsep could keep it on 127.0.0.1: set "
            f"{LOOPBACK_ENV}=0 before importing ray, or connect with ray.init() first"
        )
    return ray


def connect_deadline() -> float:
    """Seconds that joining a running cluster may take: ``$UVRSEP_RAY_CONNECT_TIMEOUT``, else
    :data:`CONNECT_DEADLINE_S`."""
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return CONNECT_DEADLINE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigError(f"{DEADLINE_ENV}={text!r}: not a positive number of seconds")
    return seconds


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _init_args() -> dict:
    """``ray.init``'s logging arguments (and the C++ core's level, unless set already)."""
    if _debug():
        return dict(logging_level=logging.INFO, log_to_driver=True)
    os.environ.setdefault(BACKEND_LOG_ENV, "fatal")  # read when this process's Ray core starts
    return dict(logging_level=logging.ERROR, log_to_driver=False)


@contextmanager
def _ray_output_hidden() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file, dropped after (not with ``UVRSEP_RAY_DEBUG``):
    Ray's C++ side writes its log lines there, not to ``sys.stderr``. Only around starting or
    joining Ray, when uvrsep itself prints nothing."""
    if _debug():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr to keep clean
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def start_local(**resources) -> None:
    """Start a Ray instance on this machine for this process, reachable only from it: bound to
    127.0.0.1, no dashboard. ``resources``: ``num_cpus``, ``num_gpus`` (default: what the
    machine has; a test may declare GPUs that are not there)."""
    ray = require_ray("local")
    with _ray_output_hidden():
        ray.init(address="local", include_dashboard=False, **_init_args(), **resources)


def connect(address: str) -> bool:
    """Connect this process to Ray (``local``: a new instance, :func:`start_local`; else the
    running cluster at ``address``, within :func:`connect_deadline`). Returns whether it
    connected here: the caller then ends that with ``ray.shutdown()``, which also stops an
    instance started here. A process already connected keeps its connection. A failure is a
    one-line :class:`UvrsepError` naming the address."""
    ray = require_ray(address)
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            start_local()
        else:
            _join(ray, address)
    except UvrsepError:
        raise
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:  # Ray's
        raise UvrsepError(f"--ray {address}: cannot connect to Ray ({one_line(exc)})") from None
    return True


def _join(ray, address: str) -> None:
    """``ray.init(address)`` within the deadline; an address where nothing answers fails at once."""
    seconds = connect_deadline()
    target = _probe_target(address)
    advice = (
        "check the address (`ray start --head` prints it; Ray's port is 6379 by default) and that the cluster is up"
    )

    def attempt() -> None:
        if target is not None:
            why = reach(*target, seconds)
            if why is not None:
                raise UvrsepError(f"--ray {address}: cannot reach a Ray cluster: {why}; {advice}")
        ray.init(address=address, **_init_args())

    with _ray_output_hidden():
        finished = run_within(seconds, attempt, late=ray.shutdown)
    if not finished:
        raise UvrsepError(
            f"--ray {address}: no Ray cluster answered within {seconds:g} s; {advice} "
            f"({DEADLINE_ENV} sets the deadline)"
        )


def _probe_target(address: str) -> tuple[str, int] | None:
    """The ``(host, port)`` that ``ray.init(address)`` connects to, where the address says it
    (``auto``: Ray's documented ``RAY_ADDRESS`` variable, if set)."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
    m = _ADDRESS.fullmatch(address)
    return None if m is None else (m["ip6"] or m["host"], int(m["port"]))


def reach(host: str, port: int, seconds: float) -> str | None:
    """Why no TCP connection to ``host:port`` could be made within ``seconds`` (a few words), or
    ``None`` when one was."""
    try:
        socket.create_connection((host, port), timeout=seconds).close()
    except socket.gaierror:
        return f"the name {host} does not resolve"
    except ConnectionRefusedError:
        return f"nothing listens on port {port} of {host} (connection refused)"
    except TimeoutError:
        return f"{host}:{port} did not answer within {seconds:g} s"
    except (OSError, OverflowError) as exc:
        return f"{host}:{port}: {getattr(exc, 'strerror', None) or one_line(exc)}"
    return None


def run_within(seconds: float, work: Callable[[], None], late: Callable[[], None]) -> bool:
    """Run ``work`` in a daemon thread for at most ``seconds``: True when it returned, its
    exception re-raised here, False when time ran out. ``work`` then goes on unattended (a
    thread cannot be stopped), and ``late`` is called should it still succeed."""
    lock = threading.Lock()
    state: dict = {"done": False, "abandoned": False, "error": None}
    done = threading.Event()

    def run() -> None:
        error = None
        try:
            work()
        except BaseException as exc:  # handed to the caller
            error = exc
        with lock:
            state["done"], state["error"] = True, error
            abandoned = state["abandoned"]
        done.set()
        if abandoned and error is None:
            late()

    threading.Thread(target=run, name="uvrsep-ray-connect", daemon=True).start()
    done.wait(seconds)
    with lock:
        if not state["done"]:
            state["abandoned"] = True
            return False
    if state["error"] is not None:
        raise state["error"]
    return True


def ray_reason(exc: BaseException) -> str:
    """The one line that matters in a Ray error (the uvrsep error inside it, if any)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UvrsepError):
            return str(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = str(exc)
    for line in text.splitlines():
        m = re.search(r"uvrsep\.errors\.\w+: (.*)", line)
        if m:
            return m.group(1).strip()
    return one_line(exc)


def quiet_ray_data() -> None:
    """No Ray Data progress bars or start-up lines: the batch shows its own progress."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
