"""Every command of README.md and EXERCISES.md works as written, so that a rename can never break a document
again. Each command is taken from the documents (code blocks and inline `python ...`), in document order, and
run in its quickest form:

- a dry run (quick tier): the script's own `main` parses the command with its real options, choices, sub-
  commands and types, and stops where the work would begin (machinery.cli.run does nothing here); the input
  folders it names must exist, be made by a command the documents give before it (the demo makes out/demo and
  cache/demo/data; `data.py download NAME` the cache's NAME; any --out its folder), or lie in the shared data
  folder. Only the README's "Using it" section may name the reader's own files (corpus.txt, tok/, data/, ...);
  every other recipe names real folders;
- `--help` of every script and sub-command the documents name (quick tier);
- the classroom path for real (slow): the quickstart's demo, `evaluate.py perplexity`, the SST-2 finetuning
  recipe and the tiny --data recipe, in a fresh folder, with the tiny options of TINY (few steps, few examples).

Placeholders in the text (`python experiments.py NAME`) take the values in PLACEHOLDERS.
"""
import ast
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED

DOCS = ("README.md", "EXERCISES.md")
PLACEHOLDERS = {"NAME": {"experiments.py": "masking", "data.py": "tinyshakespeare"}}
INPUTS = ("data", "checkpoint", "input", "tokenizer", "glue", "corpus", "predictions", "na_prob_file", "init_from")
OWN_FILES_SECTION = "Using it"  # README's section of the reader's own files (corpus.txt, tok/, data/, ...)
SHELL_ONLY = (["python", "-m", "venv"], ["."], ["pip", "install", "matplotlib"])


# ---------------------------------------------------------------------------------------- the commands
def doc_commands(name):
    """[(section, command line, "block" or "inline")] of a document in order: code-block lines (continuations
    joined) and inline `python ...` spans, each `a && b` cut into its commands."""
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        text = f.read()
    found = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if m.group(1) != "python":
            body = re.sub(r"\\\n\s*", " ", m.group(2))
            found += [(m.start() + i, line.strip(), "block") for i, line in enumerate(body.splitlines())
                      if re.match(r"(\w+=\S+ )*(python|torchrun|pip|\.) ", line.strip())]
    prose = re.sub(r"^```.*?^```", lambda m: " " * len(m.group()), text, flags=re.S | re.M)
    found += [(m.start(), " ".join(m.group(1).split()), "inline")
              for m in re.finditer(r"`((?:\w+=\S+ )*(?:python|torchrun) [^`]+)`", prose)]
    headings = [(m.start(), m.group(1)) for m in re.finditer(r"^#+ (.+)$", prose, re.M)]
    out = []
    for pos, line, kind in sorted(found):
        section = ([h for p, h in headings if p < pos] or [""])[-1]
        out += [(section, part.strip(), kind) for part in line.split("&&")]
    return out


def argv_of(command):
    """The command's words without environment settings (OMP_NUM_THREADS=1) and torchrun's own options."""
    words = shlex.split(command, comments=True)
    while words and re.fullmatch(r"\w+=\S*", words[0]):
        words.pop(0)
    if words[:1] == ["torchrun"]:
        words = ["python"] + words[next(i for i, w in enumerate(words) if w.endswith(".py")):]
    script = words[1] if len(words) > 1 else ""
    return [PLACEHOLDERS[w].get(script, w) if w in PLACEHOLDERS else w for w in words]


ALL = [(doc, section, command) for doc in DOCS for section, command, _ in doc_commands(doc)]


def test_the_documents_have_their_commands():
    scripts = {argv_of(c)[1] for _, _, c in ALL if argv_of(c)[:1] == ["python"]}
    assert {"train.py", "evaluate.py", "finetune.py", "data.py", "bpe.py", "experiments.py", "-m"} <= scripts, scripts
    assert len(ALL) >= 50, len(ALL)


def test_the_quickstart_is_two_commands_and_ci_runs_the_second():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        quickstart = f.read().split("## Quickstart")[1].split("```bash\n")[1].split("```")[0]
    lines = [line.split("#")[0].strip() for line in quickstart.strip().splitlines()]
    assert len(lines) == 2 and lines[0].endswith("python train.py"), lines
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert f.read().strip().splitlines()[-1] == lines[1], "`.ci/run` runs the README's test command exactly"


# ---------------------------------------------------------------------------------------- dry runs
def script_main(script):
    """The function `python SCRIPT argv...` calls with argv."""
    from machinery.basics import cli
    from machinery.commands import bpe_cli, data_cli, evaluate_cli, finetune_cli, roberta_cli, train_cli
    from machinery.lab import command

    def bench_main(argv):  # bench.py handles its own errors: its parse, then cli.run as the others
        import bench
        args = bench.parser().parse_args(argv)
        cli.run(lambda: bench.check(args))
    return {"bpe.py": bpe_cli.main, "data.py": data_cli.main, "evaluate.py": evaluate_cli.main,
            "roberta.py": roberta_cli.main, "experiments.py": command.main, "finetune.py": finetune_cli.main,
            "train.py": train_cli.main, "bench.py": bench_main}[script]


