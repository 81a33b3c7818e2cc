"""LM spec parsing."""

import pytest

from autoevol.lm import LMSpecError, parse_spec


@pytest.mark.parametrize("spec", ["openai/gpt-4o-mini", "hosted_vllm/Qwen/Qwen2.5-7B", "ollama_chat/llama3"])
def test_model_strings_pass_through(spec):
    parsed = parse_spec(spec)
    assert parsed.model == spec and not parsed.is_local and parsed.display_name == spec


@pytest.mark.parametrize("spec", ["gpt-4o", "openai/", "/model", ""])
def test_bad_specs_name_the_spec(spec):
    with pytest.raises(LMSpecError, match="LM spec"):
        parse_spec(spec)


def test_local_path_must_exist(tmp_path):
    with pytest.raises(LMSpecError, match="GGUF file not found"):
        parse_spec(f"local:{tmp_path / 'missing.gguf'}")
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    parsed = parse_spec(f"local:{model}")
    assert parsed.is_local and parsed.display_name == "local:tiny.gguf"
