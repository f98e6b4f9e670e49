"""The layers are what machinery/__init__.py says: the core imports only leaves (machinery modules that import
nothing of the core, however indirectly); a sub-package the core imports from holds leaves only; the
sub-packages import each other one way. A core module's `if __name__ == "__main__":` hand-over is the one
import that runs upward."""
import ast
import os

from conftest import ROOT

CORE = ("bpe", "roberta", "data", "train", "finetune", "evaluate")
COMMANDS = ("experiments", "bench")


def modules():
    """{module name: path} of the core, the commands beside it and every machinery module."""
    found = {name: os.path.join(ROOT, name + ".py") for name in CORE + COMMANDS}
    for folder, _, names in os.walk(os.path.join(ROOT, "machinery")):
        for name in names:
            if name.endswith(".py") and name != "__init__.py":
                path = os.path.join(folder, name)
                found[os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")] = path
    return found


def is_main_block(node):
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Compare) and getattr(test.left, "id", "") == "__name__"


def imports(path, known):
    """The project's modules that a file imports, anywhere in it but its __main__ hand-over."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out, todo = set(), [n for n in tree.body if not is_main_block(n)]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
            out |= {node.module} & set(known)
        todo.extend(ast.iter_child_nodes(node))
    return out


def graph():
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def reaches(g, start, targets):
    seen, todo = set(), list(g[start])
    while todo:
        m = todo.pop()
        if m in targets:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(g.get(m, ()))
    return False


def test_the_core_imports_only_leaves():
    g = graph()
    for core in CORE:
        for m in g[core]:
            if m.startswith("machinery."):
                assert not reaches(g, m, CORE), f"{core}.py imports {m}, which imports the core"


def test_no_subpackage_holds_both_a_module_the_core_imports_and_one_that_imports_the_core():
    g = graph()
    below = {m.split(".")[1] for core in CORE for m in g[core] if m.startswith("machinery.")}
    assert below
    for m in g:
        if m.startswith("machinery.") and m.split(".")[1] in below:
            assert not reaches(g, m, CORE), f"{m} imports the core, beside modules the core imports"


def test_subpackages_import_each_other_one_way():
    g = graph()
    edges = {(a.split(".")[1], b.split(".")[1]) for a in g if a.startswith("machinery.")
             for b in g[a] if b.startswith("machinery.") and a.split(".")[1] != b.split(".")[1]}
    both = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
    assert not both, f"these sub-packages import each other: {both}"
