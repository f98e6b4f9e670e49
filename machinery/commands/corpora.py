"""Text to pretrain on: a built-in English corpus that every Python install carries (no network), and the public
datasets of the paper's experiments, fetched once with their checksums (`python data.py download NAME`).
"""
import functools
import hashlib
import os
import tarfile
import urllib.request
import zipfile

from machinery.basics import files


# ---------------------------------------------------------------------------------------- built-in corpus
def reference_topics():
    """Documents of Python's reference documentation (pydoc_data.topics, ~465 KB): one per topic,
    one paragraph per line."""
    from pydoc_data.topics import topics
    for name in sorted(topics):
        yield [" ".join(p.split()) for p in topics[name].split("\n\n") if p.strip()]


SKIPPED_FOLDERS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "turtledemo",
                   "ensurepip", "pydoc_data", "lib2to3"}


def stdlib_docstrings(root=None):
    """Documents of the docstrings of the standard library's modules (~1.8 MB of English on Python 3.11):
    one document per module, one paragraph per line. Read with `ast`, so no module is imported."""
    import ast
    import sysconfig
    root = root or sysconfig.get_paths()["stdlib"]
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED_FOLDERS)
        for name in sorted(f for f in names if f.endswith(".py")):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            nodes = [n for n in ast.walk(tree) if isinstance(n, kinds)]
            paragraphs = [" ".join(p.split()) for n in nodes for p in (ast.get_docstring(n) or "").split("\n\n")]
            paragraphs = [p for p in paragraphs if len(p) > 1]
            if paragraphs:
                yield paragraphs


def builtin_corpus(path):
    """The built-in corpus written to `path`: the reference documentation and the standard library's docstrings,
    ~2.2 MB, one paragraph per line, a blank line between documents (topics and modules)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_atomic(path, builtin_text())
    return path


@functools.lru_cache(maxsize=1)
def builtin_text():
    """The built-in corpus as one string, made once a process (reading the standard library takes seconds)."""
    return "\n".join(line for doc in [*reference_topics(), *stdlib_docstrings()] for line in doc + [""])


# ---------------------------------------------------------------------------------------- downloads
# name -> [(url, file name, sha256 or None)]. None: no checksum is pinned (the content's sha256 is printed, to pin
# it); the SQuAD and tiny shakespeare hashes are the official files' (as their publishers list them).
DATASETS = {
    "tinyshakespeare": [("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                         "input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")],
    "wikitext-103": [("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip",
                      "wikitext-103-raw-v1.zip", None)],
    "squad1": [("https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v1.1.json", "train-v1.1.json", None),
               ("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json", "dev-v1.1.json",
                "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9")],
    "squad2": [("https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v2.0.json", "train-v2.0.json", None),
               ("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json", "dev-v2.0.json",
                "80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8")],
    "race": [("http://www.cs.cmu.edu/~glai1/data/race/RACE.tar.gz", "RACE.tar.gz", None)],
    **{f"glue-{t.lower()}": [(f"https://dl.fbaipublicfiles.com/glue/data/{t}.zip", f"{t}.zip", None)]
       for t in ("CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI")},
}


DEMO_OUT = os.path.join("out", "demo")          # the demo's run folder (train.py --out's default without --data)
DEMO_CACHE = os.path.join("cache", "demo")      # its corpus, tokenizer and prepared data
DEMO_DATA = os.path.join(DEMO_CACHE, "data")    # the prepared data (what train.py --data and evaluate.py --data take)
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "roberta-reference")  # data.py download's --cache


def where_is(task, folder_name=None):
    """For an error about a finetuning task's missing folder: where `python data.py download` puts it, as
    " (`python data.py download glue-sst-2` puts it in ~/.cache/roberta-reference/glue-sst-2/SST-2)", or "".
    folder_name: a GLUE task's folder (SST-2), which its archive unpacks inside the dataset's folder."""
    name = f"glue-{folder_name.lower()}" if folder_name else task
    if name not in DATASETS:
        return ""
    folder = os.path.join(DEFAULT_CACHE, name)
    inside = folder_name or {"race": "RACE"}.get(task)  # SQuAD's files lie in the dataset's folder itself
    return f" (`python data.py download {name}` puts it in {os.path.join(folder, inside) if inside else folder})"


def download(name, cache_dir, registry=DATASETS, verbose=True):
    """Fetch a dataset into cache_dir/name (once), check its sha256, unpack archives. Returns the folder.
    A failed fetch leaves nothing behind: no partial file, and no folder it created."""
    if name not in registry:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(registry))}")
    folder = os.path.join(cache_dir, name)
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    try:
        for url, filename, sha256 in registry[name]:
            path = os.path.join(folder, filename)
            if not os.path.isfile(path):
                fetch(url, path, sha256, name, verbose)
            unpack(path, folder)
    except BaseException:
        if created and not os.listdir(folder):
            os.rmdir(folder)
        raise
    return folder


def fetch(url, path, sha256, name, verbose):
    """Download `url` to `path` through a .part file (removed on failure), checking a pinned sha256."""
    tmp, h = path + ".part", hashlib.sha256()
    try:
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as f:
            while block := response.read(1 << 20):
                h.update(block)
                f.write(block)
        if sha256 and h.hexdigest() != sha256:
            raise ValueError(f"{name}: {os.path.basename(path)} has sha256 {h.hexdigest()}, expected {sha256}")
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(f"{name}: could not fetch {url} ({e})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if verbose:
        print(f"{os.path.basename(path)}: sha256 {h.hexdigest()}" + ("" if sha256 else " (no pinned checksum)"))


def unpack(path, folder):
    try:
        if path.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                z.extractall(folder)
        elif path.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as t:
                t.extractall(folder, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise ValueError(f"{path}: not a readable archive ({e}); delete it to fetch it again") from None
