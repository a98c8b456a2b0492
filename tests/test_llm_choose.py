"""ANNAPURNA_LLM=auto|bedrock|anthropic|offline and what `auto` picks from the credentials present."""

from __future__ import annotations

import logging

import pytest

from annapurna_resources.llm.choose import build_llm, choose_backend
from annapurna_resources.llm.claude import ClaudeLLM


@pytest.mark.parametrize(
    ("env", "backend", "why"),
    [
        ({}, "offline", "no AWS region, no AWS credentials"),
        ({"ANTHROPIC_API_KEY": "sk-x"}, "anthropic", "ANTHROPIC_API_KEY is set"),
        # The API key wins over AWS credentials: it is the more specific sign of intent.
        ({"ANTHROPIC_API_KEY": "sk-x", "AWS_ACCESS_KEY_ID": "AK", "AWS_REGION": "us-east-1",
          "BEDROCK_MODEL_ID": "m"}, "anthropic", "ANTHROPIC_API_KEY"),
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_REGION": "us-east-1", "BEDROCK_MODEL_ID": "m"}, "bedrock",
         "AWS credentials and region us-east-1"),
        ({"AWS_BEARER_TOKEN_BEDROCK": "tok", "AWS_DEFAULT_REGION": "eu-west-1"}, "bedrock",
         "AWS_BEARER_TOKEN_BEDROCK and region eu-west-1"),
        ({"ANNAPURNA_PROFILE": "aws", "AWS_REGION": "us-west-2"}, "bedrock", "instance role"),
        # Credentials for S3 alone are not a reason to spend money on Bedrock.
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_REGION": "us-east-1"}, "offline", "no BEDROCK_MODEL_ID"),
        ({"AWS_ACCESS_KEY_ID": "AK", "BEDROCK_MODEL_ID": "m"}, "offline", "no AWS region"),
        ({"ANTHROPIC_API_KEY": "  "}, "offline", "no ANTHROPIC_API_KEY"),
    ],
)
def test_auto_picks_from_credentials(env: dict[str, str], backend: str, why: str) -> None:
    chosen, reason = choose_backend(env)
    assert chosen == backend
    assert why in reason


def test_explicit_choice_overrides_auto_and_checks_its_needs() -> None:
    assert choose_backend({"ANNAPURNA_LLM": "offline", "ANTHROPIC_API_KEY": "sk"})[0] == "offline"
    assert choose_backend({"ANNAPURNA_LLM": "Bedrock", "AWS_REGION": "us-east-1"})[0] == "bedrock"
    with pytest.raises(ValueError, match="needs ANTHROPIC_API_KEY"):
        choose_backend({"ANNAPURNA_LLM": "anthropic"})
    with pytest.raises(ValueError, match="needs AWS_REGION"):
        choose_backend({"ANNAPURNA_LLM": "bedrock"})
    with pytest.raises(ValueError, match="must be one of"):
        choose_backend({"ANNAPURNA_LLM": "gpt"})


def test_build_llm_configures_claude_and_logs_the_choice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"ANNAPURNA_LLM": "auto", "ANTHROPIC_API_KEY": "sk-local", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
           "ANNAPURNA_CODE_MODEL": "claude-opus-4-6"}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-local")
    with caplog.at_level(logging.INFO, logger="annapurna_resources.llm.choose"):
        llm = build_llm(env)
    assert isinstance(llm, ClaudeLLM) and llm.backend == "anthropic"
    assert llm.base_url == "http://127.0.0.1:9" and llm.code_model == "claude-opus-4-6"
    assert llm.judge_model.startswith("claude-haiku")
    assert "LLM backend: anthropic (auto: ANTHROPIC_API_KEY is set)" in caplog.text
    # The key travels as an EnvVar (resolved by Dagster or at first use), never as a literal in config.
    assert llm.client().api_key == "sk-local"

    bedrock = build_llm({"ANNAPURNA_LLM": "bedrock", "AWS_REGION": "ap-northeast-1"})
    assert isinstance(bedrock, ClaudeLLM) and bedrock.backend == "bedrock" and bedrock.aws_region == "ap-northeast-1"


def test_build_llm_offline_is_the_baseline() -> None:
    offline = pytest.importorskip("annapurna_resources.llm.offline")
    llm = build_llm({"ANNAPURNA_LLM": "offline"})
    assert isinstance(llm, offline.OfflineLLM)
