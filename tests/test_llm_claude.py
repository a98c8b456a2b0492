"""ClaudeLLM through the real `anthropic` client (plain and Bedrock) against a local Messages API."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest

from annapurna_resources.llm import Judgment, PaperForLLM, ProgramFeedback
from annapurna_resources.llm import claude_prompts as prompts
from annapurna_resources.llm.claude import (
    ANTHROPIC_CODE_MODEL,
    ANTHROPIC_JUDGE_MODEL,
    AnswerError,
    ApiCallFailed,
    ClaudeLLM,
    extract_program,
    parse_judgment,
    retry_delay_s,
)
from annapurna_resources.llm.pricing import usage_cost_usd, usage_from_response
from annapurna_resources.llm.prompts import PROGRAM_CONTRACT
from tests.anthropic_server import (
    MessagesServer,
    error_reply,
    fenced,
    json_reply,
    text_reply,
    tool_use_reply,
)
from tests.http_replay import Reply

PAPER = PaperForLLM(
    paper_id="arxiv-2501.00001",
    title="Gated Residual Normalization for Small Vision Transformers",
    authors=["A. Author", "B. Author"],
    abstract="We propose gated residual normalization, a drop-in replacement for LayerNorm ...",
    text_excerpt="1 Introduction. Normalization layers ...",
    venue="arxiv",
    year=2025,
)
SIMILAR = [PaperForLLM(paper_id="iclr-1", title="Root Mean Square Layer Normalization", abstract="RMSNorm ...")]
FOCUS = "Normalization layers and optimizers that train at small scale."
GOOD = {
    "relevant": True,
    "relevance": 0.9,
    "novelty": 0.6,
    "task_family": "image_classification",
    "dataset": "cifar10",
    "reasons": "A new normalization layer; trains on CIFAR-10 in minutes; differs from RMSNorm by a gate.",
}
PROGRAM = """\
import json

from annapurna_device import get_device, step_sync, time_budget_s
from dataset_loader import load_dataset

