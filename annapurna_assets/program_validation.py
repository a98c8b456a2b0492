"""Static validation of a generated program before anything runs it: pure functions, no Dagster.

Each finding is a sentence Claude (or a person) can act on; an empty list means the program may run.
"""

from __future__ import annotations

import ast


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def _prints_metrics(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "METRICS:" in node.value:
            return True
    return False


def validate_program(code: str) -> list[str]:
    """Findings of the program contract checks (see annapurna_resources/llm/prompts.PROGRAM_CONTRACT)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [f"syntax error at line {e.lineno}: {e.msg}"]
    findings: list[str] = []
    imports = _imports(tree)
    if "dataset_loader" not in imports:
        findings.append("does not load its data with `from dataset_loader import load_dataset`")
    if "torch" not in imports:
        findings.append("does not import torch")
    if not _prints_metrics(tree):
        findings.append("never prints a `METRICS: {json}` line")
    return findings
