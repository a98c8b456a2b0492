"""The production instance's storage on a real PostgreSQL server, started by the test run.

The server is Debian's `postgresql` package (`.ci/run` installs it): initdb + pg_ctl into a
temporary folder on a free 127.0.0.1 port. initdb refuses to run as root, so as root the server
runs as the `postgres` user the package creates (or `nobody`). The instance takes its `storage`,
`concurrency`, `run_retries`, `run_monitoring` and `retention` sections verbatim from
deploy/dagster.yaml, with the connection in the environment variables that file names; only the
ECS run launcher and S3 compute logs are swapped for local ones (nothing here reaches AWS).
"""



import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY_CONFIG = REPO / "deploy" / "dagster.yaml"

# The partitions of the real graph (venue x year), so the multi-partition key travels through
# Postgres exactly as in production.
VENUE_YEAR = dg.MultiPartitionsDefinition(
    {
        "venue": dg.StaticPartitionsDefinition(["iclr", "icml", "neurips", "mlsys", "arxiv"]),
        "year": dg.StaticPartitionsDefinition([str(y) for y in range(2013, 2027)]),
    }
)


# No `from __future__ import annotations` in this file: Dagster checks the `context` annotation's
# type, which that import would turn into a string it does not recognise.
@dg.asset(partitions_def=VENUE_YEAR, pool="llm")
def judged_counts(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    return dg.MaterializeResult(metadata={"venue": keys["venue"], "year": int(keys["year"]), "judged": 3})


@dg.asset(partitions_def=VENUE_YEAR, deps=[judged_counts])
def downstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partition": context.partition_key})


@dg.asset(partitions_def=VENUE_YEAR)
def shared_history() -> None:
    return None


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    db_name: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.db_name}"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install -y postgresql)")
    run_as: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
                run_as = name
                break
            except KeyError:
                continue
        if run_as is None:
            pytest.skip("running as root and no unprivileged user to run PostgreSQL as")
    base = Path(tempfile.mkdtemp(prefix="annapurna-pg-"))
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    data, log = base / "data", base / "server.log"
    port = _free_port()

    def pg(*argv: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bindir / argv[0]), *argv[1:]], user=run_as, cwd=base, capture_output=True, text=True,
            timeout=timeout, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8" if os.path.exists("/usr/lib/locale/C.utf8") else "C"},
        )

    init = pg("initdb", "-D", str(data), "-U", "annapurna", "--auth=trust", "-E", "UTF8", "--no-sync")
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    # The socket lives in our folder (not /var/run/postgresql, which may not exist or be writable);
    # fsync off because the data is thrown away.
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    start = pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    try:
        if start.returncode != 0:
            pytest.fail(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log.read_text() if log.exists() else ''}")
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="annapurna", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE dagster")
        conn.close()
        yield PgServer(host="127.0.0.1", port=port, user="annapurna", db_name="dagster")
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _production_config_with_local_launcher(tmp: Path) -> dict:
    """deploy/dagster.yaml as shipped, less the two parts that need AWS itself."""
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    config.pop("run_launcher")
    config.pop("compute_logs")
    config["compute_logs"] = {
        "module": "dagster.core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(tmp / "compute_logs")},
    }
    return config


@pytest.fixture
def pg_instance(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    for name, value in {
        "DAGSTER_PG_HOST": pg_server.host,
        "DAGSTER_PG_PORT": str(pg_server.port),
        "DAGSTER_PG_USER": pg_server.user,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": pg_server.db_name,
        "PGSSLMODE": "disable",
    }.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(_production_config_with_local_launcher(tmp_path)))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


def _table_count(pg_server: PgServer, sql: str, *params: object) -> int:
    import psycopg2

    conn = psycopg2.connect(host=pg_server.host, port=pg_server.port, user=pg_server.user, dbname=pg_server.db_name)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_deploy_config_is_a_valid_instance_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The whole file, ECS launcher and S3 compute logs included, passes Dagster's own schema."""
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(DEPLOY_CONFIG, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert config["run_retries"]["enabled"] is True
    assert config["run_monitoring"]["enabled"] is True
    assert config["telemetry"]["enabled"] is False

    # And each pluggable class accepts its section (the launcher's and log manager's own schemas).
    from dagster._config import process_config
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    monkeypatch.setenv("ANNAPURNA_ECS_CLUSTER", "annapurna")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", "logs")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for cls, section in ((EcsRunLauncher, "run_launcher"), (S3ComputeLogManager, "compute_logs")):
        result = process_config(cls.config_type(), config[section]["config"])
        assert result.success, (section, result.errors)
    assert process_config(EcsRunLauncher.config_type(), config["run_launcher"]["config"]).value["run_task_kwargs"][
        "cluster"
    ] == "annapurna"


def test_partition_materializes_on_postgres(pg_instance: dg.DagsterInstance, pg_server: PgServer, tmp_path: Path) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)

    for key in ("iclr|2025", "neurips|2024"):
        result = dg.materialize([judged_counts, downstream], partition_key=key, instance=pg_instance)
        assert result.success

    materialized = pg_instance.get_materialized_partitions(dg.AssetKey("judged_counts"))
    assert materialized == {"iclr|2025", "neurips|2024"}
    event = pg_instance.get_latest_materialization_event(dg.AssetKey("judged_counts"))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata["judged"].value == 3
    assert pg_instance.get_materialized_partitions(dg.AssetKey("downstream")) == {"iclr|2025", "neurips|2024"}

    # The records really are in the server's tables, not in a SQLite file somewhere.
    assert _table_count(pg_server, "SELECT count(*) FROM runs") >= 2
    assert _table_count(
        pg_server, "SELECT count(*) FROM event_logs WHERE asset_key = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        '["judged_counts"]',
    ) == 2
    assert not list(tmp_path.rglob("*.db"))

    # The pool the asset named got its slots from the configured default, in Postgres.
    info = pg_instance.event_log_storage.get_concurrency_info("llm")
    assert info.slot_count == 1
    assert info.active_slot_count == 0  # released after the step


def test_second_instance_sees_the_same_history(pg_instance: dg.DagsterInstance, pg_server: PgServer,
                                                tmp_path: Path) -> None:
    """Two processes of a deployment (webserver, daemon, run task) share one history."""

    assert dg.materialize([shared_history], partition_key="mlsys|2023", instance=pg_instance).success
    other = dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])
    try:
        assert other.get_materialized_partitions(dg.AssetKey("shared_history")) == {"mlsys|2023"}
        assert other.get_run_records(limit=1)[0].dagster_run.run_id == pg_instance.get_run_records(limit=1)[0].dagster_run.run_id
    finally:
        other.dispose()
