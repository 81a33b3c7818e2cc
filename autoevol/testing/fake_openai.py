"""A fake OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` after a fixed latency (on ``asyncio``, so thousands of
requests per second cost little CPU), injects faults chosen by a seeded RNG (HTTP 500, HTTP 429 with
``Retry-After``, hangs longer than a client's timeout, dropped connections, garbage bodies), and
counts what it did (``GET /stats``, ``POST /reset``, or :attr:`FakeOpenAIServer.stats`).

The default responder answers in DSPy's ChatAdapter format, so DSPy programs parse its replies::

    with FakeOpenAIServer(latency=0.01) as server:
        lm = dspy.LM("openai/fake", api_base=server.url, api_key="x", cache=False, num_retries=0)

Run ``python -m autoevol.testing.fake_openai --port 0 --latency 0.1`` for a separate process; it
prints ``LISTENING http://127.0.0.1:PORT/v1`` once it accepts connections (see
:func:`serve_in_subprocess`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import json
import os
import random
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

Responder = Callable[[list[dict], dict], str]

FAULT_KINDS = ("error_500", "rate_limit_429", "timeout", "drop", "garbage")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required",
            429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}
_MAX_HEADER_BYTES = 1 << 20


# --------------------------------------------------------------------------- fault plan & stats


@dataclass(frozen=True)
class FaultPlan:
    """Probabilities (each in [0, 1], summing to at most 1) of each injected fault per request.

    ``retry_after`` is the ``Retry-After`` header (seconds) sent with 429s; ``hang_seconds`` is how
    long a ``timeout`` fault holds the request before closing the connection without an answer.
    """

    error_500: float = 0.0
    rate_limit_429: float = 0.0
    retry_after: float = 1.0
    timeout: float = 0.0
    hang_seconds: float = 30.0
    drop: float = 0.0
    garbage: float = 0.0

    def __post_init__(self) -> None:
        rates = [getattr(self, kind) for kind in FAULT_KINDS]
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(f"fault rates must be in [0, 1]: {self}")
        if sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {sum(rates):.3f} > 1: {self}")
        if self.retry_after < 0 or self.hang_seconds < 0:
            raise ValueError("retry_after and hang_seconds must be >= 0")

    def choose(self, rng: random.Random) -> str | None:
        """Draw one fault kind (or ``None`` for a normal answer) from ``rng``."""
        draw, edge = rng.random(), 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, kind)
            if draw < edge:
                return kind
        return None


@dataclass
class ServerStats:
    """A snapshot of the server's counters.

    ``requests`` counts chat-completion requests received, ``ok`` the real completions answered
    with 200, ``faults`` the injected faults by kind (plus ``bad_request`` and ``responder_error``),
    and ``completions_by_key`` the successful completions per :func:`request_key` of the messages.
    """

    requests: int = 0
    ok: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    completions_by_key: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerStats:
        """Rebuild a snapshot from :meth:`to_dict` output (e.g. ``GET /stats``)."""
        return cls(requests=data["requests"], ok=data["ok"], faults=dict(data["faults"]),
                   completions_by_key=dict(data["completions_by_key"]))

    @property
    def repeated_completions(self) -> dict[str, int]:
        """Keys answered successfully more than once (empty when no completed call was repeated)."""
        return {key: count for key, count in self.completions_by_key.items() if count > 1}


def request_key(messages: list[dict]) -> str:
    """A stable short hash of a request's messages (the key of ``completions_by_key``)."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- ChatAdapter responder

_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_RESPOND = "Respond with the corresponding output fields"
# One requested field: `[[ ## name ## ]]` with an optional " (must be formatted as a valid Python T)".
_WANTED = re.compile(r"`\[\[ ## (\w+) ## \]\]`(?: \(must be formatted as a valid Python (.+?)\))?"
                     r"(?=, then |, and then ending|$)")


