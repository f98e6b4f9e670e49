"""experiments.py's data, prepared once per corpus and vocabulary under OUT/_data/ by the commands a user
would type (bpe.py train, data.py), each printed: the corpus (--corpus, WikiText-103 or the built-in one),
the tokenizer (trained on the training documents only: the held-out text is new to it too), the data folders
("full"; "slice": every n-th training document with the full data's held-out split, so that every arm is
evaluated on the same held-out documents; "tune": the training documents split again, a share of them held
out for choosing settings, never the reported held-out ones), and the baselines on the held-out masks every run
is evaluated on.

    prepared = datasets.prepare(scale, args, needs={"slice"})
    prepared.folders["full"], prepared.commands
"""
import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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


def prepare_step(what, argv, done, log_path, record):
    """One preparation command, skipped when its output exists; a failure stops the experiment."""
    record.append(runner.shown(argv))
    if done():
        return
    runner.say(f"  {what}: {runner.shown(argv)}")
    code, last = runner.execute(argv, log_path)
    if code != 0 or not done():
        raise ValueError(f"{what} failed ({last}); its output is in {log_path}")


def corpus_file(scale, args, folder, commands):
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
    path = os.path.join(folder, "corpus.txt")
    if scale.corpus == "builtin-quick":
        commands.append(f"(the first {QUICK_CORPUS_CHARS:,} characters of corpora.reference_topics(), whole documents)")
        if not os.path.isfile(path):
            lines, size = [], 0
            for doc in corpora.reference_topics():
                if size > QUICK_CORPUS_CHARS:
                    break
                lines += doc + [""]
                size += sum(len(line) + 1 for line in doc)
            files.write_atomic(path, "\n".join(lines))
        return path
    commands.append(f"python -c \"from machinery.commands import corpora; corpora.builtin_corpus('{path}')\"")
    if not os.path.isfile(path):
        runner.say(f"  corpus: {commands[-1]}")
        corpora.builtin_corpus(path)
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
    """Corpus, tokenizer and data folders, made once per corpus and vocabulary under OUT/_data/ (`needs`: the
    other folders to make, "slice" and "tune"); a character-level tokenizer and its data for each of `arms`
    that has one (`every_arm`'s folders are named)."""
    key, vocab = corpus_key(scale, args), args.vocab_size or scale.vocab_size
    folder = os.path.join(args.out, "_data", key)
    parent = os.path.join(os.path.dirname(os.path.normpath(args.out)) or ".", "_data", key)
    stamp = os.path.join(parent, f"bpe{vocab}", "code.txt")  # the code that prepared it (bpe.py, data.py, ...)
    if not os.path.isfile(os.path.join(folder, f"bpe{vocab}", "full", "meta.json")) and \
            os.path.isfile(os.path.join(parent, f"bpe{vocab}", "full", "meta.json")) and \
            os.path.isfile(stamp) and open(stamp).read().strip() == args.code:
        folder = parent  # --out experiments/variant, the same code: the baseline's data (experiments/_data)
    os.makedirs(folder, exist_ok=True)
    commands, log_path = [], os.path.join(folder, "prepare.log")
    corpus = corpus_file(scale, args, folder, commands)
    vocab = args.vocab_size or scale.vocab_size
    tok = os.path.join(folder, f"bpe{vocab}")
    full = os.path.join(tok, "full")
    bpe_py, data_py = runner.script("bpe.py"), runner.script("data.py")
    train_text = training_text(scale, corpus, os.path.join(folder, "train.txt"), 1, commands)
    prepare_step("tokenizer", ["python", bpe_py, "train", "--input", train_text, "--vocab-size", str(vocab),
                               "--out", tok], lambda: os.path.isfile(os.path.join(tok, "merges.txt")), log_path,
                 commands)
    prepare_step("data", ["python", data_py, "--input", corpus, "--tokenizer", tok, "--out", full,
                          "--valid-fraction", str(scale.valid_fraction), "--workers", str(scale.workers)],
                 lambda: os.path.isfile(os.path.join(full, "meta.json")), log_path, commands)
    folders = {"full": full, "slice": os.path.join(tok, f"slice{scale.slice_every}"), "tune": os.path.join(tok, "tune")}
    if "slice" in needs:
        prepare_slice(scale, corpus, tok, full, folders["slice"], log_path, commands)
    if "tune" in needs:  # the training documents alone, a share of them held out for choosing settings
        prepare_step("tuning split", ["python", data_py, "--input", train_text, "--tokenizer", tok, "--out",
                                      folders["tune"], "--valid-fraction", str(scale.valid_fraction), "--workers",
                                      str(scale.workers)],
                     lambda: os.path.isfile(os.path.join(folders["tune"], "meta.json")), log_path, commands)
    keys = sorted({runner.char_key(a, vocab) for a in arms} - {None})  # the chosen arms' tokenizers,
    with ThreadPoolExecutor(2) as pool:  # side by side (each command is its own process)
        made = list(pool.map(lambda key: prepare_characters(scale, corpus, train_text, os.path.join(folder, key),
                                                            int(key[4:]), os.path.join(folder, f"prepare-{key}.log")),
                             keys))
    for key, (full, typed) in zip(keys, made):
        folders[key] = full
        commands += typed
    for key in {runner.char_key(a, vocab) for a in every_arm} - {None} - set(folders):  # the others':
        folders[key] = os.path.join(folder, key, "full")  # where they are, for the runs made before
    if not os.path.isfile(os.path.join(tok, "code.txt")):
        files.write_atomic(os.path.join(tok, "code.txt"), args.code)
    return Prepared(tok, folders, commands, corpus)


