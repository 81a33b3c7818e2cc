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

The parts: ``faults`` (the fault plan and the counters), ``responders`` (what the server answers),
``server`` (the HTTP transport) and ``process`` (the server in a child process). They import the
standard library only, so the child process starts without importing autoevol or DSPy.
"""

from autoevol.testing.fake_openai.faults import (
    FAULT_KINDS,
    FaultPlan,
    ServerStats,
    request_key,
)
from autoevol.testing.fake_openai.process import (
    SubprocessServer,
    main,
    serve_in_subprocess,
)
from autoevol.testing.fake_openai.responders import (
    ErrorReply,
    Responder,
    chat_adapter_responder,
    load_responder,
    message_text,
    parse_input_fields,
    parse_output_fields,
)
from autoevol.testing.fake_openai.server import FakeOpenAIServer

__all__ = [
    "FAULT_KINDS", "ErrorReply", "FakeOpenAIServer", "FaultPlan", "Responder", "ServerStats", "SubprocessServer",
    "chat_adapter_responder", "load_responder", "main", "message_text", "parse_input_fields", "parse_output_fields",
    "request_key", "serve_in_subprocess",
]