class Refused(Exception):
    pass


def dry_run(argv, monkeypatch, capsys):
    """The parsed options of `python SCRIPT ...` (argv without "python"), parsed by the script's own main, which
    stops where cli.run would start the work; an argparse refusal raises Refused with its one-line message."""
    from machinery.basics import cli
    seen = []

    def stop(work):  # the work's own options, from the function cli.run was handed
        cells = dict(zip(work.__code__.co_freevars, (c.cell_contents for c in work.__closure__ or ())))
        seen.append(cells.get("args"))
    monkeypatch.setattr(cli, "run", stop)
    try:
        script_main(argv[0])(argv[1:])
    except SystemExit as e:
        if e.code == 0 and "--help" in argv:
            return None
        raise Refused(f"refused: {capsys.readouterr().err.strip() or e.code}") from None
    return seen[0] if seen else None


def made_by(argv, args):
    """The folders this command makes (the documents' later commands may name them)."""
    from machinery.commands import corpora, demo
    script = argv[0]
    made = [getattr(args, "out", None)]
    if script == "train.py" and args is not None and not args.data:
        made += [args.out or demo.OUT, demo.DATA, demo.CACHE]
    if script == "data.py" and argv[1:2] == ["download"]:
        made.append(os.path.join(args.cache if args is not None else corpora.DEFAULT_CACHE, argv[2]))
    if script == "experiments.py":
        made.append(getattr(args, "out", None) or "experiments")
    return [os.path.normpath(os.path.expanduser(p)) for p in made if p]


def implied_inputs(argv, args):
    """Inputs a command reads without naming them: `evaluate.py perplexity` alone scores the demo."""
    from machinery.commands import demo
    if argv[:2] == ["evaluate.py", "perplexity"] and args.checkpoint is None:
        return [("checkpoint", demo.OUT)]
    return []


def check_pytest(argv):
    """`python -m pytest ...`: its files exist, its -k names a test there, its -m names a declared marker."""
    with open(os.path.join(ROOT, "pytest.ini")) as f:
        markers = re.findall(r"^\s+(\w+):", f.read(), re.M)
    files = [a for a in argv if a.endswith(".py")]
    for path in files:
        assert os.path.isfile(os.path.join(ROOT, path)), f"`python -m pytest {shlex.join(argv)}`: no {path}"
    for flag, value in zip(argv, argv[1:]):
        if flag == "-m":
            assert set(re.findall(r"\w+", value)) - {"not", "and", "or"} <= set(markers), value
        if flag == "-k":
            texts = [open(os.path.join(ROOT, p)).read() for p in files]
            assert any(re.search(rf"def test_\w*{value}", t) for t in texts), f"-k {value} selects no test"


def check_python_c(code):
    """`python -c CODE`: it compiles, its imports import, and the attributes it uses on them exist; the
    paths it names are the files it makes."""
    tree = ast.parse(code)
    namespace = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([node], []), "<doc>", "exec"), namespace)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in namespace:
            assert hasattr(namespace[node.value.id], node.attr), f"python -c: {node.value.id}.{node.attr} is gone"
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_every_documented_command_parses_and_names_real_folders(monkeypatch, capsys):
    """The dry run of every command, in document order; see the module's docstring. Every problem is listed."""
    monkeypatch.chdir(ROOT)
    made, problems = [], []
    for doc, section, command in ALL:
        try:
            made += check_command(doc, section, command, made, monkeypatch, capsys)
        except (AssertionError, Refused, ValueError) as e:
            problems.append(f"{doc} ({section}): `{command}`: {str(e).splitlines()[0]}")
    assert not problems, "\n".join(problems)


def check_command(doc, section, command, made, monkeypatch, capsys):
    """One command's dry run (AssertionError, Refused or ValueError when it would fail); the paths it makes."""
    argv = argv_of(command)
    if any(argv[:len(s)] == s for s in SHELL_ONLY):
        return []
    if argv[:1] == ["pip"]:
        assert argv[2:4] == ["-r", "requirements.txt"] and os.path.isfile("requirements.txt"), "not pip install -r"
        return []
    assert argv[0] == "python", "not a python command"
    if argv[1:3] == ["-m", "pytest"]:
        check_pytest(argv[3:])
        return []
    if argv[1] == "-c":
        return [os.path.normpath(p) for p in check_python_c(argv[2])]
    if "--glue" in argv and not os.path.isdir(SHARED):
        return []  # names the shared data folder, absent here: its parse checks that SST-2 is there
    args = dry_run(argv[1:], monkeypatch, capsys)
    if argv[1] == "train.py" and args is not None and not args.data:
        from machinery.commands import demo
        demo.check_demo_options(args)  # what the demo would refuse before any work
    inputs = [(key, getattr(args, key, None)) for key in INPUTS] + implied_inputs(argv[1:], args)
    for key, value in inputs if section != OWN_FILES_SECTION else []:
        for path in value if isinstance(value, list) else [value] if value else []:
            path = os.path.normpath(os.path.expanduser(path))
            shared = os.path.abspath(path).startswith(os.path.abspath(SHARED) + os.sep)
            earlier = any(path == m or path.startswith(m + os.sep) for m in made)
            assert os.path.exists(path) or shared or earlier, \
                f"--{key.replace('_', '-')} {path} is no folder that exists, none an earlier command of the " \
                f"documents makes, and not in the shared data folder"
    return made_by(argv[1:], args)