def prepare_characters(scale, corpus, train_text, tok, vocab, log_path):
    """A character-level BPE of `vocab` tokens (bpe.py train --characters) trained on the training documents
    (`train_text`) and the corpus prepared with it, the same documents held out; (its data folder, the commands)."""
    full, commands = os.path.join(tok, "full"), []
    prepare_step("character-level tokenizer", ["python", runner.script("bpe.py"), "train", "--input", train_text,
                                               "--vocab-size", str(vocab), "--out", tok, "--characters"],
                 lambda: os.path.isfile(os.path.join(tok, "char_bpe.json")), log_path, commands)
    prepare_step("data", ["python", runner.script("data.py"), "--input", corpus, "--tokenizer", tok,
                          "--out", full, "--valid-fraction", str(scale.valid_fraction), "--workers",
                          str(scale.workers)], lambda: os.path.isfile(os.path.join(full, "meta.json")), log_path,
                 commands)
    return full, commands


def training_text(scale, corpus, text, every, commands):
    """Every `every`-th training document of the corpus (data.split_documents, as data.py splits it) written to
    `text` once: what the tokenizer learns from (every=1), and the less-data slice."""
    which = "the training documents" if every == 1 else f"every {every}th training document"
    commands.append(f"({which} of {corpus} into {text}, as data.split_documents splits it)")
    if not os.path.isfile(text):
        docs, current = [], []
        for split, lines in data.split_documents(data.read_documents([corpus]), scale.valid_fraction):
            for line in lines:
                if split == "train":
                    current.append(line)
                    if line == "":
                        docs.append(current)
                        current = []
        files.write_atomic(text, "\n".join(line for doc in docs[::every] for line in doc))
    return text


def prepare_slice(scale, corpus, tok, full, out, log_path, commands):
    """Less data: every n-th training document of the full split, prepared by data.py, and the full data's
    held-out split beside it, so that every arm is evaluated on the same held-out documents."""
    text = training_text(scale, corpus, out + ".txt", scale.slice_every, commands)
    prepare_step("less data", ["python", runner.script("data.py"), "--input", text, "--tokenizer", tok,
                               "--out", out, "--valid-fraction", "0", "--workers", str(scale.workers)],
                 lambda: os.path.isfile(os.path.join(out, "meta.json")), log_path, commands)
    commands.append(f"(the held-out split of {full} copied into {out})")
    graft_heldout(full, out)


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
    meta_t["valid"] = meta_s["valid"]
    meta_t["heldout_from"] = os.path.abspath(source)
    files.write_atomic(os.path.join(target, "meta.json"), files.json_text(meta_t, indent=2))




def heldout_baselines(prep, seq_len):
    """The unigram distribution's loss and the most frequent token's accuracy on the runs' held-out masks."""
    tok, batches, train_tokens = heldout_masks(prep.folders["full"], "full-sentences", seq_len)
    out = baselines.unigram_baselines(train_tokens, batches, tok)
    return {**out, "most_frequent_accuracy": 100 * out["most_frequent_accuracy"],
            "most_frequent": tok.decode([out["most_frequent"]])}


def heldout_masks(folder, fmt, seq_len):
    """(tokenizer, the fixed 15% held-out masks of `folder` built in `fmt`, its training tokens): what a run
    scored on `folder` is evaluated on (runner.evaluate_heldout); its tokenizer is the folder's parent."""
    tok = bpe.Tokenizer.load(os.path.dirname(os.path.normpath(folder)))
    valid, ends, _ = prepared.load_split(folder, "valid")
    train_tokens, _, _ = prepared.load_split(folder, "train")
    return tok, data.heldout_batches(valid, ends, tok, seq_len, batch_size=32, masking=data.Masking(), fmt=fmt), \
        train_tokens


def arm_baselines(planned):
    """Each arm's unigram loss on the held-out masks it is scored on (its tokenizer's data, FULL-SENTENCES blocks):
    the learning gate's reference (reports.learning_ratios). {arm: loss}; arms whose data is absent left out."""
    out, done = {}, {}
    for run in planned:
        key = (run.heldout, "full-sentences", run.options["seq_len"])  # every arm scored on the same blocks
        if run.arm.name in out or not os.path.isfile(os.path.join(run.heldout, "meta.json")):
            continue
        if key not in done:
            tok, batches, train_tokens = heldout_masks(*key)
            done[key] = baselines.unigram_baselines(train_tokens, batches, tok)["unigram_loss"]
        out[run.arm.name] = done[key]
    return out
