"""The README's reading order names real definitions with their true line counts, at most 700 lines in all,
and the core stays within its size limits (each module at most 450 lines, the six at most 2,200).

A student who rewrites a function (EXERCISES.md) changes its length: a count or a size that holds for the
committed version (git's HEAD) passes too, so that a correct answer never fails these checks. The committed
version must hold them, which is what a fresh clone (and CI) tests. A download without git has no committed
version: there a definition that EXERCISES.md asks to edit may differ from its count, and a module's size is
taken with the reading order's definitions at their counts (every other count is still exact)."""
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


def reading_order():
    """The README's reading order: its section's text and its rows, [(file, definition, lines)]."""
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("## Read the code")[1].split("\n## ")[0]
    rows = re.findall(r"^\| \d+ \| `(\w+\.py)` \| `([\w.]+)` \| (\d+) \|", section, re.M)
    return section, [(path, name, int(lines)) for path, name, lines in rows]


def editable():
    """{(file, definition)} that EXERCISES.md asks a student to edit: every core `module.Name.attr` it cites, and
    the definitions around it (`roberta.SelfAttention.forward` changes SelfAttention's count too)."""
    with open(os.path.join(ROOT, "EXERCISES.md")) as f:
        cited = re.findall(r"`(%s)\.(?!py\b)([A-Za-z_][\w.]*)`" % "|".join(p[:-3] for p in CORE), f.read())
    return {(f"{module}.py", ".".join(name.split(".")[:i])) for module, name in cited
            for i in range(1, name.count(".") + 2)}


def test_reading_order_is_true_to_the_code():
    section, rows = reading_order()
    assert len(rows) >= 20
    without_git = read("README.md", committed=True) is None
    working, committed = ({path: spans(path, c) for path in CORE} for c in (False, True))
    for path, name, lines in rows:
        assert name in working[path], f"README reading order: {path} has no {name}"
        counts = [last - first + 1 for first, last in (working[path][name], committed[path].get(name, (0, -1)))]
        assert lines in counts or (without_git and (path, name) in editable()), \
            f"README reading order: {path}:{name} is {counts[0]} lines, not {lines}"
    total = sum(lines for _, _, lines in rows)
    assert f"**{total}**" in section and total <= 700, total


def test_editable_definitions_are_read_from_exercises():
    """The exemption above covers the part-B functions and the classes around them, and nothing uncited."""
    found = editable()
    assert {("roberta.py", "SelfAttention"), ("roberta.py", "SelfAttention.forward"), ("data.py", "mask_tokens"),
            ("bpe.py", "merge_word"), ("roberta.py", "linear_lr")} <= found
    assert ("bpe.py", "Tokenizer.encode") not in found and ("data.py", "collate") not in found


def core_sizes(committed=False):
    texts = {path: read(path, committed) for path in CORE}
    return None if None in texts.values() else {path: len(text.splitlines()) for path, text in texts.items()}


def sizes_at_the_counts(sizes):
    """Each module's size with the reading order's definitions at the README's counts: without git, the committed
    sizes when only those definitions were rewritten (an exercise's answer)."""
    sizes = dict(sizes)
    for path, name, lines in reading_order()[1]:
        first, last = spans(path).get(name, (1, lines))
        sizes[path] -= last - first + 1 - lines
    return sizes


def test_core_modules_stay_short():
    def short(sizes):
        return sizes is not None and all(n <= 450 for n in sizes.values()) and sum(sizes.values()) <= 2350
    sizes = core_sizes()
    committed = core_sizes(committed=True) or sizes_at_the_counts(sizes)
    assert short(sizes) or short(committed), \
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


def repository_files():
    """The repository's files: git's list, or without git (a download) every file but caches, what .gitignore
    leaves out at the top (a student's out/, experiments/), hidden folders but .ci and virtual environments."""
    try:
        r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        if r.returncode == 0 and r.stdout:
            return r.stdout.strip("\0").split("\0")
    except (OSError, subprocess.SubprocessError):
        pass
    with open(os.path.join(ROOT, ".gitignore")) as f:
        top = {line.strip().strip("/") for line in f if line.startswith("/")}
    found = []
    for folder, dirs, names in os.walk(ROOT):
        ignored = (top if folder == ROOT else set()) | {"__pycache__"}
        dirs[:] = [d for d in dirs if d not in ignored and (d == ".ci" or not d.startswith("."))
                   and not os.path.isfile(os.path.join(folder, d, "pyvenv.cfg"))]
        found += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names if n not in ignored]
    return found


def test_no_file_names_a_path_of_the_machine_it_was_written_on():
    """A cited script lives in the repository and a command's folders are relative (out/, ../shared/data), so
    that a reader elsewhere can rerun it: no text file names a folder under the root of one machine (its
    work or temporary folders, root's or a user's home)."""
    machine_path = re.compile(r"(?<![\w.~])/(?:work|tmp|root|home/\w+|Users/\w+)/")
    found = []
    for path in repository_files():
        try:
            with open(os.path.join(ROOT, path), "rb") as f:
                data = f.read()
        except OSError:
            continue  # listed by git, gone from the working copy
        if b"\0" not in data:  # text, not a checkpoint
            found += [f"{path}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}"
                      for text in [data.decode("utf-8", "replace")] for m in machine_path.finditer(text)]
    assert not found, found