def message_text(message: dict) -> str:
    """The text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _output_field_types(messages: list[dict]) -> dict[str, str | None]:
    user = _last_user_text(messages)
    start = user.rfind(_RESPOND)
    if start < 0:
        return {}
    return {name: kind for name, kind in _WANTED.findall(user[start:]) if name != "completed"}


def parse_output_fields(messages: list[dict]) -> list[str]:
    """Output field names DSPy's ChatAdapter asks for in the last user message, in order."""
    return list(_output_field_types(messages))


def parse_input_fields(messages: list[dict]) -> dict[str, str]:
    """Input field values (``[[ ## name ## ]]`` sections) of the last user message."""
    user = _last_user_text(messages)
    start = user.rfind(_RESPOND)
    parts = _FIELD_HEADER.split(user[:start] if start >= 0 else user)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _typed_value(kind: str, text: str) -> str:
    """A value DSPy parses for an annotation named ``kind`` (e.g. ``int``, ``Literal['a', 'b']``)."""
    if kind.startswith("Literal["):
        return kind[len("Literal["):-1].split(", ")[0].strip("'\"")
    base = kind.split("[", 1)[0]
    simple = {"int": "1", "float": "0.5", "bool": "True", "dict": "{}"}
    if base in simple:
        return simple[base]
    if base in ("list", "tuple", "set"):
        return json.dumps([text])
    return text


def chat_adapter_responder(messages: list[dict], body: dict) -> str:
    """Deterministic answer in DSPy's ChatAdapter format to a ChatAdapter-formatted request.

    Each output field named in the last user message gets text derived from a hash of the input:
    ``evolved_instruction`` becomes "<instruction> Also explain each step and give two examples.";
    other fields a short sentence (or a parseable value for typed fields). Requests not in DSPy's
    format get a short deterministic echo.
    """
    digest = request_key(messages)[:8]
    wanted = _output_field_types(messages)
    if not wanted:
        words = _last_user_text(messages).split()
        return f"Echo {digest}: {' '.join(words[:12])}"
    inputs = parse_input_fields(messages)
    instruction = inputs.get("instruction", next(iter(inputs.values()), ""))
    sections = []
    for name, kind in wanted.items():
        if name == "evolved_instruction":
            text = f"{instruction} Also explain each step and give two examples."
        else:
            text = f"Deterministic {name.replace('_', ' ')} {digest}."
        sections.append(f"[[ ## {name} ## ]]\n{_typed_value(kind, text) if kind else text}")
    return "\n\n".join(sections) + "\n\n[[ ## completed ## ]]"


def _tokens(text: str) -> int:
    return round(len(text.split()) * 1.3)


# --------------------------------------------------------------------------- the server


