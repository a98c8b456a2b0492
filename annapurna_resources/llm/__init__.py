"""The LLM that judges papers and writes programs: Claude in production, an offline baseline locally."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import dagster as dg
from pydantic import BaseModel, Field

from annapurna_resources.llm.prompts import CODE_PROMPT_VERSION, JUDGE_PROMPT_VERSION

TaskFamily = Literal["image_classification", "text_classification", "language_modeling", "optimizer", "other"]
DatasetName = Literal["cifar10", "cifar100", "mnist", "fashion_mnist", "imdb", "wikitext2", "synthetic"]

DEFAULT_RESEARCH_FOCUS = (
    "Methods that can be implemented and trained at small scale: neural network architectures, "
    "optimizers, normalization and regularization, training and efficiency techniques."
)


class PaperForLLM(BaseModel):
    paper_id: str
    title: str
    authors: list[str] = Field(default_factory=list)
    abstract: str = ""
    text_excerpt: str = ""
    venue: str = ""
    year: int = 0


class Judgment(BaseModel):
    """What the judge must answer; Claude's tool input is validated against this."""

    relevant: bool
    relevance: float = Field(ge=0.0, le=1.0)
    novelty: float = Field(ge=0.0, le=1.0)
    task_family: TaskFamily
    dataset: DatasetName
    reasons: str = Field(min_length=1)


class LLMUsage(BaseModel):
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    calls: int = 0

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(
            model=other.model or self.model,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            seconds=self.seconds + other.seconds,
            calls=self.calls + other.calls,
        )


class JudgeResult(BaseModel):
    status: Literal["judged", "judge_error"]
    judgment: Judgment | None = None
    error: str | None = None
    usage: LLMUsage


class ProgramFeedback(BaseModel):
    """Why the previous version must be fixed: static findings or the tail of a failed run."""

    previous_code: str
    findings: list[str] = Field(default_factory=list)
    error_tail: str = ""


class ProgramDraft(BaseModel):
    code: str
    usage: LLMUsage


class LLM(dg.ConfigurableResource, ABC):
    @property
    def judge_prompt_version(self) -> str:
        return JUDGE_PROMPT_VERSION

    @property
    def code_prompt_version(self) -> str:
        return CODE_PROMPT_VERSION

    @property
    @abstractmethod
    def judge_model(self) -> str: ...

    @property
    @abstractmethod
    def code_model(self) -> str: ...

    @abstractmethod
    def judge_paper(self, paper: PaperForLLM, similar: list[PaperForLLM], focus: str) -> JudgeResult: ...

    @abstractmethod
    def write_program(self, paper: PaperForLLM, judgment: Judgment, feedback: ProgramFeedback | None = None) -> ProgramDraft: ...
