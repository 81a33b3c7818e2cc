"""What the benchmark scripts' tests share: a fake endpoint whose verdicts are known."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autoevol.testing.fake_openai import FakeOpenAIServer, chat_adapter_responder, parse_output_fields
from tests.test_cli_compile_gepa import World


class VerdictWorld(World):
    """The GEPA world (the CAREFUL method fails 1 item in 10, e_0 6 in 10); Auto Evol-Instruct's
    analysis and proposals get the deterministic default replies, which change nothing."""

    def __call__(self, messages: list[dict], body: dict) -> str:
        wanted = parse_output_fields(messages)
        if wanted and "evolved_instruction" not in wanted and "verdict" not in wanted:
            return chat_adapter_responder(messages, body)
        return super().__call__(messages, body)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI-compatible endpoint serving :class:`VerdictWorld`."""
    with FakeOpenAIServer(responder=VerdictWorld()) as running:
        yield running
