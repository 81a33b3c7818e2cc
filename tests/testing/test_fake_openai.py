"""Tests for the fake OpenAI-compatible server (autoevol.testing.fake_openai)."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import pytest

from autoevol.testing.fake_openai import (
    FakeOpenAIServer,
    FaultPlan,
    chat_adapter_responder,
    parse_input_fields,
    parse_output_fields,
    request_key,
    serve_in_subprocess,
)

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the world"}]


def connect(url: str, timeout: float = 10.0) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def call(conn: http.client.HTTPConnection, method: str, path: str,
         payload: dict | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
    body = json.dumps(payload).encode() if payload is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response, response.read()


def chat(conn: http.client.HTTPConnection, messages: list[dict] = MESSAGES,
         **extra: object) -> tuple[int, http.client.HTTPResponse, bytes]:
    return call(conn, "POST", "/v1/chat/completions", {"model": "m1", "messages": messages, **extra})


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


def faulty(**plan: float) -> FakeOpenAIServer:
    return FakeOpenAIServer(faults=FaultPlan(**plan), seed=1)


#: Bound on waiting for something the test set in motion; reached only when it never happens.
GUARD_SECONDS = 120.0


def wait_for(condition: Callable[[], bool], timeout: float = GUARD_SECONDS) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def stopped(server: FakeOpenAIServer) -> bool:
    """Whether ``server.stop()`` returned within ``GUARD_SECONDS`` (it goes on in the background if not)."""
    stopping = threading.Thread(target=server.stop, daemon=True)
    stopping.start()
    stopping.join(GUARD_SECONDS)
    return not stopping.is_alive()


def catch(call: Callable[[], object]) -> BaseException | None:
    """The exception ``call`` raised, or None."""
    try:
        call()
    except BaseException as error:  # handed to the caller
        return error
    return None


def spin(seconds: float) -> None:
    """Use ``seconds`` of this process's CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_normal_completion(server: FakeOpenAIServer) -> None:
    conn = connect(server.url)
    status, _, raw = chat(conn)
    data = json.loads(raw)
    assert status == 200
    assert data["object"] == "chat.completion" and data["model"] == "m1"
    assert data["choices"][0]["message"]["role"] == "assistant"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["choices"][0]["message"]["content"] == chat_adapter_responder(MESSAGES, {})
    usage = data["usage"]
    assert usage["prompt_tokens"] == round(8 * 1.3)  # 8 words in MESSAGES
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Keep-alive: the same connection serves a second request identically.
    assert json.loads(chat(conn)[2])["choices"] == data["choices"]


def test_other_routes(server: FakeOpenAIServer) -> None:
    conn = connect(server.url)
    status, _, raw = call(conn, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(raw)["data"]] == ["fake"]
    status, _, raw = call(conn, "GET", "/nope")
    assert status == 404 and "error" in json.loads(raw)
    assert chat(conn, stream=True)[0] == 400
    assert server.stats.requests == 1 and server.stats.ok == 0


def test_latency_is_honoured() -> None:
    with FakeOpenAIServer(latency=0.2) as slow:
        conn = connect(slow.url)
        start = time.monotonic()
        assert chat(conn)[0] == 200
        assert time.monotonic() - start >= 0.2


