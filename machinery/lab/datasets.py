"""experiments.py's data, made once per corpus and vocabulary under OUT/_data/ by the commands a user would type
(bpe.py train, data.py), each printed, and the baselines on the held-out masks. Every file it makes records the
code that made it (Stamps): made by other code, it is made again.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import bpe
import data
from machinery.basics import baselines, files
from machinery.commands import corpora
from machinery.lab import runner
from machinery.formats import prepared

QUICK_CORPUS_CHARS = 150_000     # the quick scale's corpus: the first documents of the built-in one


@dataclass
class Prepared:
    """The prepared data of a scale: the tokenizer and the data folders, and the commands that made them."""
    tokenizer: str
    folders: dict                # "full" / "slice" / "tune" / "char<N>" -> data.py folder
    commands: list
    corpus: str
    codes: dict = field(default_factory=dict)  # the code that prepared each folder (preparation_code)


def preparation_code(root=runner.ROOT):
    """The preparation's code: the code_hash of bpe.py, data.py, the built-in corpora, what they import, this file."""
    return runner.code_hash(root, runner.imported(["bpe.py", "data.py", "machinery/commands/corpora.py"], root)
                            + ["machinery/lab/datasets.py"])


class Stamps:
    """The code that made each prepared file under OUT/_data/<corpus>/: {its path there: code} in code.json."""
    lock = threading.Lock()  # the character-level tokenizers are prepared side by side

    def __init__(self, folder, code):
        self.path, self.code = os.path.join(folder, "code.json"), code

    def made(self, path):
        """The code that made `path`, or None (not recorded)."""
        return (files.read_json(self.path, missing=True) or {}).get(os.path.relpath(path, os.path.dirname(self.path)))

    def fresh(self, path):
        """Whether `path` is there, made by this code."""
        return os.path.exists(path) and self.made(path) == self.code

    def record(self, path):
        with self.lock:
            stamps = files.read_json(self.path, missing=True) or {}
            stamps[os.path.relpath(path, os.path.dirname(self.path))] = self.code
            files.write_atomic(self.path, json.dumps(stamps, indent=2, sort_keys=True))

    def again(self, what, path):
        """Whether `path` is to be made (again): absent, or made by other code (said in one line)."""
        if os.path.exists(path) and not self.fresh(path):
            runner.say(f"  {what}: made by other code (preparation code {self.made(path) or 'not recorded'}, "
                       f"now {self.code}): made again")
        return not self.fresh(path)


def prepare_step(what, argv, made, stamps, log_path, record):
    """One preparation command, skipped when its output (the file `made`) exists and this code made it; made by
    other code, it runs again with --overwrite. A failure stops the experiment."""
    record.append(runner.shown(argv))
    if not stamps.again(what, made):
        return
    argv = argv + (["--overwrite"] if os.path.exists(made) else [])
    runner.say(f"  {what}: {runner.shown(argv)}")
    code, last = runner.execute(argv, log_path)
    if code != 0 or not os.path.isfile(made):
        raise ValueError(f"{what} failed ({last}); its output is in {log_path}")
    stamps.record(made)


def corpus_file(scale, args, folder, commands, stamps):
    """The text the experiments train on: --corpus, WikiText-103 (gpu), or the built-in corpus."""
    if args.corpus:
        return os.path.abspath(args.corpus)
    if scale.corpus == "wikitext-103":
        argv = ["python", runner.script("data.py"), "download", "wikitext-103"]
        commands.append(runner.shown(argv))
        runner.say(f"  corpus: {runner.shown(argv)}")
        out = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
        if out.returncode != 0:
            raise ValueError(f"could not fetch WikiText-103 ({(out.stderr.strip().splitlines() or ['?'])[-1]}); "
                             f"pass --corpus FILE with text of your own")
        return os.path.join(out.stdout.strip().splitlines()[-1], "wikitext-103-raw", "wiki.train.raw")
    path, quick = os.path.join(folder, "corpus.txt"), scale.corpus == "builtin-quick"
    commands.append(f"(the first {QUICK_CORPUS_CHARS:,} characters of corpora.reference_topics(), whole documents)"
                    if quick else f"python -c \"from machinery.commands import corpora; "
                                  f"corpora.builtin_corpus('{path}')\"")
    if stamps.again("corpus", path):
        if quick:
            lines, size = [], 0
            for doc in corpora.reference_topics():
                if size > QUICK_CORPUS_CHARS:
                    break
                lines += doc + [""]
                size += sum(len(line) + 1 for line in doc)
            files.write_atomic(path, "\n".join(lines))
        else:
            runner.say(f"  corpus: {commands[-1]}")
            corpora.builtin_corpus(path)
        stamps.record(path)
    return path


