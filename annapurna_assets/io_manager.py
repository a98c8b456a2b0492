"""Asset outputs are DataFrames stored as Parquet in the object store (bucket `annapurna-dagster-io`)."""


import io

import dagster as dg
import pandas as pd

from annapurna_resources.object_store import ObjectStore
from annapurna_resources.settings import IO_BUCKET


def parquet_key(asset_path: list[str], partition: str | None) -> str:
    base = "assets/" + "/".join(asset_path)
    if partition is None:
        return f"{base}/all.parquet"
    parts = partition.split("|")
    return f"{base}/" + "/".join(f"{name}={value}" for name, value in zip(("venue", "year"), parts, strict=False)) + ".parquet"


class ParquetObjectStoreIOManager(dg.ConfigurableIOManager):
    store: ObjectStore
    bucket: str = IO_BUCKET

    def _key(self, context: dg.OutputContext | dg.InputContext) -> str:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return parquet_key(list(context.asset_key.path), partition)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        buf = io.BytesIO()
        obj.to_parquet(buf, index=False)
        key = self._key(context)
        uri = self.store.put(self.bucket, key, buf.getvalue(), "application/vnd.apache.parquet")
        context.add_output_metadata({"rows": len(obj), "parquet": dg.MetadataValue.path(uri)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = self._key(context)
        try:
            return pd.read_parquet(io.BytesIO(self.store.get(self.bucket, key)))
        except KeyError:
            raise dg.Failure(f"upstream {context.asset_key.to_user_string()} has no stored output at {key}; "
                             "materialize it for this partition first") from None
