"""A static lint for the XLA rules of the program contract (annapurna_resources/llm/prompts.py).

Trainium runs PyTorch through XLA: each distinct graph is compiled once (minutes), so code that
changes the graph every step, waits on the device every step, or uses ops XLA lowers badly makes a
run crawl or fail there while it runs fine on a CPU. These checks catch the patterns we have seen,
from the syntax alone; a finding names the line, the pattern and its fix, so Claude can repair it.

They are heuristics (no type inference): each rule matches only shapes that are wrong in practice,
so a finding is worth a repair round. Pure functions over an `ast` tree, no imports of torch.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

TRANSFORMER_CLASSES = {"TransformerEncoder", "TransformerDecoder", "Transformer"}
SYNC_CALLS = {"step_sync", "mark_step", "sync"}
HOST_READS = {"item", "cpu", "tolist", "numpy"}
SHAPED_FACTORIES = {"rand", "randn", "ones", "zeros", "full", "empty", "randint", "rand_like", "randn_like",
                    "ones_like", "zeros_like", "full_like", "linspace", "arange"}
RANDOM_MODULES = {"random", "np", "numpy"}


def _name_of(node: ast.AST) -> str:
    """`self.encoder` -> `encoder`, `nn.TransformerEncoder` -> `TransformerEncoder`, `f` -> `f`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _calls(node: ast.AST) -> Iterator[ast.Call]:
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            yield child


def _own_classes(tree: ast.AST) -> set[str]:
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def _transformer_names(tree: ast.AST, own: set[str]) -> set[str]:
    """Names (variables or attributes) that hold torch's nn.TransformerEncoder/Decoder (not a class
    of the program's own that happens to share the name)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            cls = _name_of(node.value.func)
            if cls in TRANSFORMER_CLASSES and cls not in own:
                names.update(_name_of(t) for t in node.targets if _name_of(t))
    return names


def _mask_keyword(tree: ast.AST) -> list[str]:
    own = _own_classes(tree)
    holders = _transformer_names(tree, own)
    findings = []
    for call in _calls(tree):
        if not any(k.arg == "mask" for k in call.keywords):
            continue
        callee = _name_of(call.func)
        # Encoder/decoder modules are called directly (`self.encoder(x, mask=m)`); their `.forward` too.
        if callee == "forward" and isinstance(call.func, ast.Attribute):
            callee = _name_of(call.func.value)
        if callee in holders or (callee in TRANSFORMER_CLASSES and callee not in own):
            findings.append(
                f"line {call.lineno}: `mask=` keyword to a TransformerEncoder/Decoder; pass the mask by "
                "position or as `src_key_padding_mask=` (XLA rule)"
            )
    return findings


def _looks_like_mask(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        return _looks_like_mask(node.operand) or isinstance(node.operand, ast.Name | ast.Attribute)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr | ast.BitXor):
        return _looks_like_mask(node.left) or _looks_like_mask(node.right)
    if isinstance(node, ast.Name | ast.Attribute):
        return "mask" in _name_of(node).lower()
    if isinstance(node, ast.Call):
        return _name_of(node.func) in {"isnan", "isinf", "isfinite", "logical_and", "logical_or", "logical_not",
                                       "eq", "ne", "gt", "lt", "ge", "le"}
    return False


def _masked_assignment(tree: ast.AST) -> list[str]:
    findings = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript) and _looks_like_mask(target.slice):
                findings.append(
                    f"line {node.lineno}: in-place masked assignment `{ast.unparse(target)} = ...`; use "
                    "`torch.where(mask, value, x)` or `x.masked_fill(mask, value)` (XLA rule)"
                )
    for call in _calls(tree):
        if _name_of(call.func) in {"masked_fill_", "masked_scatter_"}:
            findings.append(
                f"line {call.lineno}: in-place `{_name_of(call.func)}`; use the out-of-place "
                f"`{_name_of(call.func)[:-1]}` and assign the result (XLA rule)"
            )
    return findings


def _visibly_1d(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in {"flatten", "ravel"}:
            return True
        if node.func.attr in {"view", "reshape"} and len(node.args) == 1:
            arg = node.args[0]
            return isinstance(arg, ast.UnaryOp) and isinstance(arg.operand, ast.Constant) and arg.operand.value == 1
    if isinstance(node, ast.Subscript):
        # a[i] of a 2-D tensor is a row; a[:, j] or a[i, :] with a tuple index keeps more than one axis
        # only if a slice remains, so a plain single index counts as 1-D.
        return not isinstance(node.slice, ast.Tuple | ast.Slice)
    return False


def _torch_dot(tree: ast.AST) -> list[str]:
    findings = []
    for call in _calls(tree):
        dotted = _dotted(call.func)
        is_method = isinstance(call.func, ast.Attribute) and call.func.attr == "dot" and dotted.split(".")[0] not in {
            "np", "numpy", "torch"}
        if dotted == "torch.dot" or is_method:
            args = call.args if dotted == "torch.dot" else [call.func.value, *call.args]  # type: ignore[attr-defined]
            if len(args) == 2 and all(_visibly_1d(a) for a in args):
                continue
            findings.append(
                f"line {call.lineno}: `torch.dot` takes 1-D tensors only; for batches use `(a * b).sum(-1)`, "
                "`torch.einsum` or `@` (XLA rule)"
            )
    return findings


def _random_floats(tree: ast.AST) -> set[str]:
    """Names assigned a Python float that changes between steps (random draws, `.item()` reads)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        dotted = _dotted(node.value.func)
        root = dotted.split(".")[0]
        if (root in RANDOM_MODULES and ("random" in dotted or root == "random")) or _name_of(node.value.func) == "item":
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _lerp_weights(tree: ast.AST) -> list[str]:
    changing = _random_floats(tree)
    findings = []
    for call in _calls(tree):
        name = _name_of(call.func)
        if name not in {"lerp", "lerp_"}:
            continue
        # torch.lerp(start, end, weight) or start.lerp(end, weight)
        is_function = _dotted(call.func) == "torch.lerp"
        args = call.args[2:] if is_function else call.args[1:]
        weight = args[0] if args else next((k.value for k in call.keywords if k.arg == "weight"), None)
        if weight is None:
            continue
        if isinstance(weight, ast.Call) and _name_of(weight.func) in SHAPED_FACTORIES and (
            weight.args or _name_of(weight.func).endswith("_like")
        ):
            findings.append(
                f"line {call.lineno}: interpolation weight `{ast.unparse(weight)}` is a non-scalar tensor; use a "
                "0-dim tensor (XLA rule)"
            )
        elif isinstance(weight, ast.Name) and weight.id in changing:
            findings.append(
                f"line {call.lineno}: interpolation weight `{weight.id}` is a Python float that changes each "
                "step, so XLA compiles a new graph every step; use `torch.tensor(w, device=device)` (XLA rule)"
            )
    return findings


