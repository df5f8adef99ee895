"""A tiny, safe arithmetic language for sweep values such as ``"2 * concurrency"``.

Invariants: nothing is executed. The text is parsed with ``ast.parse`` (which never runs
code) and only a whitelist of node types is evaluated: numbers, the names passed in,
``+ - * / //``, unary minus, parentheses, and the calls ``min``, ``max``, ``ceil``, ``floor``,
``round``. Attribute access, subscripts, strings, power, lambdas, comprehensions and every
other name are refused, and the text is capped at 200 characters so that evaluation cost is
bounded.
"""

from __future__ import annotations

import ast
import math
import operator

MAX_LEN = 200
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv}
_FUNCS = {"min": min, "max": max, "ceil": math.ceil, "floor": math.floor, "round": round}


class ExprError(ValueError):
    """The expression is not in the language or cannot be evaluated."""


def evaluate(text: str, names: dict[str, float]) -> float:
    """Evaluate ``text`` with ``names`` bound; raise ``ExprError`` for anything else."""
    if not isinstance(text, str) or len(text) > MAX_LEN:
        raise ExprError(f"an expression of at most {MAX_LEN} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"arithmetic such as '2 * concurrency' ({e.msg})") from None
    return _eval(tree.body, names)


def _eval(node: ast.AST, names: dict[str, float]) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ExprError(f"names {sorted(names)}; unknown name {node.id!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, names), _eval(node.right, names)
        if isinstance(node.op, (ast.Div, ast.FloorDiv)) and right == 0:
            raise ExprError("a non-zero divisor")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand, names)
        return -v if isinstance(node.op, ast.USub) else v
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
            and not node.keywords and 1 <= len(node.args) <= 4):
        return _FUNCS[node.func.id](*(_eval(a, names) for a in node.args))
    raise ExprError(f"numbers, names {sorted(names)}, + - * / //, parentheses and "
                    f"{sorted(_FUNCS)}; not {type(node).__name__}")