def corpus_key(scale, args):
    if not args.corpus:
        return scale.corpus
    h = hashlib.sha256()
    with open(args.corpus, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return f"{os.path.splitext(os.path.basename(args.corpus))[0]}-{h.hexdigest()[:8]}"


def prepare(scale, args, needs, arms=(), every_arm=()):
    """Corpus, tokenizer and data folders (`needs`: "slice", "tune"), and a character-level tokenizer and its
    data for each of `arms` that has one (`every_arm`'s folders are named)."""
    key, vocab = corpus_key(scale, args), args.vocab_size or scale.vocab_size
    folder, code = os.path.join(args.out, "_data", key), preparation_code()
    parent = os.path.join(os.path.dirname(os.path.normpath(args.out)) or ".", "_data", key)
    if not Stamps(folder, code).fresh(os.path.join(folder, f"bpe{vocab}", "full", "meta.json")) and \
            Stamps(parent, code).fresh(os.path.join(parent, f"bpe{vocab}", "full", "meta.json")):
        folder = parent  # --out experiments/variant, the same code: the baseline's data (experiments/_data)
    os.makedirs(folder, exist_ok=True)
    commands, log_path, stamps = [], os.path.join(folder, "prepare.log"), Stamps(folder, code)
    corpus = corpus_file(scale, args, folder, commands, stamps)
    tok = os.path.join(folder, f"bpe{vocab}")
    train_text = training_text(scale, corpus, os.path.join(folder, "train.txt"), 1, commands, stamps)
    full, typed = prepare_tokenizer(scale, corpus, train_text, tok, vocab, log_path, stamps)
    commands += typed
    folders = {"full": full, "slice": os.path.join(tok, f"slice{scale.slice_every}"), "tune": os.path.join(tok, "tune")}
    if "slice" in needs:  # less data: every n-th training document, beside the full data's held-out split
        sliced = training_text(scale, corpus, folders["slice"] + ".txt", scale.slice_every, commands, stamps)
        prepare_step("less data", ["python", runner.script("data.py"), "--input", sliced, "--tokenizer", tok, "--out",
                                   folders["slice"], "--valid-fraction", "0", "--workers", str(scale.workers)],
                     os.path.join(folders["slice"], "meta.json"), stamps, log_path, commands)
        commands.append(f"(the held-out split of {full} copied into {folders['slice']})")
        graft_heldout(full, folders["slice"])  # every arm evaluated on the same held-out documents
    if "tune" in needs:  # the training documents alone, a share of them held out for choosing settings
        prepare_step("tuning split", ["python", runner.script("data.py"), "--input", train_text, "--tokenizer", tok,
                                      "--out", folders["tune"], "--valid-fraction", str(scale.valid_fraction),
                                      "--workers", str(scale.workers)],
                     os.path.join(folders["tune"], "meta.json"), stamps, log_path, commands)
    keys = sorted({runner.char_key(a, vocab) for a in arms} - {None})  # the chosen arms' tokenizers,
    with ThreadPoolExecutor(2) as pool:  # side by side (each command is its own process)
        made = list(pool.map(lambda key: prepare_tokenizer(scale, corpus, train_text, os.path.join(folder, key),
                                                           int(key[4:]), os.path.join(folder, f"prepare-{key}.log"),
                                                           stamps, characters=True), keys))
    for key, (full, typed) in zip(keys, made):
        folders[key] = full
        commands += typed
    for key in {runner.char_key(a, vocab) for a in every_arm} - {None} - set(folders):  # the others':
        folders[key] = os.path.join(folder, key, "full")  # where they are, for the runs made before
    codes = {k: stamps.made(os.path.join(v, "meta.json")) or "not recorded" for k, v in folders.items()
             if os.path.isfile(os.path.join(v, "meta.json"))}
    return Prepared(tok, folders, commands, corpus, codes)


def prepare_tokenizer(scale, corpus, train_text, tok, vocab, log_path, stamps, characters=False):
    """A byte-level BPE of `vocab` tokens (`characters`: character-level) trained on the training documents into
    `tok`, and the corpus prepared with it, the same documents held out; (its data folder, the commands)."""
    full, commands, what = os.path.join(tok, "full"), [], "character-level tokenizer" if characters else "tokenizer"
    prepare_step(what, ["python", runner.script("bpe.py"), "train", "--input", train_text, "--vocab-size", str(vocab),
                        "--out", tok] + ["--characters"] * characters,
                 os.path.join(tok, "char_bpe.json" if characters else "merges.txt"), stamps, log_path, commands)
    prepare_step("data", ["python", runner.script("data.py"), "--input", corpus, "--tokenizer", tok, "--out", full,
                          "--valid-fraction", str(scale.valid_fraction), "--workers", str(scale.workers)],
                 os.path.join(full, "meta.json"), stamps, log_path, commands)
    return full, commands


def training_text(scale, corpus, text, every, commands, stamps):
    """Every `every`-th training document of the corpus (as data.py splits it), written to `text` once."""
    which = "the training documents" if every == 1 else f"every {every}th training document"
    commands.append(f"({which} of {corpus} into {text}, as data.split_documents splits it)")
    if stamps.again("training text", text):
        train = [line for split, lines in data.split_documents(data.read_documents([corpus]), scale.valid_fraction)
                 if split == "train" for line in lines]
        ends = [i + 1 for i, line in enumerate(train) if line == ""]  # every document ends with ""
        docs = [train[a:b] for a, b in zip([0] + ends, ends)]
        files.write_atomic(text, "\n".join(line for doc in docs[::every] for line in doc))
        stamps.record(text)
    return text


def graft_heldout(source, target):
    """Give `target` (prepared with --valid-fraction 0) the held-out split of `source` (same tokenizer)."""
    meta_t, meta_s = prepared.read_meta(target), prepared.read_meta(source)
    if meta_t["valid"] == meta_s["valid"]:
        return
    if meta_t["tokenizer_sha256"] != meta_s["tokenizer_sha256"]:
        raise ValueError(f"{target} and {source} were prepared with different tokenizers")
    for name in ("valid.bin", "valid.idx"):
        shutil.copyfile(os.path.join(source, name), os.path.join(target, name + ".tmp"))
        os.replace(os.path.join(target, name + ".tmp"), os.path.join(target, name))
    meta_t.update(valid=meta_s["valid"], heldout_from=os.path.abspath(source))
    files.write_atomic(os.path.join(target, "meta.json"), files.json_text(meta_t, indent=2))


def baselines_on(folder, seq_len):
    """(the unigram distribution's and the most frequent token's figures, learned from the training tokens, on
    the held-out masks runner.evaluate_heldout scores `folder` on; the tokenizer, the folder's parent)."""
    tok = bpe.Tokenizer.load(os.path.dirname(os.path.normpath(folder)))
    valid, ends, _ = prepared.load_split(folder, "valid")
    train_tokens, _, _ = prepared.load_split(folder, "train")
    return baselines.unigram_baselines(train_tokens, data.heldout_batches(valid, ends, tok, seq_len, batch_size=32),
                                       tok), tok


def heldout_baselines(prep, seq_len):
    """The unigram distribution's loss and the most frequent token's accuracy on the runs' held-out masks."""
    out, tok = baselines_on(prep.folders["full"], seq_len)
    return {**out, "most_frequent_accuracy": 100 * out["most_frequent_accuracy"],
            "most_frequent": tok.decode([out["most_frequent"]])}


def arm_baselines(planned):
    """{arm: the unigram loss on the held-out masks it is scored on}: the learning gate's reference."""
    out, done = {}, {}
    for run in planned:
        key = (run.heldout, run.options["seq_len"])
        if run.arm.name not in out and os.path.isfile(os.path.join(run.heldout, "meta.json")):
            if key not in done:
                done[key] = baselines_on(*key)[0]["unigram_loss"]
            out[run.arm.name] = done[key]
    return out