class _Reply(Exception):
    """Raised inside a handler to answer with an error status and JSON body."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.close = status, close


class ErrorReply(Exception):
    """Raise from a responder to answer that request with an HTTP error (e.g. 401 for a bad key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FakeOpenAIServer:
    """An asyncio OpenAI-compatible chat server on a daemon thread (``start``/``stop`` or ``with``).

    ``responder(messages, body)`` returns the assistant text (default
    :func:`chat_adapter_responder`); every chat request waits ``latency`` seconds; ``faults``
    injects failures chosen by ``random.Random(seed)``. ``first_faults`` scripts the first chat
    requests instead: one fault kind (or ``None``, a normal answer) per request, in order, before
    the random plan applies (e.g. ``["rate_limit_429"]``: one 429, then answers).
    """

    def __init__(self, *, responder: Responder | None = None, latency: float = 0.0,
                 faults: FaultPlan | None = None, host: str = "127.0.0.1", port: int = 0,
                 seed: int = 0, first_faults: Sequence[str | None] = ()) -> None:
        unknown = [kind for kind in first_faults if kind is not None and kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
        self.responder = responder or chat_adapter_responder
        self.latency = latency
        self.faults = faults or FaultPlan()
        self._scripted = list(first_faults)
        self.host, self.port = host, port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stats = ServerStats()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()
        self._ids = 0

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Run the server on a daemon thread; return once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Close the listener and every open connection (hanging requests included)."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - reported to start()
            self._error = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, self.host, self.port,
                                            limit=_MAX_HEADER_BYTES)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---------------------------------------------------------------- stats

    @property
    def stats(self) -> ServerStats:
        """A consistent copy of the counters (safe to read from any thread)."""
        with self._lock:
            return ServerStats(self._stats.requests, self._stats.ok, dict(self._stats.faults),
                               dict(self._stats.completions_by_key))

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._stats = ServerStats()

    def _count_fault(self, kind: str) -> None:
        with self._lock:
            self._stats.faults[kind] = self._stats.faults.get(kind, 0) + 1

    # ---------------------------------------------------------------- HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether to keep the connection open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, {"error": {"message": "headers too large"}}, close=True)
            return False
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await self._send(writer, 400, {"error": {"message": "bad request line"}}, close=True)
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._send(writer, 411, {"error": {"message": "send Content-Length"}}, close=True)
            return False
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            await self._send(writer, 400, {"error": {"message": "bad Content-Length"}}, close=True)
            return False
        body = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0].rstrip("/")
        try:
            return await self._route(method, path, body, writer, keep)
        except _Reply as reply:
            await self._send(writer, reply.status, {"error": {"message": str(reply)}},
                             close=reply.close or not keep)
            return keep and not reply.close

    async def _send(self, writer: asyncio.StreamWriter, status: int, payload: Any, *,
                    close: bool = False, headers: dict[str, str] | None = None,
                    raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n{extra}\r\n")
        writer.write(head.encode() + data)
        await writer.drain()

    async def _route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter,
                     keep: bool) -> bool:
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            return await self._chat(body, writer, keep)
        if method == "GET" and path in ("/v1/models", "/models"):
            payload: Any = {"object": "list", "data": [
                {"id": "fake", "object": "model", "created": 0, "owned_by": "autoevol"}]}
        elif method == "GET" and path == "/stats":
            payload = self.stats.to_dict()
        elif method == "POST" and path == "/reset":
            self.reset()
            payload = {"reset": True}
        else:
            raise _Reply(404, f"no route for {method} {path}")
        await self._send(writer, 200, payload, close=not keep)
        return keep

    async def _chat(self, raw: bytes, writer: asyncio.StreamWriter, keep: bool) -> bool:
        with self._lock:
            self._stats.requests += 1
            fault = self._scripted.pop(0) if self._scripted else self.faults.choose(self._rng)
            garbage_json = self._rng.random() < 0.5
            self._ids += 1
            serial = self._ids
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages must be a list")
        except (ValueError, KeyError, TypeError) as error:
            self._count_fault("bad_request")
            raise _Reply(400, f"invalid request: {error}") from None
        if body.get("stream"):
            self._count_fault("bad_request")
            raise _Reply(400, "streaming is not supported")
        if fault == "timeout":
            self._count_fault(fault)
            await asyncio.sleep(self.faults.hang_seconds)
            return False
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "drop":
            self._count_fault(fault)
            return False
        if fault == "error_500":
            self._count_fault(fault)
            raise _Reply(500, "injected server error")
        if fault == "rate_limit_429":
            self._count_fault(fault)
            await self._send(writer, 429, {"error": {"message": "injected rate limit",
                                                     "type": "rate_limit_exceeded"}},
                             close=not keep, headers={"Retry-After": f"{self.faults.retry_after:g}"})
            return keep
        model = body.get("model", "fake")
        if fault == "garbage":
            self._count_fault(fault)
            if garbage_json:
                payload = {"id": f"chatcmpl-fake-{serial}", "object": "chat.completion",
                           "model": model}
                await self._send(writer, 200, payload, close=not keep)
            else:
                await self._send(writer, 200, None, close=not keep,
                                 raw=b"<html>502 upstream garbage {not json")
            return keep
        try:
            text = self.responder(messages, body)
        except ErrorReply as error:
            raise _Reply(error.status, str(error)) from None
        except Exception as error:  # noqa: BLE001 - a broken responder is reported, not fatal
            self._count_fault("responder_error")
            raise _Reply(500, f"responder failed: {error!r}") from None
        prompt = _tokens(" ".join(message_text(m) for m in messages if isinstance(m, dict)))
        completion = _tokens(text)
        payload = {
            "id": f"chatcmpl-fake-{serial}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }
        key = request_key(messages)
        with self._lock:  # counted before sending, so a client never sees an uncounted answer
            self._stats.ok += 1
            self._stats.completions_by_key[key] = self._stats.completions_by_key.get(key, 0) + 1
        await self._send(writer, 200, payload, close=not keep)
        return keep


# --------------------------------------------------------------------------- separate process


def load_responder(spec: str) -> Responder:
    """Import a responder given as ``"module:function"``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"responder must look like 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


class SubprocessServer:
    """Handle on a fake server running in another process (see :func:`serve_in_subprocess`)."""

    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process = process
        self.url = url
        self._root = url[: -len("/v1")]

    @property
    def pid(self) -> int:
        """The server process id."""
        return self.process.pid

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self._root + path, method=method,
                                         data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> ServerStats:
        """The server's counters, fetched over ``GET /stats``."""
        return ServerStats.from_dict(self._call("GET", "/stats"))

    def reset(self) -> None:
        """Zero the server's counters (``POST /reset``)."""
        self._call("POST", "/reset")

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds the server process used so far (Linux ``/proc``), else None."""
        try:
            with open(f"/proc/{self.pid}/stat") as handle:
                stat = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _cli_args(latency: float, faults: FaultPlan, responder: str | None, seed: int) -> list[str]:
    args = ["--port", "0", "--latency", repr(latency), "--seed", str(seed)]
    for spec in fields(FaultPlan):
        args += [f"--{spec.name.replace('_', '-')}", repr(getattr(faults, spec.name))]
    return args + (["--responder", responder] if responder else [])


@contextlib.contextmanager
def serve_in_subprocess(*, latency: float = 0.0, faults: FaultPlan | None = None,
                        responder: str | None = None, seed: int = 0,
                        startup_timeout: float = 120.0) -> Iterator[SubprocessServer]:
    """Run ``python -m autoevol.testing.fake_openai`` in a child process for the ``with`` block.

    ``responder`` is a ``"module:function"`` the child can import. The child is terminated (and
    killed if it lingers) on exit.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # the file itself, not ``-m``: the child imports the standard library only (not autoevol, DSPy...),
    # so it listens within a fraction of a second even on a loaded machine (``-P``: no script folder on the path)
    command = [sys.executable, "-P", os.path.abspath(__file__),
               *_cli_args(latency, faults or FaultPlan(), responder, seed)]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            url = _await_listening(process, startup_timeout)
            if url is None:
                stderr.seek(0)
                raise RuntimeError(f"fake server did not start: {stderr.read().decode()[-2000:]}")
            yield SubprocessServer(process, url)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            assert process.stdout is not None
            process.stdout.close()


def _await_listening(process: subprocess.Popen, timeout: float) -> str | None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], left)
        if not ready:
            break
        line = process.stdout.readline().decode().strip()
        if not line:  # EOF: the child died
            return None
        if line.startswith("LISTENING "):
            return line.split(" ", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: serve until SIGTERM/SIGINT, after printing the LISTENING line."""
    import signal

    parser = argparse.ArgumentParser(prog="python -m autoevol.testing.fake_openai",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--responder", "--script", metavar="MODULE:FUNC")
    for spec in fields(FaultPlan):
        parser.add_argument(f"--{spec.name.replace('_', '-')}", type=float, default=spec.default)
    args = parser.parse_args(argv)
    faults = FaultPlan(**{spec.name: getattr(args, spec.name) for spec in fields(FaultPlan)})
    responder = load_responder(args.responder) if args.responder else None
    server = FakeOpenAIServer(responder=responder, latency=args.latency, faults=faults,
                              host=args.host, port=args.port, seed=args.seed).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"LISTENING {server.url}", flush=True)
    while not stop.wait(3600):
        pass
    server.stop()


if __name__ == "__main__":
    main()
