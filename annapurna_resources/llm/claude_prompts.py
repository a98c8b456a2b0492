"""The prompts Claude gets: a fixed part (cached) and a per-paper part, as Messages API blocks.

The fixed part of each prompt (tools, then system) comes first and ends with the cache breakpoint,
so every paper of a partition after the first reads it from the prompt cache. Anything that varies
per paper stays in the user message, after the breakpoint: one changed character before the
breakpoint would make every call a cache miss.
"""

from __future__ import annotations

import json
from typing import Any

from annapurna_resources.llm import Judgment, PaperForLLM, ProgramFeedback
from annapurna_resources.llm.prompts import PROGRAM_CONTRACT

# Revisions of the Claude-specific wording, appended to the shared prompt versions (prompts.py), so a
# judgment or program made with older wording is never mistaken for one made with the current.
JUDGE_REVISION = "claude.1"
CODE_REVISION = "claude.2"

JUDGE_TOOL_NAME = "record_judgment"
CACHE_CONTROL: dict[str, str] = {"type": "ephemeral"}

# How much of each input goes into a prompt: enough to judge a method, bounded so one huge paper
# cannot blow the context window or the bill.
ABSTRACT_CHARS = 3_000
EXCERPT_CHARS = 6_000
SIMILAR_ABSTRACT_CHARS = 400
MAX_SIMILAR = 5
PREVIOUS_CODE_CHARS = 40_000
ERROR_TAIL_CHARS = 4_000
MAX_FINDINGS = 30

_FIELD_DESCRIPTIONS = {
    "relevant": "true when the paper's method fits the research focus and can be reproduced at small scale "
    "in one Python file on one of the allowed datasets within about 30 minutes on one accelerator.",
    "relevance": "0..1, how well the paper fits the research focus (1 = squarely inside it).",
    "novelty": "0..1, how new the method is compared with the similar papers listed (1 = nothing like it; "
    "0 = the same idea as one of them).",
    "task_family": "the kind of experiment a small reproduction would run.",
    "dataset": "the allowed dataset a small reproduction should train on.",
    "reasons": "two to four sentences: what the method is, why it is or is not reproducible here, and how "
    "it differs from the most similar paper listed.",
}


def judge_tool() -> dict[str, Any]:
    """The forced tool whose input is the judgment; its schema is the pydantic model's own."""
    schema = Judgment.model_json_schema()
    schema.pop("title", None)
    for name, prop in schema["properties"].items():
        prop.pop("title", None)
        if name in _FIELD_DESCRIPTIONS:
            prop["description"] = _FIELD_DESCRIPTIONS[name]
    return {
        "name": JUDGE_TOOL_NAME,
        "description": "Record the judgment of one paper. Call it exactly once with every field filled in.",
        "input_schema": schema,
    }


def judge_system(focus: str) -> list[dict[str, Any]]:
    # The focus is fixed per deployment, so it belongs to the cached part.
    text = f"""\
You screen new machine-learning papers for Annapurna, a system that writes a small PyTorch
reproduction of each promising paper and runs it unattended on an AWS Trainium host, a GPU or a CPU.

Research focus:
{focus}

Judge each paper you are shown and answer only by calling the `{JUDGE_TOOL_NAME}` tool.

How to judge:
- relevant: true only if the core method can be implemented from the abstract and text excerpt in a
  single Python file (torch + numpy), trained from scratch at small scale, and evaluated on one of
  cifar10, cifar100, mnist, fashion_mnist, imdb, wikitext2 or synthetic data, in about 30 minutes on
  one accelerator. Papers that need pretrained checkpoints, web-scale data, reinforcement-learning
  environments, robots, human studies, or that propose no trainable method (surveys, benchmarks,
  position papers, pure theory) are not relevant.
- relevance: fit to the research focus, from 0 (outside it) to 1 (squarely inside it).
- novelty: judged against the similar papers listed with the paper (those already in our index);
  1 = an idea none of them has, 0.5 = a variation of one of them, 0 = the same method. With no
  similar papers listed, judge novelty from the paper's own claims, conservatively.
- task_family: image_classification, text_classification, language_modeling, optimizer (a new
  optimizer or training-dynamics method, tested on any small task), or other.
- dataset: the smallest allowed dataset on which the paper's claim can still be seen; use synthetic
  only when no real dataset fits.
- reasons: two to four plain sentences; name the method and the deciding fact.

Be strict and consistent: the same paper must get the same judgment every time.
"""
    return [{"type": "text", "text": text, "cache_control": CACHE_CONTROL}]


