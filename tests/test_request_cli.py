"""`annapurna request generate --title ...` -> the spool -> the requests sensor -> a generate_code run
-> a program, on the local profile's real backends (what `make ui` wires together)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from annapurna_assets import sensors
from annapurna_assets.cli import main
from annapurna_assets.judgments import judgments
from annapurna_assets.papers import papers
from annapurna_assets.resources import build_resources
from annapurna_resources.queue.spool import SpoolRequestQueue
from annapurna_resources.settings import CODE_BUCKET


def test_cli_writes_a_valid_request_to_the_spool(annapurna_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "generate", "--title", "Adam: A Method for Stochastic Optimization", "--json"]) == 0
    sent = json.loads(capsys.readouterr().out)
    assert sent["body"] == {"action": "generate_by_title", "title": "Adam: A Method for Stochastic Optimization",
                            "max_papers": 1}
    files = list((annapurna_home / "queue" / "code-evaluation.fifo" / "messages").iterdir())
    assert len(files) == 1 and json.loads(files[0].read_text())["message_id"] == sent["message_id"]

    assert main(["request", "generate", "--keywords", "attention, translation", "--max-papers", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["body"]["keywords"] == ["attention", "translation"]
    assert main(["request", "send", '{"action": "generate_recent", "max_papers": 2}']) == 0
    assert main(["request", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert len(listed["waiting"]) == 3 and listed["dead_letter"] == []


def test_cli_refuses_a_malformed_request(annapurna_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "send", '{"action": "generate_by_title"}']) == 2
    assert "needs a non-empty title" in capsys.readouterr().err
    assert main(["request", "generate", "--ids", "ok,../../etc"]) == 2
    assert not (annapurna_home / "queue" / "code-evaluation.fifo" / "messages").exists()


def test_a_request_produces_a_program_even_for_a_paper_the_judge_turned_down(annapurna_home: Path) -> None:
    resources = build_resources()
    index, store = resources["index"], resources["store"]
    with dg.instance_for_test() as instance:
        assert dg.materialize([papers, judgments], partition_key="mlsys|2019", resources=resources,
                              instance=instance).success
        docs = list(index.iter_docs("mlsys", 2019))
        rejected = [d for d in docs if d.get("judge_status") == "judged" and not d.get("accepted")]
        assert rejected, "the offline judge turns down the demo corpus's mlsys|2019 papers"
        target = rejected[0]
        assert target.get("code_status") is None

        assert main(["request", "generate", "--title", target["title"]]) == 0
        with dg.build_sensor_context(instance=instance, resources=resources, sensor_name="requests_sensor") as ctx:
            result = sensors.requests_sensor(ctx)
        assert [r.partition_key for r in result.run_requests] == ["mlsys|2019"]
        request = result.run_requests[0]
        assert request.tags["annapurna/paper_ids"] == target["paper_id"]

        # What the daemon does with the request: run the sensor's job with its config and tags.
        defs = dg.Definitions(assets=[papers, judgments, *_generated_code()], jobs=[sensors.generate_code_job],
                              resources=resources)
        job = defs.resolve_job_def("generate_code")
        run = job.execute_in_process(run_config=request.run_config, partition_key=request.partition_key,
                                     instance=instance, tags={**request.tags, "dagster/run_key": request.run_key})
        assert run.success
        doc = index.get(target["paper_id"])
        assert doc is not None and doc["code_status"] == "generated"
        assert "from dataset_loader import" in store.get_text(CODE_BUCKET, doc["code_key"])

        # The run is on record: the next tick deletes the message.
        with dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=resources,
                                     sensor_name="requests_sensor") as ctx:
            after = sensors.requests_sensor(ctx)
        assert after.run_requests == []
        assert SpoolRequestQueue().receive() == []


def _generated_code() -> list[dg.AssetsDefinition]:
    from annapurna_assets.generated_code import generated_code

    return [generated_code]