train, test, info = load_dataset("cifar10", batch_size=64)
print("METRICS: " + json.dumps({"step": 0, "loss": 1.0}))
"""


def fast_llm(server: MessagesServer, **kw: Any) -> ClaudeLLM:
    return ClaudeLLM(
        backend="anthropic", api_key="sk-test", base_url=server.url, retry_initial_delay_s=0.01, **kw
    )


@pytest.fixture
def api():
    with MessagesServer() as server:
        yield server


# ---- parsing of recorded bodies ---------------------------------------------------------------


def _recorded(shared_fixtures: Path, name: str) -> dict[str, Any]:
    return json.loads((shared_fixtures / "anthropic" / name).read_text())


def test_recorded_tool_use_bodies_parse_through_the_sdk_model(shared_fixtures: Path) -> None:
    body = _recorded(shared_fixtures, "messages_response_text_and_tool_use.json")
    message = anthropic.types.Message.model_validate(body)
    # The recorded call is to another tool: the judge must say so rather than accept it.
    with pytest.raises(AnswerError, match=r"no `record_judgment` tool call.*get_weather"):
        parse_judgment(message)
    # Read as if it were the judge's tool, the recorded input fails the schema, field by field.
    with pytest.raises(AnswerError, match=r"relevant: Field required.*reasons: Field required"):
        parse_judgment(message, tool_name="get_weather")
    # The same recorded answer with a judgment as its input is accepted.
    body["content"][1] = {**body["content"][1], "name": "record_judgment", "input": GOOD}
    assert parse_judgment(anthropic.types.Message.model_validate(body)) == Judgment(**GOOD)

    long_body = _recorded(shared_fixtures, "messages_response_long_text_and_tool_use.json")
    long_body["content"][1]["name"] = "record_judgment"
    long_body["content"][1]["input"] = {**GOOD, "reasons": long_body["content"][1]["input"]["summary"]}
    judged = parse_judgment(anthropic.types.Message.model_validate(long_body))
    assert judged.reasons.startswith("This comprehensive essay")


def test_recorded_text_answer_has_no_program_and_no_judgment(shared_fixtures: Path) -> None:
    body = _recorded(shared_fixtures, "messages_response_text_end_turn.json")
    with pytest.raises(AnswerError, match="no ```python fenced block"):
        extract_program(body)
    with pytest.raises(AnswerError, match="no `record_judgment` tool call"):
        parse_judgment(body)


def test_parse_judgment_rejects_each_kind_of_bad_answer() -> None:
    def msg(input_: Any, stop: str = "tool_use") -> dict[str, Any]:
        return {"content": [{"type": "tool_use", "id": "t", "name": "record_judgment", "input": input_}],
                "stop_reason": stop}

    assert parse_judgment(msg(json.dumps(GOOD))).dataset == "cifar10"  # input passed on as a JSON string
    with pytest.raises(AnswerError, match="not valid JSON"):
        parse_judgment(msg('{"relevant": true, "relevance": 0.'))
    with pytest.raises(AnswerError, match="relevance: Input should be less than or equal to 1"):
        parse_judgment(msg({**GOOD, "relevance": 1.7}))
    with pytest.raises(AnswerError, match="dataset: Input should be"):
        parse_judgment(msg({**GOOD, "dataset": "imagenet"}))
    with pytest.raises(AnswerError, match="cut off at max_tokens"):
        parse_judgment(msg(GOOD, stop="max_tokens"))
    with pytest.raises(AnswerError, match="refused"):
        parse_judgment({"content": [], "stop_reason": "refusal"})


def test_extract_program_takes_the_longest_fenced_block_and_rejects_truncation() -> None:
    text = "Setup:\n```bash\npip install nothing\n```\n" + fenced(PROGRAM) + "\n```python\nx = 1\n```"
    assert extract_program({"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}) == PROGRAM
    with pytest.raises(AnswerError, match="max_tokens"):
        extract_program({"content": [{"type": "text", "text": "```python\nimport js"}], "stop_reason": "max_tokens"})


# ---- cost accounting ---------------------------------------------------------------------------


def test_cost_from_recorded_bedrock_usage(shared_fixtures: Path) -> None:
    body = _recorded(shared_fixtures, "bedrock_invoke_response_text.json")
    usage = usage_from_response("eu.anthropic.claude-haiku-4-5-20251001-v1:0", body["usage"])
    assert (usage.input_tokens, usage.output_tokens) == (3, 44)
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (1956, 9511)
    # Haiku 4.5: $1 in / $5 out per MTok; cache write 1.25x, read 0.1x the input price.
    expected = (3 * 1.0 + 1956 * 1.25 + 9511 * 0.1 + 44 * 5.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected, rel=1e-12)
    # The same figures through the SDK's Usage object, as ClaudeLLM sees them.
    sdk_usage = anthropic.types.Message.model_validate(body).usage
    assert usage_from_response("claude-haiku-4-5-20251001", sdk_usage).cost_usd == pytest.approx(expected)


def test_one_hour_cache_writes_cost_double() -> None:
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 1000,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000}}
    assert usage_from_response("claude-sonnet-4-5", usage).cost_usd == pytest.approx(1000 * 3.0 * 2 / 1e6)


def test_unknown_model_is_not_priced_as_free() -> None:
    assert usage_cost_usd("some-new-model", 1_000_000, 0) >= 3.0


# ---- judging through the real client -----------------------------------------------------------


def test_judge_sends_forced_tool_cached_system_and_records_usage(api: MessagesServer) -> None:
    usage = {"input_tokens": 1200, "output_tokens": 150, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 900}
    api.enqueue(tool_use_reply("record_judgment", GOOD, model=ANTHROPIC_JUDGE_MODEL, usage=usage))
    result = fast_llm(api).judge_paper(PAPER, SIMILAR, FOCUS)

    assert result.status == "judged" and result.judgment == Judgment(**GOOD)
    assert result.usage.model == ANTHROPIC_JUDGE_MODEL
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.cache_read_tokens) == (1200, 150, 900)
    assert result.usage.cost_usd == pytest.approx((1200 * 1.0 + 900 * 0.1 + 150 * 5.0) / 1e6)
    assert result.usage.calls == 1

    (call,) = api.calls
    assert "sk-test" in (call.headers.get("x-api-key", "") + call.headers.get("authorization", ""))
    assert call.body["model"] == ANTHROPIC_JUDGE_MODEL
    assert call.body["tool_choice"] == {"type": "tool", "name": "record_judgment"}
    assert call.body["tools"][0]["input_schema"]["properties"]["dataset"]["enum"][0] == "cifar10"
    assert call.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert FOCUS in call.system_text and PAPER.title not in call.system_text  # per-paper text after the breakpoint
    assert PAPER.title in call.user_text and "Root Mean Square Layer Normalization" in call.user_text


def test_invalid_tool_input_is_sent_back_as_a_tool_error_and_fixed(api: MessagesServer) -> None:
    api.enqueue(
        tool_use_reply("record_judgment", {**GOOD, "relevance": 1.7, "reasons": ""}),
        tool_use_reply("record_judgment", GOOD),
    )
    result = fast_llm(api).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judged" and result.usage.calls == 2
    retry = api.calls[1].body["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert retry[1]["content"][0]["input"]["relevance"] == 1.7
    tool_result = retry[2]["content"][0]
    assert tool_result["type"] == "tool_result" and tool_result["is_error"] is True
    assert tool_result["tool_use_id"] == retry[1]["content"][0]["id"]
    assert "relevance: Input should be less than or equal to 1" in tool_result["content"]
    assert "reasons: String should have at least 1 character" in tool_result["content"]


@pytest.mark.parametrize(
    ("first", "expected_note"),
    [
        (lambda: text_reply("", stop_reason="refusal"), "refused"),
        (lambda: tool_use_reply("record_judgment", {"relevant": True}, stop_reason="max_tokens"), "max_tokens"),
        (lambda: text_reply("I think it is relevant."), "no `record_judgment` tool call"),
        (lambda: tool_use_reply("record_judgment", '{"relevant": tr'), "not valid JSON"),
    ],
    ids=["refusal", "max_tokens", "no_tool_use", "malformed_json"],
)
def test_unusable_answer_is_retried_once_with_the_reason(api: MessagesServer, first: Any, expected_note: str) -> None:
    api.enqueue(first(), tool_use_reply("record_judgment", GOOD))
    result = fast_llm(api).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judged" and len(api.calls) == 2
    assert expected_note in api.calls[1].user_text
    assert expected_note not in api.calls[0].user_text


def test_answer_that_never_validates_is_judge_error(api: MessagesServer) -> None:
    api.enqueue(tool_use_reply("record_judgment", {"relevant": "maybe"}), text_reply("no"), text_reply("never asked"))
    result = fast_llm(api).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judge_error" and result.judgment is None
    assert "no `record_judgment` tool call" in (result.error or "")
    assert len(api.calls) == 2  # one retry, then it gives up
    assert result.usage.calls == 2 and result.usage.output_tokens > 0  # tokens of failed answers still count


def test_429_and_529_are_retried_with_backoff(api: MessagesServer, shared_fixtures: Path) -> None:
    rate_limited = _recorded(shared_fixtures, "error_429_rate_limit_error.json")
    overloaded = _recorded(shared_fixtures, "error_529_overloaded_error.json")
    api.enqueue(
        json_reply(rate_limited, status=429),
        json_reply(overloaded, status=529, headers={"retry-after-ms": "20"}),
        tool_use_reply("record_judgment", GOOD),
    )
    result = fast_llm(api).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judged" and len(api.calls) == 3
    assert result.usage.calls == 1  # failed HTTP attempts bill nothing


def test_retries_give_up_and_the_paper_gets_judge_error(api: MessagesServer) -> None:
    api.enqueue(*[error_reply(529, "overloaded_error", "Overloaded") for _ in range(3)])
    result = fast_llm(api, max_retries=2).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judge_error" and "HTTP 529" in (result.error or "")
    assert len(api.calls) == 3


def test_x_should_retry_header_overrides_the_status(api: MessagesServer) -> None:
    api.enqueue(error_reply(503, "api_error", "down for good", headers={"x-should-retry": "false"}))
    assert fast_llm(api).judge_paper(PAPER, [], FOCUS).status == "judge_error" and len(api.calls) == 1
    api.enqueue(error_reply(400, "invalid_request_error", "try again", headers={"x-should-retry": "true"}),
                tool_use_reply("record_judgment", GOOD))
    assert fast_llm(api).judge_paper(PAPER, [], FOCUS).status == "judged" and len(api.calls) == 3


def test_bad_request_is_not_retried(api: MessagesServer, shared_fixtures: Path) -> None:
    api.enqueue(json_reply(_recorded(shared_fixtures, "error_400_invalid_request_error.json"), status=400))
    result = fast_llm(api).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judge_error" and "HTTP 400" in (result.error or "")
    assert "tool_use_id" in (result.error or "") and len(api.calls) == 1


def test_timeout_is_retried() -> None:
    answers = iter([0.8, 0.0])

    def slow_then_fast(call: Any) -> Reply:
        time.sleep(next(answers))
        return tool_use_reply("record_judgment", GOOD)

    with MessagesServer(responder=slow_then_fast) as api:
        result = fast_llm(api, request_timeout_s=0.3).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judged" and len(api.calls) == 2


def test_garbled_200_body_is_an_invalid_answer_not_a_crash(api: MessagesServer) -> None:
    api.enqueue(Reply(200, {"Content-Type": "application/json"}, b'{"type": "message", "content": [{"ty'),
                tool_use_reply("record_judgment", GOOD))
    result = fast_llm(api).judge_paper(PAPER, [], FOCUS)
    assert result.status == "judged" and len(api.calls) == 2


def test_retry_delay_honours_the_server_then_backs_off() -> None:
    assert retry_delay_s(0, 1.0, 30.0, {"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert retry_delay_s(0, 1.0, 30.0, {"retry-after": "3"}) == pytest.approx(3.0)
    assert retry_delay_s(0, 1.0, 30.0, {"retry-after": "86400"}) == 60.0  # capped
    delays = [retry_delay_s(n, 1.0, 30.0) for n in range(7)]
    assert 0.75 <= delays[0] <= 1.0 and 3.0 <= delays[2] <= 4.0 and delays[6] <= 30.0


# ---- code generation ---------------------------------------------------------------------------


def test_write_program_extracts_the_fenced_program_with_the_contract_cached(api: MessagesServer) -> None:
    api.enqueue(text_reply(fenced(PROGRAM)))
    draft = fast_llm(api).write_program(PAPER, Judgment(**GOOD))
    assert draft.code == PROGRAM and draft.usage.model == ANTHROPIC_CODE_MODEL
    (call,) = api.calls
    assert call.body["model"] == ANTHROPIC_CODE_MODEL and "tools" not in call.body
    assert PROGRAM_CONTRACT in call.system_text
    assert call.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "Dataset to use: cifar10" in call.user_text and "previous version" not in call.user_text
    ast.parse(prompts.EXAMPLE_PROGRAM)  # the illustration in the prompt is itself valid Python


def test_repair_prompt_carries_previous_code_findings_and_error_tail(api: MessagesServer) -> None:
    api.enqueue(text_reply(fenced(PROGRAM)))
    feedback = ProgramFeedback(
        previous_code="import torch\nx = torch.dot(a, b)\n",
        findings=["line 2: undefined name 'a'"],
        error_tail="Traceback (most recent call last):\nNameError: name 'a' is not defined",
    )
    fast_llm(api).write_program(PAPER, Judgment(**GOOD), feedback)
    text = api.calls[0].user_text
    assert "x = torch.dot(a, b)" in text and "line 2: undefined name 'a'" in text
    assert "NameError: name 'a' is not defined" in text


def test_truncated_program_is_asked_again_then_gives_a_stub_that_cannot_pass(api: MessagesServer) -> None:
    api.enqueue(text_reply("```python\nimport torch\nfor", stop_reason="max_tokens"), text_reply(fenced(PROGRAM)))
    assert fast_llm(api).write_program(PAPER, Judgment(**GOOD)).code == PROGRAM
    assert "cut off at max_tokens" in api.calls[1].user_text

    api.enqueue(text_reply("no code today"), text_reply("still none"))
    draft = fast_llm(api).write_program(PAPER, Judgment(**GOOD))
    assert "no program was generated" in draft.code and "dataset_loader" not in draft.code
    assert draft.usage.calls == 2


def test_code_api_outage_raises_for_the_asset_to_retry_later(api: MessagesServer) -> None:
    api.enqueue(*[error_reply(529, "overloaded_error", "Overloaded") for _ in range(2)])
    with pytest.raises(ApiCallFailed, match="HTTP 529"):
        fast_llm(api, max_retries=1).write_program(PAPER, Judgment(**GOOD))
    assert len(api.calls) == 2


# ---- Bedrock -------------------------------------------------------------------------------------


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIDTESTTESTTEST", "AWS_SECRET_ACCESS_KEY": "secret-test",
                        "AWS_REGION": "us-west-2"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "BEDROCK_MODEL_ID",
                 "BEDROCK_JUDGE_MODEL_ID"):
        monkeypatch.delenv(name, raising=False)


def test_bedrock_signs_with_sigv4_and_invokes_the_model_path(
    api: MessagesServer, fake_aws: None, shared_fixtures: Path
) -> None:
    recorded = _recorded(shared_fixtures, "bedrock_invoke_response_text.json")
    recorded["content"][0]["text"] = fenced(PROGRAM)
    api.enqueue(json_reply(recorded), tool_use_reply("record_judgment", GOOD))
    llm = ClaudeLLM(backend="bedrock", base_url=api.url, retry_initial_delay_s=0.01)

    draft = llm.write_program(PAPER, Judgment(**GOOD))
    assert draft.code == PROGRAM
    assert draft.usage.model == "us.anthropic.claude-sonnet-4-6"
    assert (draft.usage.cache_write_tokens, draft.usage.cache_read_tokens) == (1956, 9511)
    judged = llm.judge_paper(PAPER, [], FOCUS)
    assert judged.status == "judged" and judged.usage.model == "us.anthropic.claude-haiku-4-5-20251001-v1:0"

    code_call, judge_call = api.calls
    assert code_call.backend == "bedrock" and code_call.model == "us.anthropic.claude-sonnet-4-6"
    assert judge_call.model == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    auth = code_call.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTTESTTEST/")
    assert "/us-west-2/bedrock/aws4_request" in auth
    assert "model" not in code_call.body and code_call.body["anthropic_version"]  # Bedrock's body shape
    assert judge_call.body["tool_choice"]["name"] == "record_judgment"


def test_bedrock_model_id_env_picks_the_model(
    api: MessagesServer, fake_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEDROCK_MODEL_ID", "anthropic.claude-3-5-haiku-20241022-v1:0")
    api.enqueue(text_reply(fenced(PROGRAM)), tool_use_reply("record_judgment", GOOD))
    llm = ClaudeLLM(backend="bedrock", base_url=api.url)
    assert llm.code_model == llm.judge_model == "anthropic.claude-3-5-haiku-20241022-v1:0"
    llm.write_program(PAPER, Judgment(**GOOD))
    llm.judge_paper(PAPER, [], FOCUS)
    assert [c.model for c in api.calls] == ["anthropic.claude-3-5-haiku-20241022-v1:0"] * 2
    # An explicit config value wins over the environment.
    assert ClaudeLLM(backend="bedrock", judge_model_id="x.judge").judge_model == "x.judge"


def test_simulated_cache_reads_after_first_call_for_long_prefixes(api: MessagesServer) -> None:
    """The server's cache simulation, which the acceptance figures rely on, behaves like the API."""
    llm = fast_llm(api, code_model_id="claude-sonnet-5-5")  # a model whose cache minimum the prefix passes
    api.enqueue(text_reply(fenced(PROGRAM)), text_reply(fenced(PROGRAM)))
    first = llm.write_program(PAPER, Judgment(**GOOD)).usage
    second = llm.write_program(PAPER.model_copy(update={"title": "Another"}), Judgment(**GOOD)).usage
    assert first.cache_write_tokens > 1024 and first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens and second.cache_write_tokens == 0
    assert second.cost_usd < first.cost_usd