def _clip(text: str, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


def _paper_block(paper: PaperForLLM) -> str:
    where = " ".join(x for x in (paper.venue, str(paper.year) if paper.year else "") if x)
    lines = [f"Title: {paper.title.strip()}", f"Paper id: {paper.paper_id}"]
    if paper.authors:
        lines.append("Authors: " + ", ".join(paper.authors[:12]) + (" et al." if len(paper.authors) > 12 else ""))
    if where:
        lines.append(f"Venue: {where}")
    lines.append(f"Abstract: {_clip(paper.abstract, ABSTRACT_CHARS) or '(none)'}")
    if paper.text_excerpt.strip():
        lines.append(f"Start of the text:\n{_clip(paper.text_excerpt, EXCERPT_CHARS)}")
    return "\n".join(lines)


def judge_user(paper: PaperForLLM, similar: list[PaperForLLM]) -> str:
    parts = ["<paper>", _paper_block(paper), "</paper>", "", "<similar_papers_in_index>"]
    shown = [p for p in similar if p.paper_id != paper.paper_id][:MAX_SIMILAR]
    if not shown:
        parts.append("(none)")
    for i, other in enumerate(shown, 1):
        parts.append(f"{i}. {other.title.strip()} — {_clip(other.abstract, SIMILAR_ABSTRACT_CHARS)}")
    parts += ["</similar_papers_in_index>", "", f"Judge this paper by calling `{JUDGE_TOOL_NAME}`."]
    return "\n".join(parts)


def judge_retry_note(error: str) -> str:
    return (
        f"Your previous answer could not be used: {error}\n"
        f"Call `{JUDGE_TOOL_NAME}` once more with input that satisfies its schema exactly."
    )


EXAMPLE_PROGRAM = '''\
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from annapurna_device import get_device, step_sync, time_budget_s
from dataset_loader import load_dataset


def main() -> None:
    start = time.time()
    budget = time_budget_s() * 0.85  # leave time for the final evaluation
    torch.manual_seed(0)
    device = get_device()
    train, test, info = load_dataset("mnist", batch_size=128)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = 0
    for epoch in range(5):
        model.train()
        running = torch.zeros((), device=device)
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_sync()
            running += loss.detach()  # stays on the device: no host sync per step
            step += 1
            if step % 100 == 0:
                print("METRICS: " + json.dumps({"step": step, "epoch": epoch, "loss": running.item() / 100}))
                running = torch.zeros((), device=device)
            if time.time() - start > budget:
                break
        correct = total = 0
        model.eval()
        with torch.no_grad():
            for x, y in test:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(dim=1) == y).sum().item()
                total += y.numel()
        print("METRICS: " + json.dumps({"epoch": epoch, "step": step, "test_accuracy": correct / max(total, 1)}))
        if time.time() - start > budget:
            break
    print("METRICS: " + json.dumps({"final": 1, "step": step, "test_accuracy": correct / max(total, 1)}))


if __name__ == "__main__":
    main()
'''


def code_system() -> list[dict[str, Any]]:
    text = f"""\
You write PyTorch programs that reproduce the core claim of a machine-learning paper at small scale.
Each program runs unattended, in a sandbox without network access, on an AWS Trainium host
(PyTorch/XLA), a GPU or a CPU, and is judged by the `METRICS:` lines it prints.

{PROGRAM_CONTRACT}
The runtime helpers shipped beside the program:
- `load_dataset(name, batch_size=64, max_train=None, max_test=None, seq_len=None, vocab_size=None,
  seed=0, **synthetic_options)` returns `(train, test, info)`: two DataLoaders with fixed batch shapes
  (shuffled train, drop_last) and a dict. Every `info` has `name`, `kind`, `n_train`, `n_test`.
  - cifar10, cifar100: x float32 (B, 3, 32, 32), normalized; y int64 (B,). info: kind="image",
    input_shape=[3, 32, 32], num_classes=10 or 100.
  - mnist, fashion_mnist: x float32 (B, 1, 28, 28), normalized; y int64 (B,); num_classes=10.
  - imdb: x int64 token ids (B, seq_len), padded with 0 (seq_len defaults to 256); y int64 (B,) in
    {0, 1}. info: kind="text", seq_len, vocab_size, num_classes=2.
  - wikitext2: x, y int64 (B, seq_len), y is x shifted by one token (seq_len defaults to 64).
    info: kind="sequence", seq_len, vocab_size.
  - synthetic: learnable, seeded, 2048 train / 512 test examples. `kind="image"` (image_shape=(3, 32,
    32), num_classes=10), `kind="text"` (seq_len=64, vocab_size=1000, num_classes=10; 0 is padding)
    or `kind="sequence"` (next-token prediction; seq_len, vocab_size). Same info keys as above.
  `max_train` / `max_test` cut the splits so that training fits the budget. A standard dataset that
  is not staged on the host raises `dataset_loader.DatasetUnavailable`: never catch it.
- `annapurna_device`: `get_device()` (the XLA device, else CUDA, else CPU), `step_sync()` (cuts the
  XLA graph; a no-op elsewhere), `time_budget_s()` (seconds the program may run, counted from its
  start), `elapsed_s()` (seconds since the program started).

The XLA rules in practice (Trainium compiles each distinct graph once; anything that changes the
graph from step to step, or forces the host to wait for the device, makes a run crawl):
- `nn.TransformerEncoder(...)(x, mask=causal)` -> `encoder(x, causal)` (the mask by position) or
  `encoder(x, src_key_padding_mask=pad)`.
- `x[mask] = 0.0` or `x[idx] += v` -> `x = torch.where(mask, torch.zeros_like(x), x)`,
  `x = x.masked_fill(mask, 0.0)`, `x = x.index_add(0, idx, v)`.
- `torch.dot(a, b)` on batched tensors -> `(a * b).sum(-1)`, `torch.einsum("bd,bd->b", a, b)` or `a @ b.T`.
- `torch.lerp(a, b, w)` / `a.lerp_(b, w)` / mixup `lam * x1 + (1 - lam) * x2` with `w` or `lam` changing
  each step: make it a 0-dim tensor on the device (`torch.tensor(lam, device=device)`); a Python
  float that changes is a new graph every step, a per-element weight tensor is a different op.
- `loss.item()`, `.cpu()`, `.tolist()`, `.numpy()` or `print(tensor)` inside the training step wait
  for the device: accumulate on the device and read the value every N steps, as the example does.
- Call `step_sync()` once per training step, after `optimizer.step()`.
- Variable shapes recompile: drop the last partial batch, pad or truncate sequences to one length,
  keep the batch size fixed, no data-dependent shapes (`nonzero`, boolean indexing) in the model.

What a good reproduction does:
- Implements the paper's method itself (the new layer, loss, optimizer or training rule) in plain
  PyTorch, next to the simplest fair baseline when the claim is a comparison, both trained the
  same way, reporting each under its own metric names (e.g. `method_test_accuracy`,
  `baseline_test_accuracy`).
- Is small: a model and a number of steps that finish well within the time budget on a CPU.
- Seeds everything (`torch.manual_seed`) so a run can be repeated.
- Never downloads anything, never reads or writes outside the working folder, never starts
  processes or threads, never asks for input.

A program of the required shape (an illustration of the contract, not a template to copy):
```python
{EXAMPLE_PROGRAM}```

Answer with the complete program in exactly one ```python fenced block. Put at most three short
sentences before it and nothing after it.
"""
    return [{"type": "text", "text": text, "cache_control": CACHE_CONTROL}]


def code_user(paper: PaperForLLM, judgment: Judgment, feedback: ProgramFeedback | None) -> str:
    parts = [
        "<paper>",
        _paper_block(paper),
        "</paper>",
        "",
        f"Task family: {judgment.task_family}. Dataset to use: {judgment.dataset}.",
        f"Why it was chosen: {judgment.reasons.strip()}",
        "",
    ]
    if feedback is None:
        parts.append("Write the program.")
        return "\n".join(parts)
    parts.append("A previous version of this program was rejected. Fix every problem below and return the")
    parts.append("complete corrected program (not a diff).")
    if feedback.findings:
        parts.append("\nFindings of the static checks:")
        parts += [f"- {f}" for f in feedback.findings[:MAX_FINDINGS]]
    if feedback.error_tail.strip():
        tail = feedback.error_tail.strip()[-ERROR_TAIL_CHARS:]
        parts.append(f"\nEnd of the output of its run:\n<error_tail>\n{tail}\n</error_tail>")
    previous = feedback.previous_code
    if len(previous) > PREVIOUS_CODE_CHARS:
        previous = previous[:PREVIOUS_CODE_CHARS] + "\n# [... truncated ...]\n"
    parts.append(f"\nThe previous version:\n<previous_program>\n{previous}\n</previous_program>")
    return "\n".join(parts)


def code_retry_note(error: str) -> str:
    return (
        f"Your previous answer could not be used: {error}\n"
        "Answer again with the complete program in exactly one ```python fenced block; keep it shorter."
    )


def estimate_tokens(blocks: Any) -> int:
    """A rough token count (about 4 characters per token for English and code), for reports only;
    billing always uses the `usage` the API returns."""
    text = blocks if isinstance(blocks, str) else json.dumps(blocks)
    return max(1, round(len(text) / 4))
