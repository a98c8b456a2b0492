"""Claude prices and the dollar cost of one Messages API call, from the response's `usage`.

Prices are US dollars per million tokens, as published for the Anthropic API (Bedrock's global
cross-region endpoints charge the same; its regional endpoints add a premium that
`regional_premium` can express). Prompt-cache writes cost 1.25x the input price for the 5-minute
cache and 2x for the 1-hour cache; cache reads cost 0.1x. Edit this table when prices change:
nothing else in the project holds a price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from annapurna_resources.llm import LLMUsage

CACHE_WRITE_5M_FACTOR = 1.25
CACHE_WRITE_1H_FACTOR = 2.0
CACHE_READ_FACTOR = 0.1


@dataclass(frozen=True)
class ModelPrice:
    input_per_mtok: float
    output_per_mtok: float
    # The shortest prefix the API will cache for this model; a shorter one is billed as plain input.
    min_cacheable_tokens: int = 1024


# Keyed by the model family as it appears inside every id form (Anthropic API ids, Bedrock ids with
# a region prefix and `-v1:0` suffix, aliases); the longest matching key wins.
PRICES: dict[str, ModelPrice] = {
    # The 5.x minimum cache lengths were not published where we looked; 1024 is assumed.
    "claude-opus-5-5": ModelPrice(4.0, 20.0, 1024),
    "claude-opus-5": ModelPrice(5.0, 25.0, 1024),
    "claude-sonnet-5-5": ModelPrice(2.0, 10.0, 1024),
    "claude-sonnet-5": ModelPrice(2.0, 10.0, 1024),
    "claude-opus-4-6": ModelPrice(5.0, 25.0, 4096),
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 4096),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 1024),
    "claude-opus-4": ModelPrice(15.0, 75.0, 1024),
    "claude-sonnet-4-6": ModelPrice(3.0, 15.0, 2048),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 1024),
    "claude-sonnet-4": ModelPrice(3.0, 15.0, 1024),
    "claude-3-7-sonnet": ModelPrice(3.0, 15.0, 1024),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 4096),
    "claude-3-5-haiku": ModelPrice(0.8, 4.0, 2048),
    "claude-3-haiku": ModelPrice(0.25, 1.25, 2048),
}
# An unknown model is priced like the most expensive family we know rather than as free, so a cost
# figure is never an underestimate.
UNKNOWN_MODEL_PRICE = ModelPrice(15.0, 75.0, 1024)


def model_family(model_id: str) -> str | None:
    """`us.anthropic.claude-haiku-4-5-20251001-v1:0` -> `claude-haiku-4-5`; None when unknown."""
    name = model_id.lower().rsplit("/", 1)[-1]
    name = re.sub(r"^(?:[a-z]{2,6}\.)?anthropic\.", "", name)
    matches = [family for family in PRICES if name.startswith(family)]
    return max(matches, key=len) if matches else None


def price_for(model_id: str) -> ModelPrice:
    family = model_family(model_id)
    return PRICES[family] if family else UNKNOWN_MODEL_PRICE


def _field(usage: Any, name: str) -> int:
    value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
    return int(value or 0)


def usage_cost_usd(
    model_id: str,
    input_tokens: int,
    output_tokens: int,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    cache_read_tokens: int = 0,
    regional_premium: float = 0.0,
) -> float:
    price = price_for(model_id)
    per_token_in = price.input_per_mtok / 1e6
    dollars = (
        input_tokens * per_token_in
        + cache_write_5m_tokens * per_token_in * CACHE_WRITE_5M_FACTOR
        + cache_write_1h_tokens * per_token_in * CACHE_WRITE_1H_FACTOR
        + cache_read_tokens * per_token_in * CACHE_READ_FACTOR
        + output_tokens * price.output_per_mtok / 1e6
    )
    return dollars * (1.0 + regional_premium)


def usage_from_response(model_id: str, usage: Any, seconds: float = 0.0, regional_premium: float = 0.0) -> LLMUsage:
    """Token counts and dollars of one call. `usage` is the SDK's `Usage` object or its JSON dict.

    `input_tokens` in the API counts only the uncached part of the prompt; cache writes and reads are
    reported beside it, so the three add up to the whole prompt.
    """
    cache_write = _field(usage, "cache_creation_input_tokens")
    detail = usage.get("cache_creation") if isinstance(usage, dict) else getattr(usage, "cache_creation", None)
    write_1h = _field(detail, "ephemeral_1h_input_tokens") if detail is not None else 0
    write_1h = min(write_1h, cache_write)
    input_tokens = _field(usage, "input_tokens")
    output_tokens = _field(usage, "output_tokens")
    cache_read = _field(usage, "cache_read_input_tokens")
    cost = usage_cost_usd(
        model_id,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_5m_tokens=cache_write - write_1h,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=cache_read,
        regional_premium=regional_premium,
    )
    return LLMUsage(
        model=model_id,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cost_usd=cost,
        seconds=seconds,
        calls=1,
    )


def caching_saving_share(
    model_id: str, fixed_tokens: int, variable_tokens: int, output_tokens: int, calls: int
) -> float:
    """The share of the bill that prompt caching saves over `calls` calls sharing a fixed prefix.

    The first call writes the prefix to the cache, the others read it (they run within the cache's
    5 minutes, as one partition's calls do). A prefix below the model's minimum is not cached at all.
    """
    if calls <= 0:
        return 0.0
    uncached = calls * usage_cost_usd(model_id, fixed_tokens + variable_tokens, output_tokens)
    if fixed_tokens < price_for(model_id).min_cacheable_tokens:
        return 0.0
    cached = usage_cost_usd(model_id, variable_tokens, output_tokens, cache_write_5m_tokens=fixed_tokens)
    cached += (calls - 1) * usage_cost_usd(model_id, variable_tokens, output_tokens, cache_read_tokens=fixed_tokens)
    return 1.0 - cached / uncached
