"""Program templates of the offline baseline, one per task family.

Each program follows the program contract (prompts.PROGRAM_CONTRACT): data from `dataset_loader`,
device from `annapurna_device`, `METRICS:` lines, the time budget respected, fixed shapes. When the
judged dataset is not staged on the host, it trains on the synthetic variant of the same shape and
says so in its metrics (`dataset`).
"""

from __future__ import annotations

import json

from annapurna_resources.llm import Judgment, PaperForLLM

_HEADER = '''\
"""Reproduction sketch for: __TITLE__
Venue: __VENUE__ __YEAR__ (paper id __PAPER_ID__)
Written by Annapurna's offline baseline (model: offline-baseline). It trains a small __FAMILY__
model on __DATASET__; it does not implement the paper's specific method.
"""

import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from annapurna_device import get_device, step_sync, time_budget_s
from dataset_loader import DatasetUnavailable, load_dataset

torch.manual_seed(0)
START = time.monotonic()
# Leave a fifth of the budget for evaluation and reporting.
DEADLINE = START + 0.8 * time_budget_s()
MAX_EPOCHS = 3
# Even a tiny budget gets a few steps, so the curve says something; the budget's reserve covers them.
MIN_STEPS = 10
DEVICE = get_device()


def report(**metrics):
    print("METRICS: " + json.dumps(metrics), flush=True)


def out_of_time(step=MIN_STEPS):
    return step >= MIN_STEPS and time.monotonic() > DEADLINE


def load(name, fallback_kind, **synthetic_args):
    try:
        train, test, info = load_dataset(name, batch_size=64)
        return train, test, info, name
    except DatasetUnavailable as exc:
        print(f"dataset {name} unavailable here ({exc}); training on synthetic {fallback_kind} data", flush=True)
        train, test, info = load_dataset("synthetic", kind=fallback_kind, batch_size=64, **synthetic_args)
        return train, test, info, f"synthetic-{fallback_kind}"

'''

_CLASSIFIER_LOOP = '''
def evaluate(model, loader):
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(DEVICE), y.to(DEVICE)
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
            total += y.numel()
    model.train()
    return loss_sum / max(total, 1), correct / max(total, 1)


def train_classifier(model, optimizer, train, test, dataset_used, tag=None):
    step = 0
    first_loss = None
    for epoch in range(1, MAX_EPOCHS + 1):
        running, batches = 0.0, 0
        for x, y in train:
            x, y = x.to(DEVICE), y.to(DEVICE)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step_sync()
            step += 1
            running += loss.item()
            batches += 1
            if first_loss is None:
                first_loss = loss.item()
            if out_of_time(step):
                break
        test_loss, acc = evaluate(model, test)
        extra = {"optimizer": tag} if tag else {}
        report(epoch=epoch, step=step, loss=running / max(batches, 1), test_loss=test_loss, accuracy=acc,
               elapsed_s=round(time.monotonic() - START, 2), **extra)
        if out_of_time():
            break
    return first_loss, running / max(batches, 1), test_loss, acc, step
'''

_IMAGE = '''
class SmallConvNet(nn.Module):
    def __init__(self, channels, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Linear(32 * 16, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def main():
    train, test, info, used = load("__DATASET__", "image", image_shape=(3, 32, 32), num_classes=10)
    model = SmallConvNet(info["input_shape"][0], info["num_classes"]).to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first, last, test_loss, acc, steps = train_classifier(model, optimizer, train, test, used)
    report(final=True, dataset=used, device=str(DEVICE), steps=steps, initial_loss=first, loss=last,
           test_loss=test_loss, accuracy=acc, params=sum(p.numel() for p in model.parameters()),
           wall_s=round(time.monotonic() - START, 2))


main()
'''