def test_every_documented_script_and_subcommand_has_help(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    named = {tuple(argv_of(c)[1:3]) if argv_of(c)[1] in ("bpe.py", "evaluate.py", "roberta.py") or
             argv_of(c)[1:3] == ["data.py", "download"] else (argv_of(c)[1],)
             for _, _, c in ALL if argv_of(c)[:1] == ["python"] and argv_of(c)[1].endswith(".py")}
    for argv in sorted(named):
        with pytest.raises(SystemExit) as e:
            script_main(argv[0])(list(argv[1:]) + ["--help"])
        assert e.value.code == 0 and "usage:" in capsys.readouterr().out, argv


# ---------------------------------------------------------------------------------------- the classroom path
TINY = {"train.py": ["--max-steps", "3"], "finetune.py": ["--max-train-examples", "64", "--max-eval-examples", "64",
                                                         "--no-progress"]}


def tiny(argv, options):
    """argv with `options` (--name value pairs, or flags) instead of its own values of those options."""
    names = {o for o in options if o.startswith("--")}
    kept, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word in names:
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        else:
            kept.append(word)
    return kept + options


def classroom_commands():
    """The README's quickstart demo and its classroom recipes (their code blocks), as written, in order."""
    picked = [c for section, c, kind in doc_commands("README.md")
              if section in ("Quickstart", "Classroom setup") and kind == "block"]
    return [c for c in picked if argv_of(c)[:2] != ["python", "-m"] and argv_of(c)[:1] == ["python"]]


IN_PROCESS = ("evaluate.py", "finetune.py")  # they hold no lock the later commands need


@pytest.mark.slow
def test_the_classroom_path_runs(tmp_path, monkeypatch, capsys):
    """The demo, `evaluate.py perplexity` with no options, the SST-2 recipe (SST-2 from the shared data folder
    where `data.py download glue-sst-2` would put it: no network here) and the tiny --data recipe, each as
    the README writes it plus TINY's options, one after the other in a fresh folder, as a student runs them;
    then the demo again with other options: the finished run is read back, not trained again (the same options:
    tests/test_first_hour.py). The demo finds its corpus written (corpora.builtin_text, read once a session)."""
    sst2 = os.path.join(SHARED, "glue", "SST-2")
    if not os.path.isdir(sst2):
        pytest.skip("needs ../shared/data/glue/SST-2 (the download needs a network)")
    home = tmp_path / "home"
    cache = home / ".cache" / "roberta-reference" / "glue-sst-2"
    cache.mkdir(parents=True)
    os.symlink(sst2, cache / "SST-2")
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    from machinery.commands import corpora, demo as demo_cli  # the demo's first step, the built-in corpus, written
    corpora.builtin_corpus(str(tmp_path / demo_cli.CACHE / "corpus.txt"))  # by the suite's one reading of the stdlib

    def run(argv, command):
        if argv[0] in IN_PROCESS:  # no second of imports; the train.py commands run as processes, as typed
            monkeypatch.chdir(tmp_path)
            try:
                script_main(argv[0])(argv[1:])
            except SystemExit as e:
                pytest.fail(f"`{command}` failed: {e.code}")
            out = capsys.readouterr()
            return out.out + out.err
        r = subprocess.run([sys.executable, os.path.join(ROOT, argv[0])] + argv[1:], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"`{command}` failed: {r.stderr[-2000:]}"
        return r.stdout + r.stderr

    ran = []
    for command in classroom_commands():
        argv = argv_of(command)[1:]
        if argv[:2] == ["data.py", "download"]:
            continue  # in place above
        argv = [str(home) + a[1:] if a.startswith("~/") else a for a in argv]
        ran.append((argv[0], run(argv[:1] + tiny(argv[1:], TINY.get(argv[0], [])), command)))
    assert [script for script, _ in ran] == ["train.py", "evaluate.py", "finetune.py", "train.py"], ran
    (_, demo), (_, perplexity), (_, finetuned), (_, tiny_run) = ran
    assert "unigram distribution" in demo and "->" in demo and (tmp_path / "out" / "demo" / "checkpoint.pt").exists()
    assert '"mask_rate": 0.4' in perplexity and '"unigram_ppl"' in perplexity
    assert (tmp_path / "runs" / "sst2" / "metrics.json").exists()
    assert "held-out perplexity" in tiny_run and "unigram distribution" in tiny_run
    other = run(["train.py", "--max-steps", "5"], "python train.py --max-steps 5 (after the demo)")
    assert "not the 5 updates asked" in other and "--overwrite" in other and "unigram distribution" in other
    assert "training a byte-level BPE" not in other and "pretraining a" not in other  # read back, not redone
