"""Small helpers for metadata a person reads in the Dagster UI."""

from __future__ import annotations

import pandas as pd


def markdown_table(df: pd.DataFrame, columns: list[str], max_rows: int = 50, max_width: int = 80) -> str:
    if df.empty:
        return "_no rows_"
    view = df[[c for c in columns if c in df.columns]].head(max_rows).copy()
    for c in view.columns:
        view[c] = view[c].map(lambda v: "" if v is None else (str(v)[: max_width - 1] + "…" if len(str(v)) > max_width else str(v)))
    more = f"\n\n_{len(df) - max_rows} more rows_" if len(df) > max_rows else ""
    return view.to_markdown(index=False) + more
