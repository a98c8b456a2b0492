"""Static validation of generated programs: pyflakes findings, the import whitelist and the XLA lint."""

from __future__ import annotations

import ast
import textwrap

import pytest

from annapurna_assets.program_validation import program_warnings, validate_program
from annapurna_assets.xla_lint import xla_findings
from annapurna_resources.llm.claude_prompts import EXAMPLE_PROGRAM

GOOD = textwrap.dedent('''\
    import json
    import time

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from annapurna_device import get_device, step_sync, time_budget_s
    from dataset_loader import load_dataset


    class Net(nn.Module):
        def __init__(self, vocab: int) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, 64)
            layer = nn.TransformerEncoderLayer(64, 4, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(64, 2)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            pad = tokens == 0
            h = self.encoder(self.embed(tokens), src_key_padding_mask=pad)
            h = torch.where(pad.unsqueeze(-1), torch.zeros_like(h), h)
            return self.head(h.mean(1))


    def main() -> None:
        start = time.time()
        device = get_device()
        train, test, info = load_dataset("imdb", batch_size=32)
        model = Net(info["vocab_size"]).to(device)
        ema = Net(info["vocab_size"]).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        decay = torch.tensor(0.99, device=device)
        total = torch.zeros((), device=device)
        for step, (x, y) in enumerate(train):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_sync()
            total += loss.detach()
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.data.lerp_(p.data, 1 - decay)
            if step % 50 == 0:
                print("METRICS: " + json.dumps({"step": step, "loss": total.item() / 50}))
            if time.time() - start > time_budget_s():
                break
        print("METRICS: " + json.dumps({"final": 1}))


    if __name__ == "__main__":
        main()
''')


def lint(code: str) -> list[str]:
    return xla_findings(ast.parse(textwrap.dedent(code)))


def test_a_contract_following_program_has_no_findings() -> None:
    assert validate_program(GOOD) == []
    # The example Claude is shown must pass the very checks its programs face.
    assert validate_program(EXAMPLE_PROGRAM) == []


def test_pyflakes_finds_undefined_names_and_missing_imports() -> None:
    code = GOOD.replace("import json\n", "").replace("x, y = x.to(device), y.to(device)", "x, y = x.to(devce), y")
    findings = validate_program(code)
    assert any("undefined name 'json'" in f for f in findings)
    assert any("undefined name 'devce'" in f for f in findings)
    assert all(f.startswith("line ") for f in findings if "undefined" in f)


def test_unused_imports_are_not_findings() -> None:
    assert validate_program("import os\n" + GOOD) == []


def test_imports_outside_the_allowed_set_are_findings() -> None:
    findings = validate_program("import transformers\nfrom sklearn.metrics import f1_score\n" + GOOD)
    assert any("`transformers`" in f for f in findings) and any("`sklearn`" in f for f in findings)
    assert validate_program("import math\nimport numpy as np\nimport collections.abc\n" + GOOD) == []


def test_the_time_budget_must_be_read() -> None:
    code = GOOD.replace("        if time.time() - start > time_budget_s():\n            break\n", "")
    assert any("time budget" in f for f in validate_program(code))


def test_syntax_error_is_one_clear_finding() -> None:
    (finding,) = validate_program(GOOD.replace("def main() -> None:", "def main( -> None:"))
    assert finding.startswith("syntax error at line")


def test_mask_keyword_to_transformer_encoder() -> None:
    findings = lint(GOOD.replace("src_key_padding_mask=pad", "mask=pad"))
    assert len(findings) == 1 and "`mask=` keyword" in findings[0] and findings[0].startswith("line 22:")
    # `mask=` to a module that is not a transformer (an attention helper of the program's own) is fine.
    assert lint("def f(x, m):\n    return attend(x, mask=m)\n") == []
    # Nor is it to a class of the program's own that shares torch's name.
    own = ("class TransformerEncoder(nn.Module):\n    def forward(self, x, mask=None):\n        return x\n"
           "enc = TransformerEncoder()\ny = enc(x, mask=m)\n")
    assert lint(own) == []


def test_in_place_masked_assignment() -> None:
    findings = lint('''
        def f(x, lengths):
            x[x > 0] = 0.0
            x[~valid] += 1
            x[pad_mask] = -1e9
            x[:, 0] = 1.0
            x.masked_fill_(x < 0, 0.0)
            return x.masked_fill(x < 0, 0.0)
    ''')
    assert [f.split(":")[0] for f in findings] == ["line 3", "line 4", "line 5", "line 7"]
    assert "torch.where" in findings[0] and "masked_fill" in findings[3]


def test_torch_dot_on_batched_tensors() -> None:
    findings = lint('''
        import torch
        a = torch.randn(8, 16); b = torch.randn(8, 16)
        s = torch.dot(a, b)
        t = torch.dot(a.flatten(), b.view(-1))
        u = torch.dot(a[0], b[0])
        v = a.dot(b)
        w = np.dot(x, y)
    ''')
    assert [f.split(":")[0] for f in findings] == ["line 4", "line 7"]


def test_interpolation_weights() -> None:
    findings = lint('''
        import random, torch
        lam = random.betavariate(0.2, 0.2)
        mixed = torch.lerp(x1, x2, lam)
        mixed = torch.lerp(x1, x2, torch.rand(x1.shape[0], 1))
        ok = torch.lerp(x1, x2, torch.tensor(0.3))
        ema.lerp_(p, 0.01)
    ''')
    assert [f.split(":")[0] for f in findings] == ["line 4", "line 5"]
    assert "Python float that changes" in findings[0] and "non-scalar" in findings[1]


def test_training_loop_needs_a_sync_and_no_per_step_host_reads() -> None:
    code = GOOD.replace("        step_sync()\n", "").replace("        total += loss.detach()\n", "        total += loss.item()\n")
    assert code != GOOD
    findings = validate_program(code)
    assert any("never calls `step_sync()`" in f for f in findings)
    # A host read per step only slows XLA down: a warning, never a rejection.
    assert not any(".item()" in f for f in findings)
    (warning,) = program_warnings(code)
    assert "`.item()` on every training step" in warning
    # The guarded read every 50 steps in GOOD, a read in a conditional expression, and the evaluation
    # loop without backward() are fine.
    assert program_warnings(GOOD) == []
    assert program_warnings(GOOD.replace("        total += loss.detach()\n",
                                         "        first = loss.item() if first is None else first\n")) == []
    assert program_warnings('''
for x, y in test:
    correct += (model(x).argmax(1) == y).sum().item()
''') == []


@pytest.mark.parametrize("bad", ["x[mask] = 0", "torch.dot(a, b)"])
def test_xla_findings_reach_validate_program(bad: str) -> None:
    code = GOOD.replace("    total = torch.zeros((), device=device)\n", f"    total = torch.zeros((), device=device)\n    {bad}\n")
    code = code.replace("x[mask]", "total[total > 0]").replace("torch.dot(a, b)", "torch.dot(total, total)")
    assert any("XLA rule" in f for f in validate_program(code))
