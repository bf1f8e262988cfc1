"""Running the app under uvicorn: the listening socket, Ctrl-C/SIGTERM, and a background variant."""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import UsageError
from ldm_cli.models.performance import PerformanceSettings
from ldm_cli.pipeline.config import ModelSettings


@dataclass(frozen=True)
class ServeSettings:
    model: ModelSettings = field(default_factory=ModelSettings)
    loras: tuple[str, ...] = ()
    lora_dirs: tuple[Path, ...] = ()  # where <lora:> tags are found (--lora-dir or $LDM_LORA_DIR)
    embeddings_dirs: tuple[Path, ...] = ()  # embeddings named in prompts (--embeddings-dir or $LDM_EMBEDDINGS_DIR)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    host: str = "127.0.0.1"
    port: int = 7860
    credentials: tuple[tuple[str, str], ...] = ()  # (user, password) pairs; empty: no auth
    insecure: bool = False
    max_queue: int = 16
    max_body_mb: int = 50
    out: Path = Path("outputs")  # where requests with save_images write their PNGs


def is_local(host: str) -> bool:
    """Loopback only: 127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(s: ServeSettings) -> None:
    if not is_local(s.host) and not s.credentials and not s.insecure:
        raise UsageError(
            f"--host {s.host}: anyone who can reach this address could use the server; "
            "add --api-auth USER:PASSWORD, or --insecure if the network is yours alone"
        )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _Stop(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def _uvicorn_server(app, on_exit=None):
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if on_exit is not None and not self.should_exit:
                # Answer queued jobs 503 and interrupt the running one, so connections close. On a thread
                # of its own: this runs inside a signal handler, maybe while the loop holds a queue lock.
                threading.Thread(target=on_exit, name="ldm-serve-stop", daemon=True).start()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30, access_log=False)
    return Server(config)


def _parts(s: ServeSettings, scratch: Path):
    from ldm_cli.serve.app import AppSettings, create_app
    from ldm_cli.serve.engine import Engine
    from ldm_cli.serve.worker import Worker

    engine = Engine(s.model, s.loras, s.performance, s.lora_dirs, s.embeddings_dirs)
    worker = Worker(engine, s.max_queue)
    from ldm_cli.serve.guard import LOOPBACK_NAMES

    allowed = LOOPBACK_NAMES | {s.host.lower()} if is_local(s.host) else None
    app = create_app(worker, AppSettings(scratch=scratch, out=s.out, credentials=dict(s.credentials),
                                         max_body_bytes=s.max_body_mb * 2**20, allowed_hosts=allowed))
    return engine, worker, app


def run(s: ServeSettings) -> int:
    """Serve until Ctrl-C or SIGTERM; then cancel the running job, answer the queued ones and exit 0."""
    check_exposure(s)
    sock = bind(s.host, s.port)
    scratch = Path(tempfile.mkdtemp(prefix="ldm-serve-"))
    try:
        engine, worker, app = _parts(s, scratch)
        server = _uvicorn_server(app, on_exit=worker.stop)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"ldm serve: {engine.title} on {engine.device}; http://{shown}:{port}/ (API /sdapi/v1, page /); "
              "Ctrl-C stops", file=sys.stderr, flush=True)
        stopped = _serve_until_signal(server, sock)
        worker.close()
        if stopped is not None:
            print(f"ldm serve: stopped by {signal.Signals(stopped).name}; the running job, if any, was cancelled",
                  file=sys.stderr, flush=True)
        return 0
    finally:
        sock.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _serve_until_signal(server, sock) -> int | None:
    """uvicorn re-raises the signal that stopped it; our own handlers turn that into a clean return."""

    def stop(signum, frame):
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except _Stop as exc:
        return exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return None


@contextlib.contextmanager
def serving_in_thread(s: ServeSettings):
    """Serve on a background thread (benchmarks, tests, embedding); yields (base_url, worker). Stops on exit."""
    check_exposure(s)
    sock = bind(s.host, s.port)
    scratch = Path(tempfile.mkdtemp(prefix="ldm-serve-"))
    engine, worker, app = _parts(s, scratch)
    server = _uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="ldm-serve", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread ended before it started")
            thread.join(0.02)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}", worker
    finally:
        worker.stop()
        server.should_exit = True
        thread.join(30)
        worker.close()
        sock.close()
        shutil.rmtree(scratch, ignore_errors=True)
