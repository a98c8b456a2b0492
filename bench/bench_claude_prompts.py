"""Tokens per paper of each Claude prompt, and the share of the bill prompt caching saves.

Run by hand: `.venv/bin/python bench/bench_claude_prompts.py [excerpt_chars]`.

Builds the real requests ClaudeLLM sends (claude_prompts.py) for every paper of the demo corpus,
with a text excerpt of `excerpt_chars` (default 4000, what the judgments asset passes) and five
similar papers, and splits each prompt into its fixed part (tools + system: the same for every
paper, so cacheable) and its per-paper part. Sizes are estimates at 4 characters per token (no
tokenizer runs offline); bills use the real `usage` fields. Output sizes: a judgment is its tool
input; a program is the offline baseline's program for the same paper, as a stand-in of its size.

The saving compares N calls that each pay the whole prompt with N calls where the first writes the
fixed part to the cache (1.25x the input price) and the rest read it (0.1x), for the model each
prompt runs on by default and, for contrast, on a model whose cache minimum the prefix clears.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annapurna_resources.llm import DEFAULT_RESEARCH_FOCUS, Judgment, PaperForLLM  # noqa: E402
from annapurna_resources.llm import claude_prompts as prompts  # noqa: E402
from annapurna_resources.llm.claude import ANTHROPIC_CODE_MODEL, ANTHROPIC_JUDGE_MODEL  # noqa: E402
from annapurna_resources.llm.offline import OfflineLLM  # noqa: E402
from annapurna_resources.llm.pricing import caching_saving_share, price_for, usage_cost_usd  # noqa: E402
from annapurna_resources.sources.demo import load_corpus  # noqa: E402

JUDGMENT = Judgment(relevant=True, relevance=0.8, novelty=0.6, task_family="image_classification",
                    dataset="cifar10", reasons="A trainable method that fits the focus; CIFAR-10 shows its claim.")


def main() -> None:
    excerpt_chars = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    corpus = load_corpus()
    papers = [PaperForLLM(paper_id=p["paper_id"], title=p["title"], authors=p["authors"], abstract=p["abstract"],
                          text_excerpt=(p["abstract"] + "\n") * (excerpt_chars // max(len(p["abstract"]), 1) + 1),
                          venue=p["venue"], year=p["year"]) for p in corpus]
    for p in papers:
        p.text_excerpt = p.text_excerpt[:excerpt_chars]
    offline = OfflineLLM()

    judge_fixed = prompts.estimate_tokens([prompts.judge_tool(), *prompts.judge_system(DEFAULT_RESEARCH_FOCUS)])
    code_fixed = prompts.estimate_tokens(prompts.code_system())
    judge_var, code_var, code_out = [], [], []
    judge_out = prompts.estimate_tokens(JUDGMENT.model_dump_json())
    for i, paper in enumerate(papers):
        similar = [q for q in papers if q is not paper][i % 5: i % 5 + 5]
        judge_var.append(prompts.estimate_tokens(prompts.judge_user(paper, similar)))
        code_var.append(prompts.estimate_tokens(prompts.code_user(paper, JUDGMENT, None)))
        code_out.append(prompts.estimate_tokens(offline.write_program(paper, JUDGMENT).code))

    n = len(papers)
    rows = [
        ("judge", ANTHROPIC_JUDGE_MODEL, judge_fixed, statistics.mean(judge_var), judge_out),
        ("code", ANTHROPIC_CODE_MODEL, code_fixed, statistics.mean(code_var), statistics.mean(code_out)),
    ]
    print(f"{n} demo papers, text excerpt {excerpt_chars} chars; tokens estimated at 4 chars/token\n")
    print(f"{'prompt':6} {'model':28} {'fixed':>6} {'per-paper':>9} {'output':>7} {'$/paper':>9} "
          f"{'cache min':>9} {'saved':>6}")
    for name, model, fixed, var, out in rows:
        cost = usage_cost_usd(model, fixed + round(var), round(out))
        saved = caching_saving_share(model, fixed, round(var), round(out), n)
        print(f"{name:6} {model:28} {fixed:6d} {var:9.0f} {out:7.0f} {cost:9.5f} "
              f"{price_for(model).min_cacheable_tokens:9d} {saved:6.1%}")
    print("\nthe same prompts on a model with a 1024-token cache minimum (claude-sonnet-4-5 prices):")
    for name, _, fixed, var, out in rows:
        saved = caching_saving_share("claude-sonnet-4-5", fixed, round(var), round(out), n)
        input_share = fixed / (fixed + var)
        print(f"{name:6} fixed part = {input_share:5.1%} of the prompt; caching saves {saved:5.1%} of the bill "
              f"(prefix {'cached' if fixed >= 1024 else 'below the minimum, not cached'})")


if __name__ == "__main__":
    main()
