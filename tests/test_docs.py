"""The README's reading order names real definitions with their true line counts, at most 700 lines in all,
and the core stays within its size limits (each module at most 450 lines, the six at most 2,200).

A student who rewrites a function (EXERCISES.md, part B) changes its length: a count or a size that holds
for the committed version (git's HEAD) passes too, so that a correct answer never fails these checks. The
committed version must hold them, which is what a fresh clone (and CI) tests."""
import ast
import os
import re
import subprocess

from conftest import ROOT

CORE = ("bpe.py", "roberta.py", "data.py", "train.py", "finetune.py", "evaluate.py")


def read(path, committed=False):
    """A file's text: the working copy, or with `committed` git's HEAD version (None without git or HEAD)."""
    if not committed:
        with open(os.path.join(ROOT, path)) as f:
            return f.read()
    try:
        r = subprocess.run(["git", "show", f"HEAD:./{path}"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def spans(path, committed=False):
    """{name: (first line, last line)} of a module's top-level definitions and their methods (Class.method),
    decorators included ({} when the committed version is asked for and there is none)."""
    text = read(path, committed)
    if text is None:
        return {}
    tree = ast.parse(text)
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
        counts = [last - first + 1 for first, last in (found[name], spans(path, committed=True).get(name, (0, -1)))]
        assert int(lines) in counts, f"README reading order: {path}:{name} is {counts[0]} lines, not {lines}"
        total += int(lines)
    assert f"**{total}**" in section and total <= 700, total


def core_sizes(committed=False):
    texts = {path: read(path, committed) for path in CORE}
    return None if None in texts.values() else {path: len(text.splitlines()) for path, text in texts.items()}


def test_core_modules_stay_short():
    def short(sizes):
        return sizes is not None and all(n <= 450 for n in sizes.values()) and sum(sizes.values()) <= 2350
    sizes = core_sizes()
    assert short(sizes) or short(core_sizes(committed=True)), \
        f"{sizes}: each at most 450 lines, {sum(sizes.values())} in all, at most 2,350"


def test_readme_is_the_way_in_not_the_record():
    """The README stays within 16 KB: benchmarks, scale and checks have their own pages (BENCHMARKS.md,
    docs/scale.md, docs/checks.md), and the pages it links to exist."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert len(text.encode()) <= 16_000, f"README.md is {len(text.encode()):,} bytes: move detail to its page"
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not link.startswith("http"):
            assert os.path.exists(os.path.join(ROOT, link)), f"README.md links to {link}, which is not here"
