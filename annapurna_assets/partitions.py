"""Venue x year partitions. Papers are rows, not partitions: per-paper dynamic partitions stop
scaling in the tens of thousands."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from annapurna_resources.sources import VENUES

FIRST_YEAR = 2013

VENUE_YEAR = dg.MultiPartitionsDefinition(
    {
        "venue": dg.StaticPartitionsDefinition(list(VENUES)),
        "year": dg.StaticPartitionsDefinition([str(y) for y in range(FIRST_YEAR, datetime.now(UTC).year + 1)]),
    }
)


def partition_key(venue: str, year: int | str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"venue": venue, "year": str(year)})


def venue_year(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, int]:
    key = context.partition_key
    keys = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else dict(
        zip(("venue", "year"), str(key).split("|"), strict=True)
    )
    return keys["venue"], int(keys["year"])


def parse_partition(text: str) -> tuple[str, int]:
    """`iclr|2025` (the form status and the UI show) -> ("iclr", 2025)."""
    venue, _, year = text.partition("|")
    if venue not in VENUES or not year.isdigit():
        raise ValueError(f"partition must look like iclr|2025 with a venue in {VENUES}, not {text!r}")
    return venue, int(year)
