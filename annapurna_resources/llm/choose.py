"""Which LLM backend runs: `ANNAPURNA_LLM=auto|bedrock|anthropic|offline` (default `auto`).

`auto` picks from the credentials present, most specific first: an Anthropic API key means the
Anthropic API; AWS credentials with a region and a sign of Bedrock use (a Bedrock model id or API
key, or the `aws` profile, whose hosts carry an instance role) mean Bedrock; anything else runs the
offline baseline, so a laptop without secrets still runs the whole pipeline. The choice and its
reason are logged, since a silent fallback to the baseline would look like a very bad Claude.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from annapurna_resources.llm import LLM

log = logging.getLogger(__name__)

BACKENDS = ("auto", "bedrock", "anthropic", "offline")

# Environment variables through which boto3 finds credentials without a network call.
_AWS_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def aws_region(env: Mapping[str, str]) -> str | None:
    return env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip() or None


def choose_backend(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(backend, why) for this environment; pure, so every rule is testable without a network."""
    env = os.environ if env is None else env
    wanted = env.get("ANNAPURNA_LLM", "auto").strip().lower() or "auto"
    if wanted not in BACKENDS:
        raise ValueError(f"ANNAPURNA_LLM must be one of {', '.join(BACKENDS)}, not {wanted!r}")
    if wanted == "anthropic":
        if not _set(env, "ANTHROPIC_API_KEY"):
            raise ValueError("ANNAPURNA_LLM=anthropic needs ANTHROPIC_API_KEY")
        return "anthropic", "ANNAPURNA_LLM=anthropic"
    if wanted == "bedrock":
        if aws_region(env) is None:
            raise ValueError("ANNAPURNA_LLM=bedrock needs AWS_REGION (or AWS_DEFAULT_REGION)")
        return "bedrock", "ANNAPURNA_LLM=bedrock"
    if wanted == "offline":
        return "offline", "ANNAPURNA_LLM=offline"

    if _set(env, "ANTHROPIC_API_KEY"):
        return "anthropic", "auto: ANTHROPIC_API_KEY is set"
    region = aws_region(env)
    bedrock_key = _set(env, "AWS_BEARER_TOKEN_BEDROCK")
    credentials = bedrock_key or any(_set(env, v) for v in _AWS_CREDENTIAL_VARS)
    on_aws = env.get("ANNAPURNA_PROFILE", "").strip().lower() == "aws"
    bedrock_meant = bedrock_key or _set(env, "BEDROCK_MODEL_ID") or on_aws
    if region and bedrock_meant and (credentials or on_aws):
        source = "AWS_BEARER_TOKEN_BEDROCK" if bedrock_key else ("AWS credentials" if credentials else "instance role")
        return "bedrock", f"auto: {source} and region {region}"
    missing = []
    if not region:
        missing.append("no AWS region")
    if not (credentials or on_aws):
        missing.append("no AWS credentials")
    if region and (credentials or on_aws) and not bedrock_meant:
        missing.append("no BEDROCK_MODEL_ID/AWS_BEARER_TOKEN_BEDROCK and profile is not aws")
    return "offline", "auto: no ANTHROPIC_API_KEY; " + ", ".join(missing)


def build_llm(env: Mapping[str, str] | None = None) -> LLM:
    """The LLM resource for this environment, with its choice logged."""
    from annapurna_resources.llm.claude import claude_from_env

    backend, why = choose_backend(env)
    log.info("LLM backend: %s (%s)", backend, why)
    if backend == "offline":
        from annapurna_resources.llm.offline import OfflineLLM

        return OfflineLLM()
    return claude_from_env(backend, env)  # type: ignore[arg-type]