def test_latency_overlaps_across_connections() -> None:
    """Requests on separate connections wait out their latency side by side, not one after the other."""
    latency, connections = 2.0, 32
    with FakeOpenAIServer(latency=latency) as slow:
        def client() -> None:
            assert chat(connect(slow.url, timeout=GUARD_SECONDS))[0] == 200

        threads = [threading.Thread(target=client) for _ in range(connections)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        assert slow.stats.ok == connections
    # one at a time, 32 requests wait 64 s; side by side about 2 s. Half the serial time leaves 30 s for
    # 32 loopback requests, more than a loaded machine needs by orders of magnitude.
    assert latency <= elapsed < connections * latency / 2


def test_error_500() -> None:
    with faulty(error_500=1.0) as fake:
        status, _, raw = chat(connect(fake.url))
        assert status == 500 and "error" in json.loads(raw)
        assert fake.stats.faults == {"error_500": 1} and fake.stats.ok == 0


def test_rate_limit_429_has_retry_after() -> None:
    with FakeOpenAIServer(faults=FaultPlan(rate_limit_429=1.0, retry_after=2)) as fake:
        status, response, _ = chat(connect(fake.url))
        assert status == 429 and response.getheader("Retry-After") == "2"
        assert fake.stats.faults == {"rate_limit_429": 1}


def test_first_faults_script_the_first_requests_then_the_plan_applies() -> None:
    with FakeOpenAIServer(first_faults=["rate_limit_429", None, "error_500"], faults=FaultPlan(retry_after=3)) as fake:
        conn = connect(fake.url)
        first = chat(conn)
        assert first[0] == 429 and first[1].getheader("Retry-After") == "3"
        assert [chat(conn)[0] for _ in range(4)] == [200, 500, 200, 200]
        assert fake.stats.faults == {"rate_limit_429": 1, "error_500": 1} and fake.stats.ok == 3
    with pytest.raises(ValueError, match="unknown fault"):
        FakeOpenAIServer(first_faults=["teapot"])


def test_dropped_connection() -> None:
    with faulty(drop=1.0) as fake:
        with pytest.raises(ConnectionError):
            chat(connect(fake.url))
        assert fake.stats.faults == {"drop": 1}


def test_garbage_bodies() -> None:
    with faulty(garbage=1.0) as fake:
        conn = connect(fake.url)
        kinds = set()
        for _ in range(20):
            status, _, raw = chat(conn)
            assert status == 200
            try:
                data = json.loads(raw)
            except ValueError:
                kinds.add("not json")
            else:
                assert "choices" not in data
                kinds.add("no choices")
        assert kinds == {"not json", "no choices"}
        assert fake.stats.faults == {"garbage": 20} and fake.stats.ok == 0


def test_timeout_hangs_past_client_timeout() -> None:
    hang = 3600.0
    fake = FakeOpenAIServer(faults=FaultPlan(timeout=1.0, hang_seconds=hang)).start()
    try:
        with pytest.raises(TimeoutError):  # the client gave up: the server neither answered nor closed
            chat(connect(fake.url, timeout=0.5))
        assert fake.stats.faults == {"timeout": 1} and fake.stats.ok == 0
        waiting = connect(fake.url, timeout=hang)
        outcome: list[BaseException] = []
        client = threading.Thread(target=lambda: outcome.append(catch(lambda: chat(waiting))), daemon=True)
        client.start()
        assert wait_for(lambda: fake.stats.faults == {"timeout": 2})  # a second request hangs, its client waiting
    finally:
        # without cancelling the hanging requests, stop() would wait for the rest of their hour
        assert stopped(fake), "stop() waited for the hanging requests"
    client.join(GUARD_SECONDS)
    assert len(outcome) == 1 and isinstance(outcome[0], (ConnectionError, http.client.HTTPException)), outcome


def test_fault_rates_are_approximately_respected() -> None:
    with FakeOpenAIServer(faults=FaultPlan(error_500=0.3, rate_limit_429=0.1), seed=7) as fake:
        conn = connect(fake.url)
        statuses = [chat(conn)[0] for _ in range(300)]
        assert 0.2 <= statuses.count(500) / 300 <= 0.4
        assert 0.05 <= statuses.count(429) / 300 <= 0.15
        stats = fake.stats
        assert stats.requests == 300 and stats.ok == statuses.count(200)
        assert stats.faults == {"error_500": statuses.count(500), "rate_limit_429": statuses.count(429)}


def test_fault_plan_validation() -> None:
    with pytest.raises(ValueError):
        FaultPlan(error_500=1.5)
    with pytest.raises(ValueError):
        FaultPlan(error_500=0.6, drop=0.6)
    with pytest.raises(ValueError):
        FaultPlan(garbage=-0.1)


def test_counters_reset_and_repeats(server: FakeOpenAIServer) -> None:
    conn = connect(server.url)
    other = [{"role": "user", "content": "something else"}]
    for messages in (MESSAGES, MESSAGES, other):
        assert chat(conn, messages)[0] == 200
    stats = server.stats
    assert stats.requests == 3 and stats.ok == 3
    assert stats.completions_by_key == {request_key(MESSAGES): 2, request_key(other): 1}
    assert stats.repeated_completions == {request_key(MESSAGES): 2}
    status, _, raw = call(conn, "GET", "/stats")
    assert status == 200 and json.loads(raw) == stats.to_dict()
    assert call(conn, "POST", "/reset")[0] == 200
    assert server.stats.requests == 0 and server.stats.completions_by_key == {}


def test_custom_responder() -> None:
    def shout(messages: list[dict], body: dict) -> str:
        return messages[-1]["content"].upper() + f" ({body['model']})"

    with FakeOpenAIServer(responder=shout) as fake:
        data = json.loads(chat(connect(fake.url))[2])
        assert data["choices"][0]["message"]["content"] == "SAY HELLO TO THE WORLD (m1)"


def test_parse_helpers_on_chat_adapter_messages() -> None:
    dspy = pytest.importorskip("dspy")
    signature = dspy.Signature("instruction, context -> working_notes, evolved_instruction, score: int")
    messages = dspy.ChatAdapter().format(signature, demos=[],
                                         inputs={"instruction": "Add 2 and 3.", "context": "math"})
    assert parse_output_fields(messages) == ["working_notes", "evolved_instruction", "score"]
    assert parse_input_fields(messages) == {"instruction": "Add 2 and 3.", "context": "math"}
    parsed = dspy.ChatAdapter().parse(signature, chat_adapter_responder(messages, {}))
    assert parsed["evolved_instruction"] == "Add 2 and 3. Also explain each step and give two examples."
    assert isinstance(parsed["score"], int)


def test_dspy_end_to_end(server: FakeOpenAIServer) -> None:
    dspy = pytest.importorskip("dspy")
    lm = dspy.LM("openai/fake", api_base=server.url, api_key="x", cache=False, num_retries=0)
    with dspy.context(lm=lm):
        result = dspy.Predict("instruction -> evolved_instruction")(instruction="Add 2 and 3.")
    assert result.evolved_instruction == "Add 2 and 3. Also explain each step and give two examples."
    assert server.stats.ok == 1


def test_subprocess_server() -> None:
    responder = "autoevol.testing.fake_openai:chat_adapter_responder"
    plan = FaultPlan(error_500=0.5)
    with serve_in_subprocess(latency=0.01, faults=plan, responder=responder, seed=3) as fake:
        pid = fake.pid
        conn = connect(fake.url)
        statuses = [chat(conn)[0] for _ in range(20)]
        assert set(statuses) == {200, 500}  # the fault plan reached the child
        stats = fake.stats()
        assert stats.requests == 20 and stats.ok == statuses.count(200)
        assert stats.faults == {"error_500": statuses.count(500)}
        assert stats.completions_by_key == {request_key(MESSAGES): stats.ok}
        fake.reset()
        assert fake.stats().requests == 0
        used = fake.cpu_seconds()
        assert used is not None and used > 0  # the child's start-up alone costs CPU time: reset() keeps it
        spin(0.5)  # CPU time of this process is not the child's
        assert fake.cpu_seconds() < used + 0.5
        answered = 0
        while fake.cpu_seconds() == used and answered < 100_000:  # the child's work adds up
            chat(conn)
            answered += 1
        assert fake.cpu_seconds() > used, f"{answered} answers cost the child no CPU time"
        conn.close()
    with pytest.raises(ProcessLookupError):  # terminated and reaped
        os.kill(pid, 0)
