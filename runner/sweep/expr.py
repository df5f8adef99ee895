"""A tiny, safe arithmetic language for sweep values such as ``"2 * concurrency"``.

Invariants: nothing is executed. The text is parsed with ``ast.parse`` (which never runs
code) and only a whitelist of node types is evaluated: numbers, the names passed in,
``+ - * / //``, unary minus, parentheses, and the calls ``min``/``max`` (2 to 8 arguments) and
``ceil``/``floor``/``round`` (one argument). Division by zero, overflow and non-finite results
are ``ExprError``s naming the values at which they happen. Attribute access, subscripts,
strings, power, lambdas, comprehensions and every other name are refused, and the text is
capped at 200 characters so that evaluation cost is bounded.
"""

from __future__ import annotations

import ast
import math
import operator

MAX_LEN = 200
#: Integer results beyond this are refused (they only come from typos, and overflow floats).
MAX_INT = 10**18
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv}
_FUNCS = {"min": min, "max": max, "ceil": math.ceil, "floor": math.floor, "round": round}
#: How many arguments each function takes: (fewest, most).
_ARITY = {"min": (2, 8), "max": (2, 8), "ceil": (1, 1), "floor": (1, 1), "round": (1, 1)}


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
    try:
        value = _eval(tree.body, names)
    except (OverflowError, ValueError, TypeError) as e:
        if isinstance(e, ExprError):
            raise
        raise ExprError(f"an expression that evaluates ({type(e).__name__}: {e})") from None
    if not math.isfinite(value):
        raise ExprError(f"an expression with a finite result (gives {value} at {_at(names)})")
    return value


def _at(names: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(names.items())) or "no names"


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
            raise ExprError(f"a non-zero divisor (it is 0 at {_at(names)})")
        out = _BINOPS[type(node.op)](left, right)
        if isinstance(out, int) and abs(out) > MAX_INT:
            raise ExprError(f"a result below {MAX_INT:.0e} in size")
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand, names)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        lo, hi = _ARITY[node.func.id]
        if node.keywords or not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ExprError(f"{node.func.id}() with {want} argument(s), not {len(node.args) + len(node.keywords)}")
        args = [_eval(a, names) for a in node.args]
        if node.func.id in ("ceil", "floor", "round") and not math.isfinite(args[0]):
            raise ExprError(f"{node.func.id}() of a finite number (gets {args[0]} at {_at(names)})")
        return _FUNCS[node.func.id](*args)
    raise ExprError(f"numbers, names {sorted(names)}, + - * / //, parentheses and "
                    f"{sorted(_FUNCS)}; not {type(node).__name__}")
