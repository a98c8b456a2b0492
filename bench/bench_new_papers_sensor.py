"""What one tick of the new-papers sensor costs, against listing the whole raw-papers bucket.

Run by hand: `.venv/bin/python bench/bench_new_papers_sensor.py [papers_per_partition] [--s3]`.
Fills about 20 venue/year folders with papers (PDF, metadata, text each), all indexed, then times
a steady-state tick (cursor per prefix + a sweep of a few prefixes) and a naive full listing, and
prints both and their ratio. `--s3` does it against moto's S3 server on 127.0.0.1 (real boto3) and
also counts the LIST requests and the keys they return. No assertion: numbers depend on the machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from annapurna_assets.partitions import VENUE_YEAR
from annapurna_assets.sensors import SWEEP_PREFIXES_PER_TICK, raw_prefixes, scan_raw_papers
from annapurna_resources.index.sqlite import SqliteIndex
from annapurna_resources.object_store.local import LocalObjectStore
from annapurna_resources.settings import RAW_PAPERS_BUCKET


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    use_s3 = "--s3" in sys.argv
    per_partition = int(args[0]) if args else 200
    partitions = VENUE_YEAR.get_partition_keys()
    requests = {"list": 0, "keys": 0}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        store: Any = LocalObjectStore(root=str(root / "objects"))
        if use_s3:
            store = stack.enter_context(_moto_s3_store(requests))
        index = SqliteIndex(path=str(root / "index.db"))
        filled = partitions[:: max(1, len(partitions) // 20)]  # about 20 busy venue/years
        docs = []
        for pk in filled:
            venue, year = pk.split("|")
            for i in range(per_partition):
                pid = f"{venue}{year}-{i:05d}"
                for ext in ("pdf", "json", "txt"):
                    store.put(RAW_PAPERS_BUCKET, f"papers/{venue}/{year}/{pid}.{ext}", b"x")
                docs.append({"paper_id": pid, "venue": venue, "year": int(year), "title": pid, "authors": [],
                             "abstract": "", "status": "ok"})
        index.upsert(docs)
        prefixes = raw_prefixes(partitions)
        cursor = scan_raw_papers(store, index, prefixes, {}, sweep_per_tick=0).cursor  # first tick: everything

        ticks = 5
        counts = {}
        requests.update(list=0, keys=0)
        t0 = time.perf_counter()
        for _ in range(ticks):
            scan = scan_raw_papers(store, index, prefixes, cursor)
            cursor = scan.cursor
            assert not scan.unknown
        tick_ms = (time.perf_counter() - t0) / ticks * 1000
        counts["tick"] = {k: v / ticks for k, v in requests.items()}

        requests.update(list=0, keys=0)
        t0 = time.perf_counter()
        for _ in range(ticks):
            n_all = sum(1 for _ in store.list_objects(RAW_PAPERS_BUCKET, "papers/"))
        full_ms = (time.perf_counter() - t0) / ticks * 1000
        counts["full"] = {k: v / ticks for k, v in requests.items()}

        requests.update(list=0, keys=0)
        t0 = time.perf_counter()
        for _ in range(ticks):
            scan_raw_papers(store, index, prefixes, cursor, sweep_per_tick=0)
        fast_ms = (time.perf_counter() - t0) / ticks * 1000
        counts["fast"] = {k: v / ticks for k, v in requests.items()}

    print(f"{'moto S3' if use_s3 else 'local store'}: {n_all} keys in {len(filled)} of {len(prefixes)} venue/year folders")
    for name, label, ms in (("tick", f"steady tick (cursor per prefix + sweep of {SWEEP_PREFIXES_PER_TICK})", tick_ms),
                            ("fast", "fast pass only (cursor per prefix)", fast_ms),
                            ("full", "naive full listing of papers/", full_ms)):
        extra = f"   {counts[name]['list']:.0f} LIST requests, {counts[name]['keys']:.0f} keys returned" if use_s3 else ""
        print(f"{label:50s} {ms:8.1f} ms{extra}")
    print(f"full listing / steady tick: {full_ms / tick_ms:.1f}x   full listing / fast pass: {full_ms / fast_ms:.1f}x")


def _moto_s3_store(requests: dict[str, int]) -> Any:
    from contextlib import contextmanager

    @contextmanager
    def run() -> Any:
        import logging
        import os

        from dagster_aws.s3 import S3Resource
        from moto.server import ThreadedMotoServer

        from annapurna_resources.object_store.s3 import S3ObjectStore

        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            store = S3ObjectStore(s3=S3Resource(endpoint_url=f"http://{host}:{port}", region_name="us-east-1"),
                                  create_buckets=True)

            def count(parsed: dict[str, Any], **_: Any) -> None:
                requests["list"] += 1
                requests["keys"] += len(parsed.get("Contents", []))

            # The store's own client, so exactly the sensor's requests are counted.
            store._s3(RAW_PAPERS_BUCKET).meta.events.register("after-call.s3.ListObjectsV2", count)
            yield store
        finally:
            server.stop()

    return run()


if __name__ == "__main__":
    main()
