"""Claude as the judge and the program writer, on Amazon Bedrock or the Anthropic API.

Both backends go through the official `anthropic` client (`AnthropicBedrock` signs requests with
SigV4; `Anthropic` sends the API key), so the request and response shapes are the SDK's own.

- Judging is a forced tool call; its input is validated against the pydantic `Judgment`. An answer
  that cannot be used (no tool call, malformed input, refusal, cut off at max_tokens) is sent back
  once with the reason; a second failure is the paper's `judge_error`, never an exception.
- Programs come back as one ```python fenced block rather than a tool call: a model writes code
  most naturally as plain Markdown, with no JSON escaping of every quote, backslash and newline to
  get wrong (escaping alone adds 4-5 % characters to our example programs), and an answer cut off at
  max_tokens is still recognisable (`stop_reason == "max_tokens"`, no closing fence) instead of a
  half JSON string. A short preface before the block is allowed and ignored.
- Throttling (429), overload (529), 5xx, 408 and timeouts are retried here with exponential backoff
  (honouring `retry-after`/`retry-after-ms`); the SDK's own retries are off so there is exactly one
  policy, and tests can shrink its delays.
- Every call's `usage` becomes tokens and dollars (prices in `pricing.py`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any, Literal

import anthropic
import dagster as dg
from pydantic import Field, PrivateAttr, ValidationError

from annapurna_resources.llm import (
    LLM,
    JudgeResult,
    Judgment,
    LLMUsage,
    PaperForLLM,
    ProgramDraft,
    ProgramFeedback,
)
from annapurna_resources.llm import claude_prompts as prompts
from annapurna_resources.llm.pricing import usage_from_response
from annapurna_resources.llm.prompts import CODE_PROMPT_VERSION, JUDGE_PROMPT_VERSION

log = logging.getLogger(__name__)

# Cheaper model for judging many papers, stronger one for writing code. The judge must accept a
# forced tool_choice (Sonnet 5.5 rejects it); Sonnet 4.5 reaches end-of-life on 2026-11-30.
ANTHROPIC_JUDGE_MODEL = "claude-haiku-4-5-20251001"
ANTHROPIC_CODE_MODEL = "claude-sonnet-4-6"
# Bedrock invokes these models through cross-region inference profiles; `us.` routes within the US.
# Check them against `aws bedrock list-inference-profiles` of the account; BEDROCK_MODEL_ID overrides.
BEDROCK_JUDGE_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
BEDROCK_CODE_MODEL = "us.anthropic.claude-sonnet-4-6"

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
MAX_RETRY_AFTER_S = 60.0

_PYTHON_FENCE_LANGS = {"", "python", "py", "python3"}


class AnswerError(ValueError):
    """Claude answered, but not with something we can use; the message says why (and goes back to it)."""


class ApiCallFailed(RuntimeError):
    """The API kept failing after every retry (or failed in a way retrying cannot fix)."""


# ---------------------------------------------------------------------------------------------
# Pure parsing: answer -> judgment / program. They take the SDK's Message or its JSON dict.


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def _text_of(message: Any) -> str:
    return "".join(_get(b, "text", "") or "" for b in _get(message, "content", []) or [] if _get(b, "type") == "text")


def parse_judgment(message: Any, tool_name: str = prompts.JUDGE_TOOL_NAME) -> Judgment:
    """The validated judgment in a forced-tool answer, or AnswerError saying what is wrong with it."""
    stop = _get(message, "stop_reason")
    if stop == "refusal":
        raise AnswerError("the model refused to answer (stop_reason=refusal)")
    blocks = [b for b in _get(message, "content", []) or [] if _get(b, "type") == "tool_use"]
    mine = [b for b in blocks if _get(b, "name") == tool_name]
    if not mine:
        if stop == "max_tokens":
            raise AnswerError("the answer was cut off at max_tokens before the tool call")
        names = ", ".join(str(_get(b, "name")) for b in blocks) or "none"
        raise AnswerError(f"no `{tool_name}` tool call in the answer (tool calls: {names}; stop_reason={stop})")
    if stop == "max_tokens":
        # Even a tool input that validates may be cut short (reasons ending mid-sentence).
        raise AnswerError("the answer was cut off at max_tokens")
    raw = _get(mine[0], "input")
    if isinstance(raw, str):  # some gateways pass tool input through as a JSON string
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AnswerError(f"the tool input is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise AnswerError(f"the tool input must be a JSON object, got {type(raw).__name__}")
    try:
        judgment = Judgment.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        raise AnswerError(f"the tool input does not match the schema: {detail}") from None
    return judgment


def fenced_blocks(text: str) -> list[str]:
    """The bodies of the Python (or unlabelled) fenced blocks in Markdown `text`, in order.

    Line-based rather than a regex, so a closing fence is never mistaken for an opening one."""
    blocks: list[str] = []
    current: list[str] | None = None
    keep = False
    for line in text.splitlines():
        stripped = line.strip()
        if current is None:
            if stripped.startswith("```"):
                current, keep = [], stripped[3:].strip().lower() in _PYTHON_FENCE_LANGS
        elif stripped == "```":
            if keep:
                blocks.append("\n".join(current))
            current = None
        else:
            current.append(line)
    if current is not None and keep:  # an unclosed last block (the answer ended inside it)
        blocks.append("\n".join(current))
    return blocks


def extract_program(message: Any) -> str:
    """The program in the answer's ```python block (the longest, if several), or AnswerError."""
    stop = _get(message, "stop_reason")
    if stop == "refusal":
        raise AnswerError("the model refused to answer (stop_reason=refusal)")
    if stop == "max_tokens":
        raise AnswerError("the answer was cut off at max_tokens, so the program is incomplete")
    blocks = [b for b in fenced_blocks(_text_of(message)) if b.strip()]
    if not blocks:
        raise AnswerError("the answer has no ```python fenced block")
    return max(blocks, key=len).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------


