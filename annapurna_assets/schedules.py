"""Schedules: new arXiv papers every morning (the stages after `papers` follow by declarative
automation, see sensors.with_automation), and the nightly log clean-up."""

# No `from __future__ import annotations`: Dagster reads the op's config annotation as a type.
import os
from datetime import UTC, datetime, timedelta

import dagster as dg

from annapurna_assets.partitions import VENUE_YEAR

ARXIV_CRON = os.environ.get("ANNAPURNA_ARXIV_CRON", "30 5 * * *")  # 05:30 UTC, after arXiv's daily announcement
# In the first days of January, late-December submissions still arrive for last year's partition.
YEAR_OVERLAP_DAYS = 3

arxiv_papers_job = dg.define_asset_job(
    "arxiv_papers",
    selection=dg.AssetSelection.assets("papers"),
    description="Fetch the newest arXiv papers of a year (judging and the rest follow by automation).",
)


def arxiv_partitions_for(day: datetime) -> list[str]:
    """The arXiv partitions a run on `day` should refresh: this year, and last year early in January."""
    keys = [f"arxiv|{day.year}"]
    if day.month == 1 and day.day <= YEAR_OVERLAP_DAYS:
        keys.append(f"arxiv|{day.year - 1}")
    valid = set(VENUE_YEAR.get_partition_keys())
    return [k for k in keys if k in valid]


@dg.schedule(
    name="daily_arxiv_schedule",
    cron_schedule=ARXIV_CRON,
    job=arxiv_papers_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="New arXiv papers daily.",
)
def daily_arxiv_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time
    if day is None:
        raise ValueError("the schedule needs its execution time")
    return [
        # One run per partition per day: the run key keeps a re-evaluated tick from running twice.
        dg.RunRequest(run_key=f"arxiv-daily:{key}:{day:%Y-%m-%d}", partition_key=key,
                      # Only papers newer than the newest one indexed: the day's additions.
                      run_config={"ops": {"papers": {"config": {"incremental": True}}}},
                      tags={"annapurna/trigger": "daily_arxiv"})
        for key in arxiv_partitions_for(day)
    ]


class LogCleanupConfig(dg.Config):
    # Step logs (stdout/stderr) of runs that ended longer ago than this are deleted.
    keep_days: int = 30
    # How far back before that to look, so a nightly run does not walk the whole history each time.
    lookback_days: int = 60


FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dg.op(description="Delete the captured stdout/stderr of runs that ended more than keep_days ago.")
def purge_old_compute_logs(context: dg.OpExecutionContext, config: LogCleanupConfig) -> int:
    """What the earlier design's log-cleanup function did. Run records and their event logs stay:
    they are the record of what was materialized when; only the bulky step output goes. The
    instance's compute log manager does the deleting, so the same job cleans local files and S3."""
    cutoff = datetime.now(UTC) - timedelta(days=config.keep_days)
    filters = dg.RunsFilter(statuses=FINISHED, updated_before=cutoff,
                            updated_after=cutoff - timedelta(days=config.lookback_days))
    purged, cursor = 0, None
    while True:
        records = context.instance.get_run_records(filters=filters, limit=200, cursor=cursor)
        if not records:
            break
        for record in records:
            if record.dagster_run.run_id != context.run_id:
                context.instance.compute_log_manager.delete_logs(prefix=[record.dagster_run.run_id])
                purged += 1
        cursor = records[-1].dagster_run.run_id
    context.log.info(f"deleted the step logs of {purged} run(s) that ended before {cutoff:%Y-%m-%d}")
    return purged


@dg.job(description="Nightly: delete old runs' step logs (tick history is purged by the daemon's retention settings).")
def log_cleanup() -> None:
    purge_old_compute_logs()


log_cleanup_schedule = dg.ScheduleDefinition(
    name="log_cleanup_schedule",
    job=log_cleanup,
    cron_schedule=os.environ.get("ANNAPURNA_LOG_CLEANUP_CRON", "15 4 * * *"),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

SCHEDULES = [daily_arxiv_schedule, log_cleanup_schedule]
JOBS = [arxiv_papers_job, log_cleanup]
