import pytest

from runner.sweep.expr import ExprError, evaluate


@pytest.mark.parametrize(("text", "want"), [
    ("2 * concurrency", 16), ("concurrency*2+1", 17), ("(concurrency + 2) // 3", 3),
    ("max(10, concurrency)", 10), ("ceil(concurrency / 3)", 3), ("-concurrency + 10", 2), ("5", 5),
])
def test_arithmetic(text, want):
    assert evaluate(text, {"concurrency": 8}) == want


@pytest.mark.parametrize("hostile", [
    "__import__('os').system('touch /tmp/pwned')", "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd').read()", "9 ** 9 ** 9", "'a' * 10", "lambda: 1", "[x for x in (1, 2)]",
    "concurrency.__class__", "exec('1')", "eval('1')", "globals()", "concurrency if 1 else 2",
    "{1: 2}", "b'x'", "min(concurrency, key=abs)", "1; 2", "import os", "x" * 500, "", "1 +",
    "getattr(concurrency, 'real')", "max(*[1, 2])", "f'{concurrency}'",
])
def test_hostile_strings_are_refused_without_running(hostile, tmp_path):
    with pytest.raises(ExprError):
        evaluate(hostile, {"concurrency": 8})


def test_division_by_zero_is_an_expr_error():
    with pytest.raises(ExprError, match="non-zero"):
        evaluate("concurrency / 0", {"concurrency": 8})
