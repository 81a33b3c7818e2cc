"""The fake server's HTTP transport: an asyncio HTTP/1.1 server answering OpenAI chat completions.

It applies the fault plan to each chat request and asks the responder for the answer text.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from autoevol.testing.fake_openai.faults import (
    FAULT_KINDS,
    FaultPlan,
    ServerStats,
    request_key,
)
from autoevol.testing.fake_openai.responders import (
    ErrorReply,
    Responder,
    chat_adapter_responder,
    message_text,
)

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required",
            429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}
_MAX_HEADER_BYTES = 1 << 20


def _tokens(text: str) -> int:
    return round(len(text.split()) * 1.3)


# --------------------------------------------------------------------------- the server


class _Reply(Exception):
    """Raised inside a handler to answer with an error status and JSON body."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.close = status, close


class FakeOpenAIServer:
    """An asyncio OpenAI-compatible chat server on a daemon thread (``start``/``stop`` or ``with``).

    ``responder(messages, body)`` returns the assistant text (default
    :func:`chat_adapter_responder`); every chat request waits ``latency`` seconds; ``faults``
    injects failures chosen by ``random.Random(seed)``. ``first_faults`` scripts the first chat
    requests instead: one fault kind (or ``None``, a normal answer) per request, in order, before
    the random plan applies (e.g. ``["rate_limit_429"]``: one 429, then answers). With
    ``report_usage=False`` answers carry no ``usage`` object, as some self-hosted servers send them.
    """

    def __init__(self, *, responder: Responder | None = None, latency: float = 0.0,
                 faults: FaultPlan | None = None, host: str = "127.0.0.1", port: int = 0,
                 seed: int = 0, first_faults: Sequence[str | None] = (), report_usage: bool = True) -> None:
        unknown = [kind for kind in first_faults if kind is not None and kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
        self.responder = responder or chat_adapter_responder
        self.latency = latency
        self.report_usage = report_usage
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
        }
        if self.report_usage:
            payload["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                "total_tokens": prompt + completion}
        key = request_key(messages)
        with self._lock:  # counted before sending, so a client never sees an uncounted answer
            self._stats.ok += 1
            self._stats.completions_by_key[key] = self._stats.completions_by_key.get(key, 0) + 1
        await self._send(writer, 200, payload, close=not keep)
        return keep
