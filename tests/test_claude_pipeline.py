"""Acceptance: a demo partition judged and coded by Claude through the real `anthropic` client.

ANNAPURNA_LLM=anthropic, ANTHROPIC_API_KEY=anything, ANTHROPIC_BASE_URL -> a local server answering
in the Messages API format. The server plays Claude per paper: Adam is judged and coded cleanly,
VGG's first program has a syntax error (repaired in round two), the NMT paper's judgment never
validates (judge_error, and the partition goes on), and one program crashes at run time so the smoke
run sends its traceback back for a fix.
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import dagster as dg
import pytest

from annapurna_assets.generated_code import generated_code
from annapurna_assets.judgments import judgments
from annapurna_assets.papers import papers
from annapurna_assets.partitions import partition_key
from annapurna_resources.settings import CODE_BUCKET
from tests.anthropic_server import MessagesCall, MessagesServer, fenced, text_reply, tool_use_reply
from tests.http_replay import Reply
from tests.pipeline_helpers import materialization_metadata

ADAM, VGG, NMT = "iclr2015-1412.6980", "iclr2015-1409.1556", "iclr2015-1409.0473"
JUDGE_MODEL, CODE_MODEL = "claude-haiku-4-5-20251001", "claude-sonnet-4-6"

PROGRAM = '''\
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from annapurna_device import get_device, step_sync, time_budget_s
from dataset_loader import load_dataset


def main() -> None:
    start = time.time()
    torch.manual_seed(0)
    device = get_device()
    train, test, info = load_dataset("synthetic", batch_size=64, kind="image", image_shape=(1, 8, 8))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, info["num_classes"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    step = 0
    total = torch.zeros((), device=device)
    for x, y in train:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step_sync()
        total += loss.detach()
        step += 1
        if step % 8 == 0:
            print("METRICS: " + json.dumps({"step": step, "loss": total.item() / 8}))
            total = torch.zeros((), device=device)
        if time.time() - start > time_budget_s():
            break
    print("METRICS: " + json.dumps({"final": True, "step": step}))


if __name__ == "__main__":
    main()
'''
SYNTAX_ERROR = PROGRAM.replace("def main() -> None:", "def main( -> None:")
CRASHES = PROGRAM.replace('info["num_classes"]', 'info["classes"]')  # KeyError at run time only
GOOD_JUDGMENT = {"relevant": True, "relevance": 0.9, "novelty": 0.7, "task_family": "image_classification",
                 "dataset": "synthetic", "reasons": "A small, trainable method; synthetic images suffice."}


def claude(call: MessagesCall) -> Reply:
    """Plays Claude for the three ICLR 2015 demo papers; usage is filled in by the server."""
    paper = re.search(r"Paper id: (\S+)", call.user_text)
    pid = paper.group(1) if paper else "?"
    if call.forced_tool == "record_judgment":
        if pid == NMT:
            return tool_use_reply("record_judgment", {"relevant": "maybe", "reasons": ""})
        return tool_use_reply("record_judgment", GOOD_JUDGMENT)
    repairing = "previous version of this program was rejected" in call.user_text
    if pid == VGG and not repairing:
        return text_reply(fenced(SYNTAX_ERROR))
    if pid == ADAM and not repairing:
        return text_reply(fenced(CRASHES))
    return text_reply(fenced(PROGRAM))


@pytest.fixture
def claude_env(annapurna_home: Path, monkeypatch: pytest.MonkeyPatch):
    with MessagesServer(responder=claude) as api:
        monkeypatch.setenv("ANNAPURNA_LLM", "anthropic")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "anything")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        for name in ("ANNAPURNA_JUDGE_MODEL", "ANNAPURNA_CODE_MODEL"):
            monkeypatch.delenv(name, raising=False)
        yield api


def _status_json() -> dict:
    from annapurna_assets.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["status", "--json"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.slow
def test_partition_judged_and_coded_by_claude_with_repairs(claude_env: MessagesServer) -> None:
    from annapurna_assets.resources import build_resources
    from annapurna_resources.llm.claude import ClaudeLLM

    resources = build_resources()
    assert isinstance(resources["llm"], ClaudeLLM)  # ANNAPURNA_LLM=anthropic reached the definitions
    with dg.instance_for_test() as instance:
        result = dg.materialize([papers, judgments, generated_code], partition_key=partition_key("iclr", 2015),
                                resources=resources, instance=instance, raise_on_error=False,
                                run_config={"ops": {"generated_code": {"config": {"smoke_time_budget_s": 5}}}})
        assert result.success  # a judge_error does not stop the partition

        judged = result.output_for_node("judgments").set_index("paper_id")
        assert judged.loc[NMT, "judge_status"] == "judge_error"
        assert "relevance: Field required" in judged.loc[NMT, "error"]
        for pid in (ADAM, VGG):
            row = judged.loc[pid]
            assert row["judge_status"] == "judged" and row["accepted"] and row["model"] == JUDGE_MODEL
            assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["cost_usd"] > 0

        code = result.output_for_node("generated_code").set_index("paper_id")
        assert set(code.index) == {ADAM, VGG}
        assert (code["code_status"] == "generated").all() and (code["model"] == CODE_MODEL).all()
        assert (code["input_tokens"] > 0).all() and (code["smoke"] == "passed").all()
        # VGG: a syntax error, repaired by static findings in round two.
        assert code.loc[VGG, "repair_rounds"] == 1 and code.loc[VGG, "run_repair_rounds"] == 0
        # Adam: passes the static checks, crashes in the smoke run, repaired from its traceback.
        assert code.loc[ADAM, "repair_rounds"] == 1 and code.loc[ADAM, "run_repair_rounds"] == 1

        # Per-partition sums in the materialization metadata are the per-paper figures added up.
        code_meta = materialization_metadata(result, "generated_code")
        assert code_meta["input_tokens"] == int(code["input_tokens"].sum())
        assert code_meta["cost_usd"] == pytest.approx(float(code["cost_usd"].sum()), abs=1e-6)
        judge_meta = materialization_metadata(result, "judgments")
        assert judge_meta["input_tokens"] == int(judged["input_tokens"].sum()) and judge_meta["judge_errors"] == 1

        store, index = resources["store"], resources["index"]
        vgg = index.get(VGG)
        first, second = vgg["code"]["versions"]
        assert store.get_text(CODE_BUCKET, first) == SYNTAX_ERROR  # every version kept
        assert store.get_text(CODE_BUCKET, second) == PROGRAM == store.get_text(CODE_BUCKET, vgg["code_key"])
        assert "syntax error" in json.loads(store.get_text(CODE_BUCKET, first.replace(".py", ".json")))["findings"][0]
        adam_first = json.loads(store.get_text(CODE_BUCKET, index.get(ADAM)["code"]["versions"][0].replace(".py", ".json")))
        assert adam_first["smoke"]["status"] == "failed" and "KeyError" in adam_first["smoke"]["detail"]

        # What went over the wire: the repair prompts carried the findings and the traceback.
        code_calls = [c for c in claude_env.calls if c.forced_tool is None]
        vgg_fix = next(c for c in code_calls if f"Paper id: {VGG}" in c.user_text and "rejected" in c.user_text)
        assert "syntax error at line" in vgg_fix.user_text and "def main( -> None:" in vgg_fix.user_text
        adam_fix = next(c for c in code_calls if f"Paper id: {ADAM}" in c.user_text and "rejected" in c.user_text)
        assert "KeyError: 'classes'" in adam_fix.user_text
        judge_calls = [c for c in claude_env.calls if c.forced_tool == "record_judgment"]
        assert len(judge_calls) == 4 and len(code_calls) == 4  # NMT retried once; one repair each

        counts = _status_json()["partitions"]["iclr|2015"]
        assert counts["judged"] == 2 and counts["generated"] == 2 and counts["accepted"] == 2

        # A second run of the unchanged partition makes no LLM call.
        calls_before = len(claude_env.calls)
        again = dg.materialize([papers, judgments, generated_code], partition_key=partition_key("iclr", 2015),
                               resources=resources, instance=instance, raise_on_error=False)
        assert again.success and len(claude_env.calls) == calls_before


def _crashes_until_repaired(call: MessagesCall) -> Reply:
    if call.forced_tool == "record_judgment":
        return tool_use_reply("record_judgment", GOOD_JUDGMENT)
    repairing = "previous version of this program was rejected" in call.user_text
    return text_reply(fenced(PROGRAM if repairing else CRASHES))


@pytest.mark.slow
def test_program_failing_in_test_results_goes_back_with_its_error_tail(
    annapurna_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annapurna_assets.definitions import PIPELINE_ASSETS
    from annapurna_assets.resources import build_resources

    with MessagesServer(responder=_crashes_until_repaired) as api:
        monkeypatch.setenv("ANNAPURNA_LLM", "anthropic")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "anything")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.setenv("ANNAPURNA_TIME_BUDGET_S", "3")
        resources = build_resources()
        # No smoke run, so the crash first shows in test_results, as a Trainium-only failure would.
        run_config = {"ops": {"generated_code": {"config": {"smoke_run": False}}}}
        with dg.instance_for_test() as instance:
            first = dg.materialize(PIPELINE_ASSETS, partition_key=partition_key("iclr", 2019), resources=resources,
                                   instance=instance, run_config=run_config, raise_on_error=False)
            assert first.success
            index, store = resources["index"], resources["store"]
            docs = list(index.iter_docs("iclr", 2019))
            failed = [d for d in docs if d.get("test_status") == "failed"]
            assert failed and all(d["code"]["versions"] == [d["code_key"]] for d in failed)

            second = dg.materialize(PIPELINE_ASSETS, partition_key=partition_key("iclr", 2019), resources=resources,
                                    instance=instance, run_config=run_config, raise_on_error=False)
            assert second.success
            for before in failed:
                after = index.get(before["paper_id"])
                assert after["code"]["test_repair_rounds"] == 1
                assert after["code"]["calls"] == before["code"]["calls"] + 1  # the paper's bill keeps growing
                assert after["code"]["cost_usd"] > before["code"]["cost_usd"]
                assert after["code"]["versions"][0] == before["code_key"]  # the failed version is kept
                assert store.get_text(CODE_BUCKET, after["code_key"]) == PROGRAM
                assert after["test_status"] == "passed"  # the repaired program ran in the same run
            fixes = [c for c in api.calls if c.forced_tool is None and "rejected" in c.user_text]
            assert len(fixes) == len(failed)
            assert all("KeyError: 'classes'" in c.user_text and "failed" in c.user_text for c in fixes)