def retry_delay_s(attempt: int, initial_s: float, max_s: float, headers: Any = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): what the server asks for, else
    exponential backoff with jitter, so a throttled fleet does not retry in lockstep."""
    if headers is not None:
        for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
            value = headers.get(name)
            if value is None:
                continue
            try:
                return min(max(float(value) * scale, 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                continue
    return min(initial_s * (2**attempt), max_s) * (0.75 + 0.25 * random.random())


class ClaudeLLM(LLM):
    """Claude through Bedrock (`backend="bedrock"`) or the Anthropic API (`backend="anthropic"`)."""

    backend: Literal["anthropic", "bedrock"] = "anthropic"
    judge_model_id: str = Field(default="", description="Empty: the backend's default judge model.")
    code_model_id: str = Field(default="", description="Empty: the backend's default code model.")
    api_key: str | None = Field(default=None, description="Anthropic API key (ANTHROPIC_API_KEY when empty).")
    base_url: str | None = Field(
        default=None, description="API endpoint; ANTHROPIC_BASE_URL / ANTHROPIC_BEDROCK_BASE_URL when empty."
    )
    aws_region: str | None = Field(default=None, description="Bedrock region; AWS_REGION when empty.")
    aws_profile: str | None = None
    judge_max_tokens: int = 1_024
    # Room for a long program plus any thinking the model does; below the SDK's non-streaming limit.
    code_max_tokens: int = 16_000
    request_timeout_s: float = 300.0
    max_retries: int = 5
    retry_initial_delay_s: float = 1.0
    retry_max_delay_s: float = 30.0
    # Bedrock regional (non-global) endpoints cost more than the list price; e.g. 0.1 for +10 %.
    price_premium: float = 0.0

    _client: Any = PrivateAttr(default=None)

    # -- versions and models --------------------------------------------------------------------

    @property
    def judge_prompt_version(self) -> str:
        return f"{JUDGE_PROMPT_VERSION}+{prompts.JUDGE_REVISION}"

    @property
    def code_prompt_version(self) -> str:
        return f"{CODE_PROMPT_VERSION}+{prompts.CODE_REVISION}"

    @property
    def judge_model(self) -> str:
        if self.judge_model_id:
            return self.judge_model_id
        if self.backend == "bedrock":
            return os.environ.get("BEDROCK_JUDGE_MODEL_ID") or os.environ.get("BEDROCK_MODEL_ID") or BEDROCK_JUDGE_MODEL
        return ANTHROPIC_JUDGE_MODEL

    @property
    def code_model(self) -> str:
        if self.code_model_id:
            return self.code_model_id
        if self.backend == "bedrock":
            # BEDROCK_MODEL_ID is the earlier design's single model setting: it still picks the model.
            return os.environ.get("BEDROCK_MODEL_ID") or BEDROCK_CODE_MODEL
        return ANTHROPIC_CODE_MODEL

    # -- client ---------------------------------------------------------------------------------

    def client(self) -> anthropic.Anthropic | anthropic.AnthropicBedrock:
        if self._client is None:
            common: dict[str, Any] = {"max_retries": 0, "timeout": self.request_timeout_s}
            if self.base_url:
                common["base_url"] = self.base_url
            if self.backend == "bedrock":
                region = self.aws_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                self._client = anthropic.AnthropicBedrock(aws_region=region, aws_profile=self.aws_profile, **common)
            else:
                key = self.api_key.get_value() if isinstance(self.api_key, dg.EnvVar) else self.api_key
                self._client = anthropic.Anthropic(api_key=key or os.environ.get("ANTHROPIC_API_KEY"), **common)
        return self._client

    def _create(self, **request: Any) -> tuple[Any, float]:
        """One Messages API call, retried on throttling/overload/timeouts; returns (message, seconds)."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                message = self.client().messages.create(**request)
                return message, time.monotonic() - started
            except anthropic.APIStatusError as exc:
                # The API may say outright whether a retry can help (`x-should-retry`); else by status.
                should = exc.response.headers.get("x-should-retry")
                retryable = should == "true" or (should != "false" and exc.status_code in RETRYABLE_STATUS)
                if not retryable or attempt >= self.max_retries:
                    raise ApiCallFailed(f"HTTP {exc.status_code}: {_error_message(exc)}") from exc
                headers = exc.response.headers
                reason = f"HTTP {exc.status_code}"
            except anthropic.APIConnectionError as exc:  # includes APITimeoutError
                if attempt >= self.max_retries:
                    raise ApiCallFailed(f"{type(exc).__name__}: {exc}") from exc
                headers = None
                reason = type(exc).__name__
            except (anthropic.APIResponseValidationError, json.JSONDecodeError) as exc:
                # A 200 whose body is not a Messages API answer (cut off, garbled by a proxy).
                raise AnswerError(f"the response body is not a valid Messages API answer: {exc}") from exc
            delay = retry_delay_s(attempt, self.retry_initial_delay_s, self.retry_max_delay_s, headers)
            log.warning("Claude call failed (%s); retry %d/%d in %.2fs", reason, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
            attempt += 1

    def _usage(self, model: str, message: Any, seconds: float) -> LLMUsage:
        return usage_from_response(model, _get(message, "usage"), seconds=seconds, regional_premium=self.price_premium)

    # -- judging --------------------------------------------------------------------------------

    def judge_paper(self, paper: PaperForLLM, similar: list[PaperForLLM], focus: str) -> JudgeResult:
        model = self.judge_model
        usage = LLMUsage(model=model)
        user_text = prompts.judge_user(paper, similar)
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": user_text}]}]
        request: dict[str, Any] = {
            "model": model,
            "max_tokens": self.judge_max_tokens,
            "tools": [prompts.judge_tool()],
            "tool_choice": {"type": "tool", "name": prompts.JUDGE_TOOL_NAME},
            "system": prompts.judge_system(focus),
        }
        error = ""
        for attempt in range(2):
            try:
                message, seconds = self._create(messages=messages, **request)
            except ApiCallFailed as exc:
                return JudgeResult(status="judge_error", error=f"api: {exc}", usage=usage)
            except AnswerError as exc:
                error = str(exc)
                messages = _with_note(messages, prompts.judge_retry_note(error))
                continue
            usage = usage + self._usage(model, message, seconds)
            try:
                return JudgeResult(status="judged", judgment=parse_judgment(message), usage=usage)
            except AnswerError as exc:
                error = str(exc)
                log.info("Judgment of %s unusable (attempt %d): %s", paper.paper_id, attempt + 1, error)
                messages = _judge_retry_messages(messages, message, error)
        return JudgeResult(status="judge_error", error=f"invalid answer twice: {error}", usage=usage)

    # -- code -----------------------------------------------------------------------------------

    def write_program(
        self, paper: PaperForLLM, judgment: Judgment, feedback: ProgramFeedback | None = None
    ) -> ProgramDraft:
        """A program for the paper (or a fixed version of `feedback.previous_code`).

        An unusable answer is asked for once more; if that fails too, the draft holds no program
        and a comment saying why, which static validation then rejects with a clear finding. An API
        that keeps failing after every retry raises `ApiCallFailed`.
        """
        model = self.code_model
        usage = LLMUsage(model=model)
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "text", "text": prompts.code_user(paper, judgment, feedback)}]}
        ]
        request: dict[str, Any] = {
            "model": model,
            "max_tokens": self.code_max_tokens,
            "system": prompts.code_system(),
        }
        error = ""
        for _ in range(2):
            try:
                # ApiCallFailed propagates: an outage is no fault of the paper, and the asset records
                # it as gen_error, which the next run retries.
                message, seconds = self._create(messages=messages, **request)
            except AnswerError as exc:
                error = str(exc)
                messages = _with_note(messages, prompts.code_retry_note(error))
                continue
            usage = usage + self._usage(model, message, seconds)
            try:
                return ProgramDraft(code=extract_program(message), usage=usage)
            except AnswerError as exc:
                error = str(exc)
                log.info("Program for %s unusable: %s", paper.paper_id, error)
                messages = _with_note(messages, prompts.code_retry_note(error))
        return ProgramDraft(code=_failed_program(f"no usable program in two answers: {error}"), usage=usage)


