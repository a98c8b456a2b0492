"""Static validation of a generated program before anything runs it: pure functions, no Dagster.

Each finding is a sentence Claude (or a person) can act on; an empty list means the program may run.
The checks follow the program contract (annapurna_resources/llm/prompts.PROGRAM_CONTRACT): it parses,
names nothing undefined (pyflakes), imports only what the host has, loads data with
`dataset_loader`, prints METRICS, reads its time budget, and keeps the XLA rules (xla_lint).
"""

from __future__ import annotations

import ast
import sys

from pyflakes import checker, messages

from annapurna_assets.xla_lint import xla_findings, xla_warnings

# What a program may import: the standard library, torch, numpy and the runtime helpers shipped
# beside it. Anything else is absent on the Trainium host (and would be a network install).
ALLOWED_THIRD_PARTY = {"torch", "numpy", "dataset_loader", "annapurna_device", "torch_xla"}
# pyflakes messages that mean the program will fail when it reaches that line; style-only ones
# (unused imports or variables) are not worth a repair round.
FATAL_PYFLAKES = (
    messages.UndefinedName,
    messages.UndefinedLocal,
    messages.UndefinedExport,
    messages.ImportStarUsage,
    messages.DuplicateArgument,
    messages.ReturnOutsideFunction,
    messages.YieldOutsideFunction,
    messages.ContinueOutsideLoop,
    messages.BreakOutsideLoop,
    messages.TooManyExpressionsInStarredAssignment,
    messages.TwoStarredExpressions,
)


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _prints_metrics(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "METRICS:" in node.value:
            return True
    return False


def _reads_time_budget(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.Attribute) and "time_budget_s" in (
            node.id if isinstance(node, ast.Name) else node.attr
        ):
            return True
        if isinstance(node, ast.Constant) and node.value == "ANNAPURNA_TIME_BUDGET_S":
            return True
    return False


def pyflakes_findings(tree: ast.AST, filename: str = "program.py") -> list[str]:
    found = checker.Checker(tree, filename=filename)
    out = []
    for m in sorted(found.messages, key=lambda m: (m.lineno, m.col)):
        if isinstance(m, FATAL_PYFLAKES):
            out.append(f"line {m.lineno}: {m.message % m.message_args}")
    return out


def import_findings(tree: ast.AST) -> list[str]:
    stdlib = set(sys.stdlib_module_names)
    return [
        f"imports `{name}`, which the host does not have; use only the standard library, torch and numpy"
        for name in sorted(_imports(tree) - stdlib - ALLOWED_THIRD_PARTY)
    ]


def validate_program(code: str) -> list[str]:
    """Findings of the program contract checks (see annapurna_resources/llm/prompts.PROGRAM_CONTRACT)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [f"syntax error at line {e.lineno}: {e.msg}"]
    except ValueError as e:  # e.g. NUL bytes in the source
        return [f"not a Python program: {e}"]
    findings: list[str] = []
    imports = _imports(tree)
    if "dataset_loader" not in imports:
        findings.append("does not load its data with `from dataset_loader import load_dataset`")
    if "torch" not in imports:
        findings.append("does not import torch")
    if not _prints_metrics(tree):
        findings.append("never prints a `METRICS: {json}` line")
    if not _reads_time_budget(tree):
        findings.append("never reads its time budget (`time_budget_s()` from annapurna_device)")
    findings += import_findings(tree)
    findings += pyflakes_findings(tree)
    findings += xla_findings(tree)
    return findings


def program_warnings(code: str) -> list[str]:
    """Advisory findings (slow on XLA, not wrong): kept in the metadata, never a rejection."""
    try:
        return xla_warnings(ast.parse(code))
    except (SyntaxError, ValueError):
        return []
