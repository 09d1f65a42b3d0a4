"""The README's API tour runs as printed, and the values its comments state are the values it computes.

Every ```python block of README.md's "## API tour" section (up to the next "## " heading; shell blocks
are not python blocks) is executed in order, in one namespace, in a temporary working directory (the
tour saves files). A top-level expression whose comment starts with a stated value is checked against it:

- ``# <= 1e-10: ...``            the value is at most the bound;
- ``# 29.44: ...`` / ``# 0.0533 ...``  a number: equal to within half a unit of its last printed digit;
- ``# {'a': 6}`` / ``# ('x', 0.0): ...``  a Python literal (the whole comment, or the text before a ": "):
  equal (floats within half a unit of their last printed digit).

The tour loads MNIST through kernelgen's loader (cached after the first download); where MNIST cannot be
obtained the test skips, naming the error.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from decimal import Decimal
from pathlib import Path

import pytest

from kernelgen.errors import DataUnavailableError

README = Path(__file__).resolve().parents[1] / "README.md"
_NUMBER = re.compile(r"^(?P<op><=\s*)?(?P<num>[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?=[:\s,;)]|$)")


def tour_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block in the "## API tour" section."""
    lines = text.splitlines()
    start = lines.index("## API tour")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks, i = [], start
    while i < end:
        if lines[i].strip() == "```python":
            j = next(k for k in range(i + 1, end) if lines[k].strip() == "```")
            blocks.append((i + 2, "\n".join(lines[i + 1:j]) + "\n"))
            i = j
        i += 1
    return blocks


def _half_unit(literal: str) -> float:
    """Half a unit of the last printed digit of a number's text ("0.0533" -> 5e-5, "29.44" -> 5e-3)."""
    return 0.5 * 10.0 ** Decimal(literal.lower().split("e")[0]).as_tuple().exponent * (
        10.0 ** int(literal.lower().split("e")[1]) if "e" in literal.lower() else 1.0)


def stated(comment: str):
    """(kind, claim) stated by a comment, or None: ("le", bound), ("num", (value, tol)), ("lit", text)."""
    c = comment.lstrip("#").strip()
    for cand in [c] + [c[:m.start()] for m in re.finditer(r": ", c)]:
        if cand[:1] in "({['\"":
            try:
                ast.literal_eval(cand)
                return "lit", cand
            except (ValueError, SyntaxError):
                pass
    m = _NUMBER.match(c)
    if m is None:
        return None
    if m["op"]:
        return "le", float(m["num"])
    return "num", (float(m["num"]), _half_unit(m["num"]))


def _equal(value, text: str) -> bool:
    """value == the literal ``text``; its floats within half a unit of their last printed digit."""
    expected = ast.literal_eval(text)
    floats = iter(re.findall(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?", text))

    def eq(v, e):
        if isinstance(e, float):
            return abs(float(v) - e) <= _half_unit(next(floats))
        if isinstance(e, (tuple, list)):
            return len(v) == len(e) and all(eq(a, b) for a, b in zip(v, e))
        if isinstance(e, dict):
            return set(v) == set(e) and all(eq(v[k], e[k]) for k in e)
        return v == e

    return eq(value, expected)


def _comments(code: str) -> dict[int, str]:
    return {tok.start[0]: tok.string for tok in tokenize.generate_tokens(io.StringIO(code).readline)
            if tok.type == tokenize.COMMENT}


def run_tour(blocks, namespace: dict) -> list[str]:
    """Execute the blocks in order in ``namespace``; return one line per stated value that was checked."""
    checked = []
    for first_line, code in blocks:
        comments = _comments(code)
        for stmt in ast.parse(code).body:
            where = f"README.md:{first_line + stmt.lineno - 1}"
            if isinstance(stmt, ast.Expr):
                value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
                claim = stated(comments.get(stmt.lineno, ""))
                if claim is None:
                    continue
                kind, what = claim
                if kind == "le":
                    ok = float(value) <= what
                elif kind == "num":
                    ok = abs(float(value) - what[0]) <= what[1]
                else:
                    ok = _equal(value, what)
                assert ok, f"{where}: {ast.unparse(stmt.value)} is {value!r}; the README states {comments[stmt.lineno]}"
                checked.append(f"{where}: {ast.unparse(stmt.value)}")
            else:
                exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)
    return checked


def test_readme_api_tour_runs_and_states_its_values(tmp_path, monkeypatch):
    blocks = tour_blocks(README.read_text())
    assert blocks, "README.md's '## API tour' section has no ```python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_tour"}
    try:
        checked = run_tour(blocks, namespace)
    except DataUnavailableError as exc:
        pytest.skip(f"MNIST unavailable: {exc}"[:300])
    # the tour states its residual bound, the RKHS norm, what ran, the test error and the grid search's choice
    assert len(checked) >= 5, checked
    assert (tmp_path / "fit.npz").is_file() and (tmp_path / "alone.npz").is_file()
    assert namespace["fit"].relative_residual <= 1e-10  # the NTK fit with its factor: certified like the first


@pytest.mark.parametrize("comment, kind, ok_value, bad_value", [
    ("# <= 1e-10: the residual", "le", 3e-11, 2e-10),
    ("# 29.44: sqrt(...)", "num", 29.4449, 29.4451),
    ("# 0.0533 test error (0.0266 at n = 10,000)", "num", 0.05334, 0.0534),
    ("# {'kernel__bandwidth': 6}", "lit", {"kernel__bandwidth": 6}, {"kernel__bandwidth": 5}),
    ("# ('cholesky', 'scipy', 'float64', 0.0): what ran", "lit", ("cholesky", "scipy", "float64", 0.0),
     ("cholesky", "scipy", "float32", 0.0)),
])
def test_stated_values_are_read_and_can_fail(comment, kind, ok_value, bad_value):
    """The checker itself: each kind of stated value is recognised, and a wrong value fails it."""
    src = f"x  {comment}\n"
    for value, ok in [(ok_value, True), (bad_value, False)]:
        assert stated(comment)[0] == kind
        if ok:
            run_tour([(1, src)], {"x": value})
        else:
            with pytest.raises(AssertionError, match="the README states"):
                run_tour([(1, src)], {"x": value})


def test_comments_without_a_stated_value_are_not_checked():
    for comment in ["# versions, BLAS and threads", "# new targets (n, k), same factor", "# DataMismatchError"]:
        assert stated(comment) is None
    assert run_tour([(1, "x = 1\nx  # what ran\n")], {}) == []