def _failed_program(reason: str) -> str:
    # It parses, but it neither loads a dataset nor prints METRICS, so static validation rejects it
    # with findings, and the comment tells a person reading the stored version what happened.
    return f"# ANNAPURNA: no program was generated\n# {reason}\n" + "raise SystemExit('no program was generated')\n"


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(error.get("message") or exc.message)[:500]


def _with_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """The first user turn again, with a note on why the last answer was rejected."""
    first = messages[0]
    return [{"role": "user", "content": [*first["content"][:1], {"type": "text", "text": note}]}]


def _judge_retry_messages(messages: list[dict[str, Any]], answer: Any, error: str) -> list[dict[str, Any]]:
    """Show Claude its own rejected tool call with the validation error as the tool's result, the
    protocol's way of asking for a corrected call; without a usable tool call, a plain note."""
    calls = [
        b
        for b in _get(answer, "content", []) or []
        if _get(b, "type") == "tool_use"
        and _get(b, "name") == prompts.JUDGE_TOOL_NAME
        and isinstance(_get(b, "input"), dict)
    ]
    if not calls or _get(answer, "stop_reason") == "max_tokens":
        return _with_note(messages, prompts.judge_retry_note(error))
    call = calls[0]
    tool_use = {"type": "tool_use", "id": _get(call, "id"), "name": _get(call, "name"), "input": _get(call, "input")}
    return [
        messages[0],
        {"role": "assistant", "content": [tool_use]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_use["id"],
                    "is_error": True,
                    "content": prompts.judge_retry_note(error),
                }
            ],
        },
    ]


def claude_from_env(backend: Literal["anthropic", "bedrock"], env: Mapping[str, str] | None = None) -> ClaudeLLM:
    """The resource as the definitions build it: the API key by `dg.EnvVar`, never baked into config.

    `ANNAPURNA_JUDGE_MODEL` / `ANNAPURNA_CODE_MODEL` override the default models on either backend."""
    env = os.environ if env is None else env
    models = {"judge_model_id": env.get("ANNAPURNA_JUDGE_MODEL", ""), "code_model_id": env.get("ANNAPURNA_CODE_MODEL", "")}
    if backend == "anthropic":
        return ClaudeLLM(
            backend="anthropic",
            api_key=dg.EnvVar("ANTHROPIC_API_KEY"),
            base_url=env.get("ANTHROPIC_BASE_URL") or None,
            **models,
        )
    return ClaudeLLM(
        backend="bedrock",
        aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        base_url=env.get("ANTHROPIC_BEDROCK_BASE_URL") or None,
        **models,
    )