def _is_training_loop(loop: ast.For | ast.While) -> bool:
    return any(_name_of(c.func) == "backward" for c in _calls(loop))


def _inner_loops(node: ast.AST) -> Iterator[ast.For | ast.While]:
    for child in ast.walk(node):
        if isinstance(child, ast.For | ast.While) and child is not node:
            yield child


def _unguarded_calls(statements: list[ast.stmt]) -> Iterator[ast.Call]:
    """Calls that run on every pass of the loop body: not under an `if` (statement or expression),
    a nested loop or a function."""

    def walk(node: ast.AST) -> Iterator[ast.Call]:
        if isinstance(node, ast.IfExp):
            yield from walk(node.test)
            return
        if isinstance(node, ast.Lambda | ast.FunctionDef | ast.AsyncFunctionDef):
            return
        if isinstance(node, ast.Call):
            yield node
        for child in ast.iter_child_nodes(node):
            yield from walk(child)

    for stmt in statements:
        if isinstance(stmt, ast.If | ast.For | ast.While | ast.FunctionDef | ast.AsyncFunctionDef | ast.Try):
            continue
        yield from walk(stmt)


def _step_loops(tree: ast.AST) -> list[ast.For | ast.While]:
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For | ast.While) and _is_training_loop(n)]
    # The step loop is the innermost loop that still runs backward().
    return [loop for loop in loops if not any(_is_training_loop(inner) for inner in _inner_loops(loop))]


def _step_sync(tree: ast.AST) -> list[str]:
    findings = []
    for loop in _step_loops(tree):
        if not any(_name_of(c.func) in SYNC_CALLS for c in _calls(loop)):
            findings.append(
                f"line {loop.lineno}: the training loop never calls `step_sync()`; call it once per step, "
                "after `optimizer.step()` (XLA rule)"
            )
    return findings


def _host_reads_per_step(tree: ast.AST) -> list[str]:
    findings = []
    for loop in _step_loops(tree):
        for call in _unguarded_calls(loop.body):
            if isinstance(call.func, ast.Attribute) and call.func.attr in HOST_READS and not call.args:
                findings.append(
                    f"line {call.lineno}: `.{call.func.attr}()` on every training step makes the host wait "
                    "for the device; accumulate on the device and read it every N steps (XLA rule)"
                )
    return findings


def _by_line(findings: list[str]) -> list[str]:
    def line(f: str) -> int:
        return int(f.split(":")[0].removeprefix("line ")) if f.startswith("line ") else 0

    return sorted(dict.fromkeys(findings), key=line)


def xla_warnings(tree: ast.AST) -> list[str]:
    """Patterns that only slow a run down on XLA (a host read per step still computes the right
    thing): recorded and shown to Claude when it repairs a program anyway, but never a rejection."""
    return _by_line(_host_reads_per_step(tree))


def xla_findings(tree: ast.AST) -> list[str]:
    """The XLA-rule findings of a parsed program that reject it (they fail, or recompile every
    step, on Trainium), in line order."""
    return _by_line(
        _mask_keyword(tree) + _masked_assignment(tree) + _torch_dot(tree) + _lerp_weights(tree) + _step_sync(tree)
    )
