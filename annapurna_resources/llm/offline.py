"""The offline baseline: an honest, deterministic stand-in for Claude that needs no network.

Its judge scores relevance to the research focus by weighted terms and novelty against the most
similar papers already indexed; its generator writes a runnable program from a template for the
paper's task family. It does not implement a paper's method, and its outputs say so
(`model: offline-baseline`).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter

from annapurna_resources.llm import (
    LLM,
    JudgeResult,
    Judgment,
    LLMUsage,
    PaperForLLM,
    ProgramDraft,
    ProgramFeedback,
)
from annapurna_resources.llm.offline_templates import render_program

OFFLINE_MODEL = "offline-baseline"

# Terms that make a paper implementable and trainable at small scale (the default research focus).
FOCUS_TERMS: dict[str, float] = {
    "optimizer": 1.0, "optimization": 0.6, "gradient": 0.6, "stochastic": 0.4, "learning rate": 0.8,
    "weight decay": 0.8, "momentum": 0.5, "normalization": 1.0, "normalizes": 1.0, "activation": 0.8,
    "regularization": 0.8, "dropout": 0.6, "initialization": 0.6, "architecture": 0.6, "layer": 0.4,
    "convolution": 0.6, "convolutional": 0.6, "attention": 0.7, "transformer": 0.6, "residual": 0.5,
    "train": 0.5, "training": 0.5, "trains": 0.5, "network": 0.4, "networks": 0.4, "feed-forward": 0.5,
    "pruning": 0.5, "sparse": 0.4, "quantization": 0.3, "efficient": 0.3, "contrastive": 0.5,
    "classification": 0.4, "language model": 0.5, "language modelling": 0.5, "perplexity": 0.5,
    "gated": 0.4, "diffusion": 0.4, "denoising": 0.4, "encoder": 0.5, "decoder": 0.4, "representations": 0.5,
    "relu": 0.5, "nonlinearity": 0.5, "augmentation": 0.5, "loss": 0.4, "gradients": 0.5, "mini-batch": 0.5,
    "embedding": 0.4, "recurrent": 0.5, "state space": 0.5, "layers": 0.4, "proximal": 0.4, "weights": 0.3,
}
# Terms that say the result needs scale, a production system or no training at all.
OFF_FOCUS_TERMS: dict[str, float] = {
    "billion": 0.8, "175": 0.5, "70b": 0.6, "65b": 0.6, "production": 0.8, "mobile phones": 0.8,
    "devices": 0.4, "meta-analysis": 1.2, "survey": 1.0, "benchmarks": 0.3, "system design": 1.0,
    "serving": 0.8, "dsl": 1.0, "programming interface": 0.8, "imperatively": 0.8, "hundreds of training runs": 0.8,
    "prompt": 0.6, "without gradient updates": 0.6,
}
FAMILY_TERMS: dict[str, tuple[str, ...]] = {
    "optimizer": ("optimizer", "stochastic objectives", "stochastic gradient", "sgd", "learning rate",
                  "weight decay", "momentum", "adaptive optim", "first-order"),
    "language_modeling": ("language model", "language modelling", "perplexity", "autoregressive", "tokens",
                          "translation", "sequence", "decoder", "transformer"),
    "text_classification": ("sentiment", "text classification", "sentence classification", "review",
                            "natural language inference"),
    "image_classification": ("image", "imagenet", "convolutional", "cifar", "vision", "visual", "pixel", "mnist"),
}
FAMILY_DATASET = {
    "image_classification": "cifar10",
    "text_classification": "imdb",
    "language_modeling": "wikitext2",
    "optimizer": "fashion_mnist",
    "other": "synthetic",
}
RELEVANCE_THRESHOLD = 0.35


def _terms(text: str) -> Counter[str]:
    return Counter(t for t in re.findall(r"[a-z0-9]+", text.lower()) if len(t) > 2)


def cosine_similarity(a: str, b: str) -> float:
    ta, tb = _terms(a), _terms(b)
    if not ta or not tb:
        return 0.0
    dot = sum(ta[t] * tb[t] for t in ta.keys() & tb.keys())
    return dot / (math.sqrt(sum(v * v for v in ta.values())) * math.sqrt(sum(v * v for v in tb.values())))


def _weighted_hits(text: str, weights: dict[str, float]) -> tuple[float, list[str]]:
    found = [t for t in weights if re.search(rf"\b{re.escape(t)}\b", text)]
    return sum(weights[t] for t in found), found


def score_relevance(paper: PaperForLLM) -> tuple[float, list[str], list[str]]:
    text = f"{paper.title} {paper.abstract}".lower()
    pos, pos_terms = _weighted_hits(text, FOCUS_TERMS)
    neg, neg_terms = _weighted_hits(text, OFF_FOCUS_TERMS)
    return max(0.0, min(1.0, (pos - neg) / 3.5)), pos_terms, neg_terms


def classify_task_family(paper: PaperForLLM) -> str:
    text = f"{paper.title} {paper.title} {paper.abstract}".lower()  # the title counts double
    votes = {fam: sum(text.count(t) for t in terms) for fam, terms in FAMILY_TERMS.items()}
    best = max(votes, key=lambda f: votes[f])
    return best if votes[best] > 0 else "other"


def judge_offline(paper: PaperForLLM, similar: list[PaperForLLM]) -> Judgment:
    relevance, pos_terms, neg_terms = score_relevance(paper)
    me = f"{paper.title} {paper.abstract}"
    sims = [(cosine_similarity(me, f"{s.title} {s.abstract}"), s) for s in similar]
    closest = max(sims, key=lambda x: x[0], default=(0.0, None))
    novelty = round(1.0 - closest[0], 3)
    family = classify_task_family(paper)
    dataset = "mnist" if family == "image_classification" and "mnist" in me.lower() else FAMILY_DATASET[family]
    reasons = [f"relevance {relevance:.2f} from focus terms {', '.join(pos_terms) or 'none'}"]
    if neg_terms:
        reasons.append(f"penalised for {', '.join(neg_terms)}")
    if closest[1] is not None:
        reasons.append(f"novelty {novelty:.2f}: closest indexed paper is '{closest[1].title}' ({closest[0]:.2f} similar)")
    else:
        reasons.append("novelty 1.00: no similar paper indexed")
    reasons.append(f"task family {family} by keyword vote")
    return Judgment(
        relevant=relevance >= RELEVANCE_THRESHOLD, relevance=round(relevance, 3), novelty=novelty,
        task_family=family, dataset=dataset, reasons="; ".join(reasons),  # type: ignore[arg-type]
    )


class OfflineLLM(LLM):
    """Deterministic and free; `budget_s` is the time budget written into generated programs' defaults."""

    @property
    def judge_model(self) -> str:
        return OFFLINE_MODEL

    @property
    def code_model(self) -> str:
        return OFFLINE_MODEL

    def judge_paper(self, paper: PaperForLLM, similar: list[PaperForLLM], focus: str) -> JudgeResult:
        start = time.monotonic()
        judgment = judge_offline(paper, similar)
        usage = LLMUsage(model=OFFLINE_MODEL, calls=1, seconds=time.monotonic() - start)
        return JudgeResult(status="judged", judgment=judgment, usage=usage)

    def write_program(self, paper: PaperForLLM, judgment: Judgment, feedback: ProgramFeedback | None = None) -> ProgramDraft:
        # Templates are validated by the test suite, so feedback never changes the answer; a repair
        # round with the baseline would only write the same program again.
        start = time.monotonic()
        code = render_program(paper, judgment)
        return ProgramDraft(code=code, usage=LLMUsage(model=OFFLINE_MODEL, calls=1, seconds=time.monotonic() - start))