_OPTIMIZER = '''
def make_model(info):
    width = 1
    for d in info["input_shape"]:
        width *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 128), nn.ReLU(), nn.Linear(128, info["num_classes"])).to(DEVICE)


def main():
    global DEADLINE
    train, test, info, used = load("__DATASET__", "image", image_shape=(1, 28, 28), num_classes=10)
    results = {}
    # Compare the paper's family (adaptive methods) with plain SGD on the same model and data,
    # giving each half of the time budget.
    budget = DEADLINE - START
    for tag, make_opt in (("sgd", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
                          ("adam", lambda p: torch.optim.Adam(p, lr=1e-3))):
        torch.manual_seed(0)
        DEADLINE = time.monotonic() + budget / 2
        model = make_model(info)
        first, last, test_loss, acc, steps = train_classifier(model, make_opt(model.parameters()), train, test, used, tag)
        results[tag] = (first, last, test_loss, acc, steps)
    best = max(results, key=lambda k: results[k][3])
    first, last, test_loss, acc, steps = results[best]
    report(final=True, dataset=used, device=str(DEVICE), best_optimizer=best, initial_loss=first, loss=last,
           test_loss=test_loss, accuracy=acc, accuracy_sgd=results["sgd"][3], accuracy_adam=results["adam"][3],
           steps=steps, wall_s=round(time.monotonic() - START, 2))


main()
'''

_TEXT = '''
class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab_size, num_classes, dim=64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, num_classes))

    def forward(self, tokens):
        mask = (tokens != 0).unsqueeze(-1).float()
        pooled = (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


def main():
    train, test, info, used = load("__DATASET__", "text", seq_len=64, vocab_size=1000, num_classes=2)
    model = BagOfEmbeddings(info["vocab_size"], info["num_classes"]).to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first, last, test_loss, acc, steps = train_classifier(model, optimizer, train, test, used)
    report(final=True, dataset=used, device=str(DEVICE), steps=steps, initial_loss=first, loss=last,
           test_loss=test_loss, accuracy=acc, wall_s=round(time.monotonic() - START, 2))


main()
'''

_LM = '''
class TinyTransformerLM(nn.Module):
    def __init__(self, vocab_size, seq_len, dim=64, heads=4, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab_size)
        # Causal mask built once with a fixed shape; passed by position (XLA rule: no mask= keyword).
        self.register_buffer("causal", torch.triu(torch.full((seq_len, seq_len), float("-inf")), diagonal=1))

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        return self.head(self.encoder(x, self.causal))


def lm_loss(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def main():
    train, test, info, used = load("__DATASET__", "sequence", seq_len=32, vocab_size=64)
    model = TinyTransformerLM(info["vocab_size"], info["seq_len"]).to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    step, first_loss = 0, None
    for epoch in range(1, MAX_EPOCHS + 1):
        running, batches = 0.0, 0
        for x, y in train:
            x, y = x.to(DEVICE), y.to(DEVICE)
            optimizer.zero_grad()
            loss = lm_loss(model, x, y)
            loss.backward()
            optimizer.step()
            step_sync()
            step += 1
            running += loss.item()
            batches += 1
            first_loss = loss.item() if first_loss is None else first_loss
            if out_of_time(step):
                break
        model.eval()
        with torch.no_grad():
            losses = [lm_loss(model, x.to(DEVICE), y.to(DEVICE)).item() for x, y in test]
        model.train()
        test_loss = sum(losses) / max(len(losses), 1)
        report(epoch=epoch, step=step, loss=running / max(batches, 1), test_loss=test_loss,
               perplexity=math.exp(min(test_loss, 50.0)), elapsed_s=round(time.monotonic() - START, 2))
        if out_of_time():
            break
    report(final=True, dataset=used, device=str(DEVICE), steps=step, initial_loss=first_loss,
           loss=running / max(batches, 1), test_loss=test_loss, perplexity=math.exp(min(test_loss, 50.0)),
           wall_s=round(time.monotonic() - START, 2))


main()
'''

_BODIES = {
    "image_classification": _CLASSIFIER_LOOP + _IMAGE,
    "optimizer": _CLASSIFIER_LOOP + _OPTIMIZER,
    "text_classification": _CLASSIFIER_LOOP + _TEXT,
    "language_modeling": _LM,
    "other": _CLASSIFIER_LOOP + _IMAGE,
}


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "/").replace('"""', "'''")


def render_program(paper: PaperForLLM, judgment: Judgment) -> str:
    code = _HEADER + _BODIES[judgment.task_family]
    replacements = {
        "__TITLE__": _docstring_safe(paper.title),
        "__VENUE__": paper.venue.upper(),
        "__YEAR__": str(paper.year),
        "__PAPER_ID__": paper.paper_id,
        "__FAMILY__": judgment.task_family.replace("_", " "),
        # json.dumps yields a valid Python string body for the dataset name.
        "__DATASET__": json.dumps(judgment.dataset)[1:-1],
    }
    for k, v in replacements.items():
        code = code.replace(k, v)
    return code
