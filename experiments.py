"""Section 4 of the paper as experiments: one command reruns a finding, beside the paper's numbers.

    python experiments.py list                  # the experiments, their questions, time per scale
    python experiments.py masking               # Table 1: static vs dynamic masking (Section 4.1)
    python experiments.py formats               # Table 2: the four input formats, with and without NSP
    python experiments.py batch-size            # Table 3: batch sizes at equal tokens, lr scaled as the paper
    python experiments.py data-and-steps        # Table 4 / Section 5: more data, more steps
    python experiments.py mask-rate             # beyond the paper: 15% vs 30% vs 40% of tokens masked
      [--scale classroom|gpu] [--quick] [--seeds N] [--glue DIR] [--out experiments/] [--overwrite]
      [--arms A,B] [--jobs N] [--steps-factor F] [--train-args "..."] [--corpus FILE] [--vocab-size N]

Each run gets max(1, the CPUs this process may use // --jobs) threads, and prints its step, loss and time
left every 30 s. On a 2-core machine `--jobs 2` (two runs side by side, one thread each) is the fastest way
through; on a shared machine, `OMP_NUM_THREADS=1 python experiments.py NAME --jobs 1`.

Each experiment is a declaration in EXPERIMENTS below: its question, its arms (train.py options), the
paper's table, and the paper's claims to check. The runner types the commands a user would type
(bpe.py, data.py, train.py, finetune.py), prints each one so any run can be repeated by hand, runs every
arm with several seeds, and evaluates every checkpoint on the SAME held-out masks: 15% of the held-out
tokens, masked once with a fixed seed (data.heldout_batches), whatever the run trained on. Finished runs
are skipped when their settings and code match (each records a hash of the source files; a run of other
code is trained again), interrupted ones resumed (train.py --resume); --overwrite trains finished ones again.

Outputs, in experiments/<name>/: results.json (every number and command), report.md (the paper's table
beside ours, the verdicts), loss.png when matplotlib is installed, and one folder per run
(<arm>/seed<k>/: train.py's checkpoint and log.jsonl, run.json with the command and the numbers).

A verdict compares two arms on held-out MLM loss (mean over seeds, lower is better):
    d  = mean(worse arm) - mean(better arm, in the paper's order)
    se = sqrt(sd_better^2 / n_better + sd_worse^2 / n_worse)     (the seeds' spread: the main error bar)
    "reproduced"                    d > 2 se   (the paper's order, the gap beyond the seeds' spread)
    "not reproduced at this scale"  d < -2 se  (the opposite order, beyond the spread)
    "within noise"                  otherwise
With 3 seeds, 2 se is a loose bar (a t-test would ask ~2.8 se): read "reproduced" as "clearly ordered".
"""
import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

import bpe
import data
import roberta
from machinery import baselines, checkpoints, cli, corpora, files, lock, speed

ROOT = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Times:
    """An option relative to the experiment's base: Times(8) is 8x the base value (batch size, steps, lr)."""
    factor: float


@dataclass
class Arm:
    """One row of the comparison: train.py options on top of the experiment's base."""
    name: str                         # folder name, and the key of the paper's row
    options: dict = field(default_factory=dict)
    data: str = ""                    # "" = the experiment's data; "slice": a share of the training documents
    beats: str = ""                   # its claim in one line: this arm reaches a lower held-out loss than `beats`
    says: str = ""                    # ... and why you expect it (shown beside the verdict)


@dataclass
class Claim:
    """One finding to check: `better` reaches a lower held-out loss than `worse`."""
    better: str
    worse: str
    says: str                         # the finding, in the paper's words or close to them


@dataclass
class PaperTable:
    """The paper's table as printed: rows keyed by our arm names (None: a reference row of the paper)."""
    source: str                                  # "Table 1 (Section 4.1)"
    caption: str
    header: str                                  # the first column's title
    columns: list                                # (title, kind): kind "setting", "higher" or "lower" better
    rows: list                                   # (label, arm name or None, [values as printed])


@dataclass
class Experiment:
    name: str
    question: str
    arms: list
    claims: list
    paper: PaperTable = None                     # None: beyond the paper
    base: dict = field(default_factory=dict)     # changes to the scale's train.py options, for every arm
    data: str = "full"                           # "full", or "slice" (a share of the training documents)
    note: str = ""                               # how to read the result


# ---------------------------------------------------------------------------------------- the experiments
# Adding one: a name, a question, the arms (train.py options), and the claims to check. Everything else
# (seeds, evaluation, report, verdicts) follows. See EXERCISES.md.
EXPERIMENTS = [
    Experiment(
        "masking", "Does dynamic masking (a new mask each epoch) beat BERT's static masking (10 fixed masks)?",
        arms=[Arm("static", {"masking": "static"}), Arm("dynamic", {"masking": "dynamic"})],
        claims=[Claim("dynamic", "static", "dynamic masking is comparable or slightly better than static "
                                           "(Section 4.1)")],
        paper=PaperTable(
            "Table 1 (Section 4.1)", "Comparison between static and dynamic masking for BERT-base. F1 for "
            "SQuAD, accuracy for MNLI-m and SST-2; medians over 5 seeds. Reference: BERT-base as published.",
            "Masking", [("SQuAD 2.0", "higher"), ("MNLI-m", "higher"), ("SST-2", "higher")],
            [("reference", None, ["76.3", "84.3", "92.8"]), ("static", "static", ["78.3", "84.3", "92.5"]),
             ("dynamic", "dynamic", ["78.7", "84.0", "92.9"])]),
        base={"max_steps": Times(1.25)}, data="slice",
        note="BERT's static masking duplicates the data 10 times with 10 masks and trains 40 epochs, so each "
             "mask is seen 4 times; here too the runs train about 40 epochs over a share of the corpus "
             "(static and dynamic are identical for the first 10 epochs)."),
    Experiment(
        "formats", "Which input format is best: sentence pairs with NSP, or packed full sentences without it?",
        arms=[Arm("segment-pair", {"format": "segment-pair"}), Arm("sentence-pair", {"format": "sentence-pair"}),
              Arm("full-sentences", {"format": "full-sentences"}), Arm("doc-sentences", {"format": "doc-sentences"})],
        claims=[Claim("segment-pair", "sentence-pair", "using individual sentences hurts performance"),
                Claim("full-sentences", "segment-pair", "removing the NSP loss matches or slightly improves "
                                                        "performance"),
                Claim("doc-sentences", "full-sentences", "DOC-SENTENCES performs slightly better than "
                                                         "FULL-SENTENCES")],
        paper=PaperTable(
            "Table 2 (Section 4.2)", "Base models pretrained over BOOKCORPUS and WIKIPEDIA, 1M steps, batch "
            "256 sequences. F1 for SQuAD, accuracy for MNLI-m, SST-2 and RACE; medians over 5 seeds.",
            "Model", [("SQuAD 1.1/2.0", "higher"), ("MNLI-m", "higher"), ("SST-2", "higher"), ("RACE", "higher")],
            [("SEGMENT-PAIR (+NSP)", "segment-pair", ["90.4/78.7", "84.0", "92.9", "64.2"]),
             ("SENTENCE-PAIR (+NSP)", "sentence-pair", ["88.7/76.2", "82.9", "92.1", "63.0"]),
             ("FULL-SENTENCES", "full-sentences", ["90.4/79.1", "84.7", "92.5", "64.8"]),
             ("DOC-SENTENCES", "doc-sentences", ["90.6/79.7", "84.7", "92.7", "65.6"]),
             ("BERT-base", None, ["88.5/76.3", "84.3", "92.8", "64.3"])]),
        base={"max_steps": Times(0.75)},
        note="Ours is the masked-LM loss on held-out FULL-SENTENCES blocks, not downstream accuracy: the pair "
             "formats are evaluated on inputs shaped unlike their training inputs, and spend part of their "
             "updates on the NSP loss."),
    Experiment(
        "batch-size", "At an equal number of sequences seen, do larger batches (lr scaled up) train better?",
        arms=[Arm("bsz-256", {}),
              Arm("bsz-2k", {"batch_size": Times(8), "max_steps": Times(1 / 8), "lr": Times(7)}),
              Arm("bsz-8k", {"batch_size": Times(32), "max_steps": Times(1 / 32), "lr": Times(10)})],
        claims=[Claim("bsz-2k", "bsz-256", "batch 2K beats 256 at the same number of sequences (perplexity "
                                           "3.68 vs 3.99)"),
                Claim("bsz-8k", "bsz-256", "batch 8K beats 256 (perplexity 3.77 vs 3.99)"),
                Claim("bsz-2k", "bsz-8k", "batch 2K beats 8K (perplexity 3.68 vs 3.77)")],
        paper=PaperTable(
            "Table 3 (Section 4.3)", "Perplexity on held-out training data and dev accuracy, BERT-base over "
            "BOOKCORPUS and WIKIPEDIA; the same number of passes over the data; lr tuned per batch size.",
            "bsz", [("steps", "setting"), ("lr", "setting"), ("ppl", "lower"), ("MNLI-m", "higher"),
                    ("SST-2", "higher")],
            [("256", "bsz-256", ["1M", "1e-4", "3.99", "84.7", "92.7"]),
             ("2K", "bsz-2k", ["125K", "7e-4", "3.68", "85.2", "92.9"]),
             ("8K", "bsz-8k", ["31K", "1e-3", "3.77", "84.6", "92.8"])]),
        base={"batch_size": Times(0.5), "max_steps": Times(2), "lr": Times(0.5)},
        note="The paper's ratios: batch x8 and x32 with steps /8 and /32 and lr x7 and x10. Our base batch is "
             "half the scale's, so that the largest arm still makes a few dozen updates. The paper's largest "
             "batches still make 125K and 31K updates; at the classroom scale they make 200 and 50, and the "
             "number of updates may be what limits them (does --steps-factor 4 close the gap?)."),
    Experiment(
        "data-and-steps", "Does more data help at the same number of steps, and more steps on the same data?",
        arms=[Arm("less-data", {}, data="slice"), Arm("more-data", {}),
              Arm("more-data-3x-steps", {"max_steps": Times(3)}), Arm("more-data-5x-steps", {"max_steps": Times(5)})],
        claims=[Claim("more-data", "less-data", "more data improves performance at the same steps (16GB -> 160GB)"),
                Claim("more-data-3x-steps", "more-data", "pretraining longer helps (100K -> 300K steps)"),
                Claim("more-data-5x-steps", "more-data-3x-steps", "pretraining even longer helps (300K -> 500K)")],
        paper=PaperTable(
            "Table 4 (Section 5)", "RoBERTa (BERT-large architecture) as it pretrains over more data and for "
            "longer; each row adds to the one above. Dev F1 for SQuAD, accuracy for MNLI-m and SST-2.",
            "RoBERTa", [("data", "setting"), ("bsz", "setting"), ("steps", "setting"),
                        ("SQuAD (v1.1/2.0)", "higher"), ("MNLI-m", "higher"), ("SST-2", "higher")],
            [("with BOOKS + WIKI", "less-data", ["16GB", "8K", "100K", "93.6/87.3", "89.0", "95.3"]),
             ("+ additional data", "more-data", ["160GB", "8K", "100K", "94.0/87.7", "89.3", "95.6"]),
             ("+ pretrain longer", "more-data-3x-steps", ["160GB", "8K", "300K", "94.4/88.7", "90.0", "96.1"]),
             ("+ pretrain even longer", "more-data-5x-steps", ["160GB", "8K", "500K", "94.6/89.4", "90.2", "96.4"])]),
        base={"max_steps": Times(0.3)},
        note="Less data is every tenth training document (the paper: 16GB of 160GB); all arms are evaluated "
             "on the same held-out documents."),
    Experiment(
        "mask-rate", "Is 15% the right share of tokens to mask, or do 30% and 40% train better?",
        arms=[Arm("rate-15", {"mask_rate": 0.15}), Arm("rate-30", {"mask_rate": 0.30}),
              Arm("rate-40", {"mask_rate": 0.40})],
        claims=[Claim("rate-40", "rate-15", "Wettig et al. 2023 (arXiv:2202.08005): masking 40% outperforms "
                                            "15% for BERT-large, on GLUE and SQuAD"),
                Claim("rate-30", "rate-15", "the same trend at 30%")],
        note="Every arm is evaluated on the same held-out masks at 15%, whatever rate it trained at. Wettig et "
             "al. find that larger models favour higher rates: a tiny model may not."),
]


# ---------------------------------------------------------------------------------------- scales
@dataclass(frozen=True)
class Scale:
    """Where the experiments run: the base train.py options every arm starts from, and the data."""
    name: str
    train: dict                  # train.py options (TrainConfig names)
    vocab_size: int
    valid_fraction: float        # held-out share of the corpus, whole documents
    slice_every: int             # "slice" data: every n-th training document
    corpus: str                  # "builtin", "builtin-quick" (its first part) or "wikitext-103"
    seeds: int
    eval_sequences: int          # held-out sequences per evaluation (train.py's curves)
    tokens_per_s: float          # for the time estimates of `list`
    overhead_s: float            # per run: start, evaluations, saving
    finetune: dict               # finetune.py options with --glue
    measured: bool               # tokens_per_s measured (True) or assumed (False)
    workers: int = 2
    threads: int = 0             # OMP_NUM_THREADS for the runs (0: torch's choice; with --jobs, cores / jobs)


SCALES = {
    "classroom": Scale("classroom", dict(config="tiny", seq_len=128, batch_size=16, lr=1e-3, max_steps=800),
                       vocab_size=4096, valid_fraction=0.05, slice_every=10, corpus="builtin", seeds=3,
                       eval_sequences=100_000, tokens_per_s=25_000, overhead_s=6, measured=True,
                       finetune=dict(epochs=1, max_train_examples=8000, batch_size=32, lr=1e-3, max_seq_len=64)),
    "gpu": Scale("gpu", dict(config="base", seq_len=128, batch_size=256, micro_batch_size=128, lr=5e-4,
                             max_steps=2000, amp="bf16", device="cuda"),
                 vocab_size=32768, valid_fraction=0.005, slice_every=10, corpus="wikitext-103", seeds=3,
                 eval_sequences=2000, tokens_per_s=300_000, overhead_s=60, measured=False, workers=8,
                 finetune=dict(epochs=2, max_train_examples=20000, batch_size=32, lr=3e-5, max_seq_len=128)),
    "quick": Scale("quick", dict(config="tiny", seq_len=32, batch_size=4, lr=1e-3, max_steps=16, device="cpu"),
                   vocab_size=512, valid_fraction=0.1, slice_every=10, corpus="builtin-quick", seeds=2,
                   eval_sequences=24, tokens_per_s=3000, overhead_s=4, measured=True, workers=1, threads=1,
                   finetune=dict(epochs=1, max_train_examples=64, max_eval_examples=64, batch_size=16, lr=1e-3,
                                 max_seq_len=64)),
}
QUICK_CORPUS_CHARS = 150_000
GLUE_TASKS = [("sst2", "SST-2", True), ("rte", "RTE", False)]   # (task, folder, required with --glue)


class Refused(Exception):
    """A clear, one-line reason not to go on (printed without a traceback)."""


# ---------------------------------------------------------------------------------------- commands
PRINT_LOCK = threading.Lock()
PROGRESS_SECONDS = 30            # a running run's progress line, this often


def say(text):
    """Print whole lines, one writer at a time: runs side by side (--jobs) never share a line."""
    with PRINT_LOCK:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def script(name):
    """A project script as a user types it: `train.py` from the repository, its path from elsewhere."""
    return os.path.relpath(os.path.join(ROOT, name))


def shown(argv):
    """The command as a user would type it."""
    return shlex.join(["python", *argv[1:]])


def execute(argv, log_path, env_threads=0, progress=None):
    """Run a command (argv[0] is python), its output into log_path; (exit code, last line of its errors).
    `progress`, when given, is called every PROGRESS_SECONDS while the command runs (the runner's
    progress lines)."""
    env = dict(os.environ)
    if env_threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(env_threads)
    with open(log_path, "a") as log:
        log.write(f"$ {shown(argv)}\n")
        log.flush()
        start = log.tell()
        proc = subprocess.Popen([sys.executable, *argv[1:]], stdout=log, stderr=log, text=True, env=env,
                                cwd=os.getcwd())
        while True:
            try:
                proc.wait(timeout=PROGRESS_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if progress:
                    progress()
            except BaseException:  # Ctrl-C: stop the child too, then go
                proc.kill()
                proc.wait()
                raise
    with open(log_path, errors="replace") as f:
        f.seek(start)
        text = f.read()
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error") or "Error" in line]
    return proc.returncode, (errors or lines or [f"exit code {proc.returncode}"])[-1].strip()


def duration(seconds):
    """A duration as a student reads it: 45 s, 3 min 20 s, 1 h 05 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(label, run, elapsed):
    """One run's progress from its log.jsonl: step, loss, speed and the time left; None before its first log."""
    last = last_record(run)
    if "step" not in last:
        return f"{label}: starting ({duration(elapsed)})"
    steps = run.options["max_steps"]
    text = f"{label}: step {last['step']:,}/{steps:,} ({last['step'] / steps:.0%})"
    if isinstance(last.get("loss"), (int, float)):
        text += f", loss {last['loss']:.3f}"
    tps = last.get("tokens_per_s")
    if isinstance(tps, (int, float)) and tps > 0:
        left = (steps - last["step"]) * run.options["batch_size"] * run.options["seq_len"] / tps
        text += f", {tps:,.0f} tokens/s, ETA {duration(left)}"
    return text + f" ({duration(elapsed)} so far)"


def prepare_step(what, argv, done, log_path, record):
    """One preparation command, skipped when its output exists; a failure stops the experiment."""
    record.append(shown(argv))
    if done():
        return
    say(f"  {what}: {shown(argv)}")
    code, last = execute(argv, log_path)
    if code != 0 or not done():
        raise Refused(f"{what} failed ({last}); its output is in {log_path}")


# ---------------------------------------------------------------------------------------- data
@dataclass
class Prepared:
    """The prepared data of a scale: the tokenizer and the data folders, and the commands that made them."""
    tokenizer: str
    folders: dict                # "full" / "slice" -> data.py folder
    commands: list
    corpus: str


def corpus_file(scale, args, folder, commands):
    """The text the experiments train on: --corpus, WikiText-103 (gpu), or the built-in corpus."""
    if args.corpus:
        return os.path.abspath(args.corpus)
    if scale.corpus == "wikitext-103":
        argv = ["python", script("data.py"), "download", "wikitext-103"]
        commands.append(shown(argv))
        say(f"  corpus: {shown(argv)}")
        out = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
        if out.returncode != 0:
            raise Refused(f"could not fetch WikiText-103 ({(out.stderr.strip().splitlines() or ['?'])[-1]}); "
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
    commands.append(f"python -c \"from machinery import corpora; corpora.builtin_corpus('{path}')\"")
    if not os.path.isfile(path):
        say(f"  corpus: {commands[-1]}")
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


def prepare(scale, args, needs_slice):
    """Corpus, tokenizer and data folders, made once per corpus and vocabulary under OUT/_data/."""
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
    prepare_step("tokenizer", ["python", script("bpe.py"), "train", "--input", corpus, "--vocab-size", str(vocab),
                               "--out", tok], lambda: os.path.isfile(os.path.join(tok, "merges.txt")), log_path,
                 commands)
    prepare_step("data", ["python", script("data.py"), "--input", corpus, "--tokenizer", tok, "--out", full,
                          "--valid-fraction", str(scale.valid_fraction), "--workers", str(scale.workers)],
                 lambda: os.path.isfile(os.path.join(full, "meta.json")), log_path, commands)
    folders = {"full": full, "slice": os.path.join(tok, f"slice{scale.slice_every}")}
    if needs_slice:
        prepare_slice(scale, corpus, tok, full, folders["slice"], log_path, commands)
    if not os.path.isfile(os.path.join(tok, "code.txt")):
        files.write_atomic(os.path.join(tok, "code.txt"), args.code)
    return Prepared(tok, folders, commands, corpus)


def prepare_slice(scale, corpus, tok, full, out, log_path, commands):
    """Less data: every n-th training document of the full split (data.split_documents, as data.py splits),
    prepared by data.py, and the full data's held-out split beside it, so that every arm is evaluated on
    the same held-out documents."""
    text = out + ".txt"
    commands.append(f"(every {scale.slice_every}th training document of {corpus} into {text}, "
                    f"as data.split_documents splits it)")
    if not os.path.isfile(text):
        docs, current = [], []
        for split, lines in data.split_documents(data.read_documents([corpus]), scale.valid_fraction):
            for line in lines:
                if split == "train":
                    current.append(line)
                    if line == "":
                        docs.append(current)
                        current = []
        kept = [line for doc in docs[::scale.slice_every] for line in doc]
        files.write_atomic(text, "\n".join(kept))
    prepare_step("less data", ["python", script("data.py"), "--input", text, "--tokenizer", tok, "--out", out,
                               "--valid-fraction", "0", "--workers", str(scale.workers)],
                 lambda: os.path.isfile(os.path.join(out, "meta.json")), log_path, commands)
    commands.append(f"(the held-out split of {full} copied into {out})")
    graft_heldout(full, out)


def graft_heldout(source, target):
    """Give `target` (prepared with --valid-fraction 0) the held-out split of `source` (same tokenizer)."""
    meta_t, meta_s = data.read_meta(target), data.read_meta(source)
    if meta_t["valid"] == meta_s["valid"]:
        return
    if meta_t["tokenizer_sha256"] != meta_s["tokenizer_sha256"]:
        raise Refused(f"{target} and {source} were prepared with different tokenizers")
    for name in ("valid.bin", "valid.idx"):
        shutil.copyfile(os.path.join(source, name), os.path.join(target, name + ".tmp"))
        os.replace(os.path.join(target, name + ".tmp"), os.path.join(target, name))
    meta_t["valid"] = meta_s["valid"]
    meta_t["heldout_from"] = os.path.abspath(source)
    files.write_atomic(os.path.join(target, "meta.json"), json.dumps(meta_t, indent=2))


# ---------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    arm: Arm
    seed: int
    folder: str
    options: dict                # train.py options of this run
    data: str                    # the data.py folder it trains on
    heldout: str                 # the data.py folder whose held-out split evaluates it (the same for all)
    flags: tuple = ()            # train.py options without a value, from --train-args

    @property
    def argv(self):
        """The train.py command of this run."""
        argv = ["python", script("train.py"), "--data", self.data, "--out", self.folder]
        for key, value in self.options.items():
            argv += flag(key, value).split(" ", 1)
        return argv + list(self.flags)


def flag(key, value):
    """An option as typed: ("max_steps", 800) -> "--max-steps 800"; floats to 6 significant digits."""
    return f"--{key.replace('_', '-')} " + (f"{value:.6g}" if isinstance(value, float) else str(value))


def apply(options, changes):
    """options with `changes` applied: a Times multiplies the current value (rounded for whole numbers)."""
    out = dict(options)
    for key, value in changes.items():
        if isinstance(value, Times):
            value = value.factor * out[key]
            value = max(1, round(value)) if isinstance(out[key], int) else value
        out[key] = value
    return out


def base_options(exp, scale, steps_factor=1.0):
    """The train.py options every arm of `exp` starts from at this scale."""
    return apply(apply(scale.train, exp.base), {"max_steps": Times(steps_factor)})


def parse_train_args(text):
    """--train-args "--dropout 0 --no-compile" -> ({"dropout": 0}, ["--no-compile"])."""
    try:
        words, options, flags = shlex.split(text or ""), {}, []
    except ValueError as err:  # "No closing quotation": say which option, and what it read
        raise ValueError(f"--train-args: {err} in {text!r}") from None
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            value = words[i + 1]
            for kind in (int, float):
                try:
                    value = kind(value)
                    break
                except ValueError:
                    pass
            options[word[2:].replace("-", "_")] = value
        else:
            flags.append(word)
    return options, flags


def plan(exp, scale, args, prepared):
    """Every run of the experiment: arm x seed, with its folder and train.py options."""
    base = base_options(exp, scale, args.steps_factor)
    extra, flags = parse_train_args(args.train_args)
    runs = []
    for arm in exp.arms:
        options = {**apply(base, arm.options), **extra}
        steps = options["max_steps"]
        options.setdefault("warmup_steps", max(1, round(0.1 * steps)))
        options.update(log_interval=max(1, steps // 40), eval_interval=max(1, steps // 8),
                       save_interval=max(1, steps // 4), eval_sequences=scale.eval_sequences)
        if args.device:
            options["device"] = args.device
        for seed in range(args.seeds or scale.seeds):
            runs.append(Run(arm, seed, os.path.join(args.out, exp.name, arm.name, f"seed{seed}"),
                            {**options, "seed": seed}, prepared.folders[arm.data or exp.data],
                            prepared.folders["full"], tuple(flags)))
    return runs


def chosen_arms(exp, names):
    """The arms to run: all, or those --arms names."""
    if not names:
        return exp.arms
    known = {a.name: a for a in exp.arms}
    for name in names.split(","):
        if name not in known:
            raise Refused(f"--arms: {name!r} is not an arm of {exp.name} ({', '.join(known)})")
    return [a for a in exp.arms if a.name in names.split(",")]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


CORE = ["bpe.py", "roberta.py", "data.py", "train.py", "finetune.py", "evaluate.py"]


def code_hash(root=ROOT):
    """The version of the code a run ran with: a hash of the six core modules, machinery/*.py and
    experiments.py. Not of experiments.py's declarations (from "the experiments" to "scales" below): a run's
    settings are its command, compared on their own, so adding an arm or an experiment reruns nothing."""
    import glob
    paths = [os.path.join(root, name) for name in CORE + ["experiments.py"]] + \
        sorted(glob.glob(os.path.join(root, "machinery", "*.py")))
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            text = f.read()
        if os.path.basename(path) == "experiments.py":
            text = re.sub(rb"\n# -+ the experiments\n.*?\n# -+ scales\n", b"", text, flags=re.S)
        h.update(os.path.relpath(path, root).encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:12]


def run_status(run, command, overwrite, code=None):
    """"finished", "evaluate" (trained, not evaluated), "resume", "new", "stale" (its folder holds this run
    made with other code: trained again) or "conflict" (another run's folder)."""
    record = read_json(os.path.join(run.folder, "run.json"))
    checkpoint = os.path.join(run.folder, "checkpoint.pt")
    if overwrite:
        return "new"
    if record is None:
        return "conflict" if os.path.isfile(checkpoint) else "new"
    if record.get("command") != shown(command):
        return "conflict"
    if code and record.get("code") != code and (os.path.isfile(checkpoint) or record.get("status") == "finished"):
        return "stale"
    if record.get("status") == "finished":
        return "finished"
    if not os.path.isfile(checkpoint):
        return "new"
    step = checkpoints.read_checkpoint(checkpoint).get("state", {}).get("step", 0)
    return "evaluate" if step >= run.options["max_steps"] else "resume"


def earlier_record(run):
    """The record of a run of these settings that finished or failed before, or None."""
    record = read_json(os.path.join(run.folder, "run.json"))
    if record and record.get("command") == shown(run.argv) and record.get("status") in ("finished",
                                                                                                     "failed"):
        return record
    return None


def check_conflicts(runs, overwrite):
    """Before any work: refuse to touch a folder that holds another run (unless --overwrite)."""
    for run in runs:
        if run_status(run, run.argv, overwrite) == "conflict":
            raise Refused(f"{run.folder} holds a run with other settings than `{shown(run.argv)}`; "
                          f"pass --overwrite to replace it, or choose another --out")


def train_run(run, status, threads, overwrite, label, code):
    """Train (or resume) one run with train.py, a progress line every PROGRESS_SECONDS; (ok, the last error)."""
    command = run.argv
    os.makedirs(run.folder, exist_ok=True)
    flags = ["--resume"] if status == "resume" else (["--overwrite"] if overwrite or status == "stale" else [])
    write_run(run, {"command": shown(command), "status": "running", "code": code})
    t0 = time.time()
    exit_code, last = execute(command + flags, os.path.join(run.folder, "train.out"), threads,
                              progress=lambda: say(progress_line(label, run, time.time() - t0)))
    return exit_code == 0, last


def write_run(run, record):
    files.write_atomic(os.path.join(run.folder, "run.json"), json.dumps(record, indent=2))


def curve(run):
    """(step, sequences x length seen, held-out loss at the run's own masking) from train.py's log."""
    points, path = [], os.path.join(run.folder, "log.jsonl")
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if isinstance(r.get("valid_loss"), (int, float)) and math.isfinite(r["valid_loss"]):
                    tokens = r["step"] * run.options["batch_size"] * run.options["seq_len"]
                    points.append([r["step"], tokens, r["valid_loss"]])
    return points


def logged_nsp(run):
    """Whether the run's log.jsonl shows an NSP loss (a pair format with its NSP loss on)."""
    path = os.path.join(run.folder, "log.jsonl")
    with open(path) if os.path.isfile(path) else open(os.devnull) as f:
        return any("nsp_loss" in line for line in f)


def last_record(run):
    path = os.path.join(run.folder, "log.jsonl")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return lines[-1] if lines else {}


# ---------------------------------------------------------------------------------------- evaluation
def evaluate_heldout(folder, data_dir, seq_len, device):
    """The checkpoint's masked-LM figures on the fixed 15% held-out masks of data_dir, with standard errors:
    loss (nats per masked token), accuracy of the top guess, and bits per byte of the masked tokens."""
    tok = bpe.Tokenizer.load(folder)
    model = roberta.load_pretrained(folder, verbose=False, new_head_ok=False)
    tokens, ends, meta = data.load_split(data_dir, "valid")
    data.check_tokenizer(meta, tok, data_dir, folder)
    batches = data.heldout_batches(tokens, ends, tok, seq_len, batch_size=32, masking=data.Masking())
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = data.evaluate_mlm(model.to(device), batches, device, detailed=True)
    n = out["targets"]
    loss = out["loss_sum"] / n
    acc = out["correct"] / n
    byte_len = np.array([len(tok.vocab.get(i, b"")) for i in range(len(tok))], dtype=np.int64)
    target_bytes = sum(int(byte_len[labels[labels != -100].numpy()].sum()) for _, labels in batches)
    return {"loss": loss, "loss_se": math.sqrt(max(out["loss_sq_sum"] / n - loss ** 2, 0.0) / n),
            "ppl": math.exp(loss), "accuracy": 100 * acc, "accuracy_se": 100 * math.sqrt(acc * (1 - acc) / n),
            "bits_per_byte": out["loss_sum"] / math.log(2) / max(target_bytes, 1), "targets": n}


def finetune_run(run, glue, scale, log_path, fresh, threads):
    """Downstream scores of a finished run (finetune.py); {task: accuracy or an error line}. `fresh`: the
    run was (re)trained now, so earlier finetuning results in its folder are stale."""
    scores = {}
    for task, folder, _ in GLUE_TASKS:
        task_dir = os.path.join(glue, folder)
        if not all(os.path.isfile(os.path.join(task_dir, f)) for f in ("train.tsv", "dev.tsv")):
            continue
        out = os.path.join(run.folder, f"glue-{task}")
        argv = ["python", script("finetune.py"), "--task", task, "--data", task_dir, "--checkpoint", run.folder,
                "--out", out, "--seed", str(run.seed), "--no-progress"]
        for key, value in scale.finetune.items():
            argv += flag(key, value).split(" ", 1)
        metrics = None if fresh else read_json(os.path.join(out, "metrics.json"))
        if metrics is None:
            if os.path.isdir(out):  # stale, or unfinished: finetune.py refuses an existing --out
                shutil.rmtree(out)
            say(f"    {shown(argv)}")
            code, last = execute(argv, log_path, threads)
            metrics = read_json(os.path.join(out, "metrics.json"))
            if code != 0 or metrics is None:
                scores[task] = {"error": last, "command": shown(argv)}
                continue
        dev = next(iter(metrics["dev"].values()))
        scores[task] = {"accuracy": dev["accuracy"], "command": shown(argv)}
    return scores


def do_run(run, i, total, exp, scale, args):
    """One run from wherever it stands to its record: trained, evaluated, finetuned; or failed."""
    command = run.argv
    label = f"[{exp.name}] {i}/{total} {run.arm.name} seed {run.seed}"
    code = code_hash()
    if code != args.code:
        say(f"{label}: warning: the code changed since this experiment started ({args.code} -> {code}); this "
            f"run uses the new code, and the report will say that its runs mix code versions")
    status = run_status(run, command, args.overwrite, code)
    if status == "finished":
        say(f"{label}: finished before, skipped ({shown(command)})")
        record = read_json(os.path.join(run.folder, "run.json"))
        if args.glue and not record.get("glue"):  # --glue given now: finetune the finished checkpoint
            record["glue"] = finetune_run(run, args.glue, scale, os.path.join(run.folder, "finetune.out"), False,
                                          speed.threads_for(args.jobs))
            write_run(run, record)
        return {**record, "skipped": True}
    threads = scale.threads or speed.threads_for(args.jobs)
    if status == "stale":
        was = read_json(os.path.join(run.folder, "run.json")).get("code") or "not recorded"
        doing = f"training again: it ran with other code (code {was}, now {code})"
    else:
        doing = {"resume": "resuming", "evaluate": "evaluating"}.get(status, "training")
    flags = ["--resume"] if status == "resume" else ["--overwrite"] if args.overwrite or status == "stale" else []
    say(f"{label}: {doing} ({threads} thread{'s' if threads > 1 else ''})"
        + (f"\n    {shown(command + flags)}" if status != "evaluate" else ""))
    record = {"command": shown(command), "arm": run.arm.name, "seed": run.seed, "folder": run.folder, "code": code}
    t0 = time.time()
    if status != "evaluate":
        ok, last = train_run(run, status, threads, args.overwrite, label, code)
        if not ok:
            rerun = shown(command + (["--resume"] if os.path.isfile(os.path.join(run.folder, "checkpoint.pt"))
                                     else []))
            record.update(status="failed", error=last, rerun=rerun, curve=curve(run),
                          log=os.path.join(run.folder, "train.out"))
            write_run(run, record)
            say(f"{label}: FAILED: {last}\n    its log is kept in {run.folder}; to rerun it: {rerun}")
            return record
    heldout = evaluate_heldout(run.folder, run.heldout, run.options["seq_len"], args.device)
    last = last_record(run)
    record.update(status="finished", seconds=round(time.time() - t0, 1), heldout=heldout, curve=curve(run),
                  epochs=last.get("epoch"), train_loss=last.get("loss"), nsp=logged_nsp(run),
                  sequences_seen=run.options["max_steps"] * run.options["batch_size"])
    if args.glue:
        record["glue"] = finetune_run(run, args.glue, scale, os.path.join(run.folder, "finetune.out"),
                                      status != "evaluate", threads)
    write_run(run, record)
    say(f"{label}: done: held-out loss {heldout['loss']:.4f} [se {heldout['loss_se']:.4f}], accuracy "
        f"{heldout['accuracy']:.1f}% ({heldout['targets']:,} masked tokens), {record['seconds']:.0f} s")
    return record


# ---------------------------------------------------------------------------------------- statistics
def summarize(values):
    """(mean, sample standard deviation, n) of the finished runs' values."""
    n = len(values)
    if n == 0:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if n > 1 else 0.0), n


def arm_summary(records, arm):
    finished = [r for r in records if r["arm"] == arm.name and r.get("status") == "finished"]
    out = {"arm": arm.name, "finished": len(finished),
           "failed": sum(r["arm"] == arm.name and r.get("status") == "failed" for r in records)}
    for key in ("loss", "loss_se", "ppl", "accuracy", "accuracy_se", "bits_per_byte"):
        mean, sd, n = summarize([r["heldout"][key] for r in finished])
        out[key] = {"mean": mean, "sd": sd, "n": n}
    for task, _, _ in GLUE_TASKS:
        scores = [r["glue"][task]["accuracy"] for r in finished if "accuracy" in r.get("glue", {}).get(task, {})]
        if scores:
            mean, sd, n = summarize(scores)
            out[task] = {"mean": mean, "sd": sd, "n": n}
    return out


def verdict(better, worse, key="loss", lower_is_better=True):
    """The verdict of one claim from two arms' summaries (see the module's docstring)."""
    b, w = better.get(key), worse.get(key)
    if not b or not w or b["n"] == 0 or w["n"] == 0:
        return {"verdict": "no verdict: an arm has no finished run"}
    if b["n"] < 2 or w["n"] < 2:
        return {"verdict": "no verdict: one seed per arm gives no spread (use --seeds 3)"}
    d = (w["mean"] - b["mean"]) * (1 if lower_is_better else -1)
    se = math.sqrt(b["sd"] ** 2 / b["n"] + w["sd"] ** 2 / w["n"])
    word = "reproduced" if d > 2 * se else "not reproduced at this scale" if d < -2 * se else "within noise"
    return {"verdict": word, "difference": d, "se": se}


def paper_gap(exp, claim):
    """The paper's own gap for a claim, per metric column, signed so that + is the claim's direction."""
    if exp.paper is None:
        return []
    rows = {arm: values for _, arm, values in exp.paper.rows if arm}
    if claim.better not in rows or claim.worse not in rows:
        return []
    gaps = []
    for (title, kind), b, w in zip(exp.paper.columns, rows[claim.better], rows[claim.worse]):
        if kind == "setting":
            continue
        names = [title] if "/" not in b else [f"{title.split()[0]} {v}" for v in re.findall(r"\d\.\d", title)]
        for name, x, y in zip(names, b.split("/"), w.split("/")):
            gaps.append((name, round((-1 if kind == "lower" else 1) * (float(x) - float(y)), 2)))
    return gaps


def paper_gap_note(gaps, glue_sd=None):
    """What the paper's own gap says: mixed signs, or under half a point (medians of 5 seeds, no spread)."""
    if not gaps:
        return ""
    values = [g for _, g in gaps]
    listed = ", ".join(f"{name} {g:+g}" if g else f"{name} 0" for name, g in gaps)
    notes = []
    if max(values) <= 0:
        notes.append("the paper's own numbers do not show this order")
    elif min(values) < 0:
        notes.append("its sign changes between columns: the paper itself does not order these arms consistently")
    elif max(values) < 0.5:
        notes.append("under half a point on every column, from medians of 5 seeds reported without a spread")
    if glue_sd is not None and max(abs(v) for v in values) < glue_sd:
        notes.append(f"smaller than our seeds' spread of SST-2 accuracy ({glue_sd:.1f} points)")
    return f"the paper's gap: {listed}" + (f" ({'; '.join(notes)})" if notes else "")


def claims_of(exp):
    """The experiment's claims, and those its arms carry in one line (Arm(..., beats="rate-15", says="..."))."""
    return exp.claims + [Claim(a.name, a.beats, a.says or f"{a.name} beats {a.beats}") for a in exp.arms if a.beats]


def judge(exp, arms):
    """Every claim's verdict on held-out loss (and on SST-2 accuracy when finetuned)."""
    by_name = {a["arm"]: a for a in arms}
    out = []
    for claim in claims_of(exp):
        if claim.better not in by_name or claim.worse not in by_name:
            continue  # an arm not run here: the claim is the baseline report's
        v = verdict(by_name[claim.better], by_name[claim.worse])
        entry = {"better": claim.better, "worse": claim.worse, "says": claim.says, **v,
                 "paper_gap": paper_gap(exp, claim)}
        if "sst2" in by_name[claim.better] and "sst2" in by_name[claim.worse]:
            entry["sst2"] = verdict(by_name[claim.better], by_name[claim.worse], "sst2", lower_is_better=False)
            sds = [by_name[a]["sst2"]["sd"] for a in (claim.better, claim.worse) if by_name[a]["sst2"]["n"] > 1]
            entry["sst2_sd"] = max(sds) if sds else None
        entry["paper_note"] = paper_gap_note(entry["paper_gap"], entry.get("sst2_sd"))
        out.append(entry)
    return out


def overall(verdicts):
    words = [v["verdict"] for v in verdicts]
    counts = {w: words.count(w) for w in ("reproduced", "within noise", "not reproduced at this scale")}
    if sum(counts.values()) == 0:
        return words[0] if words else "none: no claim has both its arms here (compare with the baseline report)"
    return ", ".join(f"{n} {w}" for w, n in counts.items() if n) + f" (of {len(words)} findings)"


# ---------------------------------------------------------------------------------------- report
def fmt(stat, digits, scale=1.0):
    if not stat or stat["n"] == 0:
        return "-"
    if stat["n"] == 1:
        return f"{stat['mean'] * scale:.{digits}f}"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['sd'] * scale:.{digits}f}"


def arm_cells(summary, glue):
    """Our columns for one arm: loss ± sd [se], ppl, accuracy ± sd [se], bits/byte (+ GLUE)."""
    if summary["loss"]["n"] == 0:
        cells = ["-"] * 4
    else:
        loss, se = summary["loss"]["mean"], summary["loss_se"]["mean"]
        bpb = summary["bits_per_byte"]["mean"]
        cells = [f"{fmt(summary['loss'], 3)} [{se:.3f}]", f"{math.exp(loss):.1f} [{math.exp(loss) * se:.1f}]",
                 f"{fmt(summary['accuracy'], 1)} [{summary['accuracy_se']['mean']:.1f}]",
                 f"{fmt(summary['bits_per_byte'], 3)} [{bpb * se / loss:.3f}]"]
    if glue:
        cells += [fmt(summary.get(task), 1) for task, _, _ in GLUE_TASKS]
    status = f"{summary['finished']}" + (f" (+{summary['failed']} failed)" if summary["failed"] else "")
    return cells + [status]


def settings_cell(run, train_args=""):
    """What sets this arm apart, as train.py flags: its own options (after Times), its data, and --train-args
    (every run's)."""
    parts = [f"--data {run.data}"] if run.arm.data else []
    return " ".join(parts + [flag(key, run.options[key]) for key in run.arm.options] + ([train_args] if train_args
                                                                                          else []))


def table(exp, results, runs):
    """The paper's table, its rows in its order, our measured columns beside them."""
    glue = results["glue"] is not None
    ours = ["held-out loss", "ppl", "masked acc. %", "bits/byte"] + \
           ([f"{t.upper()} acc. % (ours)" for t, _, _ in GLUE_TASKS] if glue else []) + ["seeds"]
    arms = {a["arm"]: a for a in results["arms"]}
    first_run = {r.arm.name: r for r in reversed(runs)}
    paper = exp.paper or PaperTable("", "", "Arm", [], [])
    rows = [row for row in paper.rows if row[1] is None or row[1] in arms]  # only the arms that ran
    rows += [(a.name, a.name, [""] * len(paper.columns)) for a in exp.arms
             if a.name in arms and a.name not in {row[1] for row in paper.rows}]  # arms added to the paper's
    head = [paper.header] + [title for title, _ in paper.columns] + ["ours: options"] + ours
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, arm, values in rows:
        if arm is None:
            cells = [label, *values, "(the paper's reference)"] + [""] * len(ours)
        else:
            if "+NSP" in label and first_run[arm].options.get("format") in ("segment-pair", "sentence-pair") and \
                    not any(r.get("nsp") for r in results["runs"] if r["arm"] == arm and r.get("status") == "finished"):
                label += " — ours: no NSP loss logged"  # exercise 4: the NSP loss switched off in the code
            settings = settings_cell(first_run[arm], results.get("train_args") or "") or "(the base)"
            cells = [label, *values, settings] + arm_cells(arms[arm], glue)
        lines.append("| " + " | ".join(cells) + " |")
    b = results.get("baselines")
    if b:
        lines += ["", f"**Baselines on the same masks** (what a model learns first): the unigram distribution of "
                      f"the training tokens, held-out loss {b['unigram_loss']:.3f} (ppl {math.exp(b['unigram_loss']):.1f}); "
                      f"always guessing {b['most_frequent']!r}, accuracy {b['most_frequent_accuracy']:.1f}%. A model near "
                      f"these has learned little beyond how often each token occurs."]
    return lines


def report(exp, results, runs, base):
    """report.md: the question, the paper's table beside ours, the verdicts, every run and command."""
    return "\n".join(header(exp, results, runs, base) + table(exp, results, runs) + [""]
                     + ([f"*{exp.note}*", ""] if exp.note else []) + verdict_lines(results)
                     + runs_section(results))


def header(exp, results, runs, base):
    paper = exp.paper
    lines = [f"# {exp.name}: {paper.source if paper else 'beyond the paper'}", ""]
    if results.get("variant"):
        words = shlex.split(results["invocation"])[3:]
        kept = [w for i, w in enumerate(words) if not (w in PLUMBING or i and words[i - 1] in PLUMBING
                                                       or w in ("--quick", "--overwrite", "--scale"))]
        changed = f"what does `{shlex.join(kept)}`, and any edit to the code made for it, change?" if kept else \
            "what does the edit to the code made for it change?"
        baseline = f"python experiments.py {exp.name}" + (" --quick" if results["scale"] == "quick" else "")
        lines += [f"**A variant of the `{exp.name}` experiment**: `{results['invocation']}`. Its question: {changed} "
                  f"Compare each row with the same row of the baseline report, "
                  f"`{os.path.join(DEFAULT_OUT, exp.name, 'report.md')}` (made by `{baseline}`). The experiment's "
                  f"own question:", ""]
    lines += [f"**Question.** {exp.question}", ""]
    if results.get("not_run"):
        lines += [f"Arms not run here: {', '.join(results['not_run'])} (see the baseline report).", ""]
    if len(results.get("codes", [])) > 1:
        by_code = {c: sorted({f"{r['arm']} seed {r['seed']}" for r in results["runs"]
                              if (r.get("code") or "not recorded") == c}) for c in results["codes"]}
        lines += ["**Mixed code.** These runs ran with different versions of the code (a hash of the project's "
                  "source files): " + "; ".join(f"{c}: {', '.join(runs)}" for c, runs in by_code.items())
                  + f". The code now is {results['code']}: rerun the command (`{results['invocation']}`, without "
                    f"--arms) and runs of other code are trained again.", ""]
    if paper:
        lines += [f"**The paper** ({paper.source}): {paper.caption}", ""]
    sizes = "; ".join(f"{name}: {d['tokens']:,} tokens in {d['documents']:,} documents"
                      for name, d in results["data"].items())
    seeds = f"{results['seeds']} seed{'s' if results['seeds'] != 1 else ''} per arm"
    return lines + [
        f"**Ours** ({results['scale']} scale, {seeds}): `train.py {' '.join(flag(k, v) for k, v in base.items())}` "
        f"(warmup 10% of the steps) and each arm's options below, on the {exp.data} data unless an arm says "
        f"otherwise (training data, {sizes}). Every run is evaluated on the same {results['heldout_targets']:,} "
        f"masked held-out tokens (15%, fixed masks, `{runs[0].heldout}`). Cells: mean ± standard deviation over "
        f"seeds [the held-out standard error of one run's figure, mean over seeds]; ppl = exp(mean loss). The "
        f"standard error says how well this sample of masked tokens pins down one model's loss; every arm is "
        f"scored on the same tokens, so the verdicts compare arms by the spread over seeds.", ""]


def verdict_lines(results):
    lines = [f"**Verdict: {results['verdict']}.**", "",
             f"Time: {results['run_seconds'] / 60:.1f} min of runs in all (each run's training and evaluation, "
             f"added up); this invocation took {results['wall_seconds'] / 60:.1f} min.", ""]
    for v in results["verdicts"]:
        text = f"- *{v['better']} beats {v['worse']}* ({v['says']}): **{v['verdict']}**"
        if "difference" in v:
            text += f"; held-out loss lower by {v['difference']:+.4f} (2 se = {2 * v['se']:.4f})"
        if "sst2" in v and "difference" in v["sst2"]:
            text += f"; SST-2: {v['sst2']['verdict']} ({v['sst2']['difference']:+.1f} points, " \
                    f"2 se = {2 * v['sst2']['se']:.1f})"
        if v["paper_note"]:
            text += f". {v['paper_note'][0].upper()}{v['paper_note'][1:]}"
        lines.append(text + ".")
    return lines + ["", "Verdicts: d = mean loss of the worse arm - mean loss of the better arm (the paper's order); "
                    "se = sqrt(sd1²/n1 + sd2²/n2) over seeds. reproduced: d > 2 se; not reproduced at this scale: "
                    "d < -2 se; within noise: otherwise.", ""]


def runs_section(results):
    lines = []
    failed = [r for r in results["runs"] if r.get("status") == "failed"]
    if failed:
        lines += ["## Failed runs", ""] + [f"- **FAILED** {r['arm']} seed {r['seed']}: {r['error']} (log kept in "
                                           f"`{r['folder']}`). Rerun: `{r['rerun']}`" for r in failed] + [""]
    lines += ["## Runs", "", "| arm | seed | status | held-out loss [se] | masked acc. % | epochs | seconds |",
              "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        h = r.get("heldout")
        lines.append(f"| {r['arm']} | {r['seed']} | {r.get('status')} | "
                     + (f"{h['loss']:.4f} [{h['loss_se']:.4f}] | {h['accuracy']:.1f} | " if h else "- | - | ")
                     + f"{r.get('epochs', '-')} | {r.get('seconds', '-')} |")
    return lines + ["", "## Commands", "", "Preparation:", "", "```"] + results["preparation"] + [
        "```", "", "Each run (rerun any one by hand; add --resume to continue one that was interrupted):", "", "```"
    ] + [r["command"] for r in results["runs"]] + ["```", ""]


def plot(exp, results, path):
    """Held-out loss curves (mean over seeds) and the final comparison; only when matplotlib is installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in exp.arms:
        curves = [r["curve"] for r in results["runs"] if r["arm"] == arm.name and r.get("curve")]
        if curves:
            n = min(len(c) for c in curves)
            left.plot([c[1] for c in curves[0][:n]], [statistics.fmean(c[k][2] for c in curves) for k in range(n)],
                      label=arm.name, marker=".")
    left.set(xlabel="tokens seen (sequences x length)", ylabel="held-out loss (the run's own masking)",
             title="training curves")
    left.legend()
    arms = [a for a in results["arms"] if a["loss"]["n"]]
    right.bar(range(len(arms)), [a["loss"]["mean"] for a in arms], yerr=[a["loss"]["sd"] for a in arms], capsize=4)
    right.set_xticks(range(len(arms)), [a["arm"] for a in arms], rotation=20)
    low = min(a["loss"]["mean"] - 3 * (a["loss"]["sd"] or 0.01) for a in arms) if arms else 0
    right.set_ylim(bottom=max(0, low))
    right.set(ylabel="held-out loss, same 15% masks", title="final (mean ± sd over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------- one experiment
DEFAULT_OUT = "experiments"
PLUMBING = ("--seeds", "--jobs", "--out", "--glue", "--device", "--arms")  # options that do not change a run's result


def is_variant(args):
    """A run that is not the experiment as declared: some arms, more options, or its own --out."""
    return bool(args.arms or args.train_args or os.path.normpath(args.out) != DEFAULT_OUT)


def invocation(exp, args):
    """This experiment's command as typed: its name and every option that differs from the default."""
    argv = ["python", "experiments.py", exp.name]
    for name, default in (("scale", "classroom"), ("seeds", None), ("glue", None), ("out", DEFAULT_OUT),
                          ("corpus", None), ("vocab_size", None), ("train_args", None), ("device", None),
                          ("arms", None), ("steps_factor", 1.0), ("jobs", 1)):
        value = getattr(args, name)
        if value != default and not (name == "scale" and args.quick):
            argv += [f"--{name.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(argv + (["--quick"] if args.quick else []) + (["--overwrite"] if args.overwrite else []))


def heldout_baselines(prepared, seq_len):
    """The unigram distribution's loss and the most frequent token's accuracy on the runs' held-out masks."""
    tok = bpe.Tokenizer.load(prepared.tokenizer)
    valid, ends, _ = data.load_split(prepared.folders["full"], "valid")
    train_tokens, _, _ = data.load_split(prepared.folders["full"], "train")
    batches = data.heldout_batches(valid, ends, tok, seq_len, batch_size=32, masking=data.Masking())
    out = baselines.unigram_baselines(train_tokens, batches, tok)
    return {**out, "most_frequent_accuracy": 100 * out["most_frequent_accuracy"],
            "most_frequent": tok.decode([out["most_frequent"]])}


def run_experiment(exp, args):
    scale = SCALES["quick" if args.quick else args.scale]
    if scale.train.get("device") == "cuda" and not args.device:
        if not torch.cuda.is_available():
            raise Refused("--scale gpu needs a CUDA GPU (none is available here); use --scale classroom, or "
                          "--device cpu to run the gpu scale's settings slowly")
    t0 = time.time()
    chosen = chosen_arms(exp, args.arms)
    args.code = code_hash()
    say(f"[{exp.name}] {exp.question}\n[{exp.name}] preparing the data ({scale.name} scale)")
    prepared = prepare(scale, args, any((a.data or exp.data) == "slice" for a in chosen))
    planned = plan(exp, scale, args, prepared)
    runs = [r for r in planned if r.arm in chosen]
    check_conflicts(runs, args.overwrite)
    with ThreadPoolExecutor(args.jobs) as pool:  # --jobs runs side by side (each train.py is its own process)
        records = list(pool.map(lambda i: do_run(runs[i], i + 1, len(runs), exp, scale, args),
                                 range(len(runs))))
    skipped_now = sum(bool(r.pop("skipped", False)) for r in records)
    trained_now = sum(r.get("status") == "finished" for r in records) - skipped_now
    failed_now = sum(r.get("status") == "failed" for r in records)
    others = [(r, earlier_record(r)) for r in planned if r.arm not in chosen]  # arms not run now
    records += [record for _, record in others if record]
    runs += [r for r, record in others if record]
    order = {a.name: i for i, a in enumerate(exp.arms)}
    records.sort(key=lambda r: (order[r["arm"]], r["seed"]))
    runs.sort(key=lambda r: (order[r.arm.name], r.seed))
    ran = {r["arm"] for r in records}  # arms with a run (now or before): the report shows only these
    arms = [arm_summary(records, arm) for arm in exp.arms if arm.name in ran]
    verdicts = judge(exp, arms)
    finished = [r for r in records if r.get("status") == "finished"]
    results = {"experiment": exp.name, "question": exp.question, "scale": scale.name,
               "seeds": args.seeds or scale.seeds, "train_args": args.train_args,
               "paper": None if exp.paper is None else {"source": exp.paper.source, "caption": exp.paper.caption,
                                                        "columns": exp.paper.columns, "rows": exp.paper.rows},
               "preparation": prepared.commands,
               "data": {k: data.read_meta(v)["train"] for k, v in prepared.folders.items()
                        if os.path.isfile(os.path.join(v, "meta.json"))},
               "heldout_targets": finished[0]["heldout"]["targets"] if finished else 0,
               "invocation": invocation(exp, args), "variant": is_variant(args), "codes": sorted(
                   {r.get("code") or "not recorded" for r in records}), "code": args.code,
               "baselines": heldout_baselines(prepared, planned[0].options["seq_len"]), "not_run": [a.name for a in exp.arms if a.name not in ran],
               "glue": args.glue, "runs": records, "arms": arms, "verdicts": verdicts,
               "verdict": overall(verdicts), "failed_now": failed_now, "wall_seconds": round(time.time() - t0, 1),
               "run_seconds": round(sum(r.get("seconds", 0) for r in records), 1)}
    folder = os.path.join(args.out, exp.name)
    os.makedirs(folder, exist_ok=True)
    files.write_atomic(os.path.join(folder, "results.json"), json.dumps(results, indent=2))
    base = base_options(exp, scale, args.steps_factor)
    files.write_atomic(os.path.join(folder, "report.md"), report(exp, results, runs, base))
    png = plot(exp, results, os.path.join(folder, "loss.png"))
    say(f"[{exp.name}] {trained_now} run(s) trained, {skipped_now} skipped (finished before), {failed_now} failed "
        f"in {duration(results['wall_seconds'])}; verdict: {results['verdict']}; report: "
        f"{os.path.join(folder, 'report.md')}" + (f", {png}" if png else ""))
    return results


# ---------------------------------------------------------------------------------------- command line
def estimate_minutes(exp, scale):
    base = base_options(exp, scale)
    seconds = 0.0
    for arm in exp.arms:
        o = apply(base, arm.options)
        seconds += scale.seeds * (o["max_steps"] * o["batch_size"] * o["seq_len"] / scale.tokens_per_s
                                  + scale.overhead_s)
    return seconds / 60


def list_experiments():
    for exp in EXPERIMENTS:
        source = exp.paper.source if exp.paper else "beyond the paper"
        times = ", ".join(f"{name} ~{estimate_minutes(exp, s):.0f} min" + ("" if s.measured else " (assumed speed)")
                          for name, s in SCALES.items() if name != "quick")
        print(f"{exp.name:<15} {source}: {exp.question}\n{'':15} {len(exp.arms)} arms: "
              f"{', '.join(a.name for a in exp.arms)}; 3 seeds each; {times}; --quick: seconds")


def experiment_name(text):
    names = ["list", "all"] + [e.name for e in EXPERIMENTS]
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown experiment {text!r}: choose one of {', '.join(names)}")
    return text


def text_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def glue_folder(text):
    missing = [f"{folder}/{f}" for _, folder, required in GLUE_TASKS if required for f in ("train.tsv", "dev.tsv")
               if not os.path.isfile(os.path.join(text, folder, f))]
    if missing:
        raise argparse.ArgumentTypeError(f"{text}: no {' or '.join(missing)} there (a GLUE folder holds one "
                                         f"folder per task: SST-2/, RTE/, ...)")
    return text


def parser():
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", type=experiment_name, help="list, all, or one of: " +
                   ", ".join(e.name for e in EXPERIMENTS))
    p.add_argument("--scale", choices=["classroom", "gpu"], default="classroom",
                   help="classroom: <= 20 min per experiment on a 2-core CPU; gpu: ~1 hour on one GPU")
    p.add_argument("--quick", action="store_true", help="seconds per experiment, for the tests (tiny everything)")
    p.add_argument("--seeds", type=cli.number(int, 1), help="seeds per arm (default: 3; --quick: 2)")
    p.add_argument("--glue", type=glue_folder, help="a GLUE folder: adds SST-2 (and RTE) dev accuracy per run")
    p.add_argument("--out", type=cli.path_arg, default="experiments", help="where results go (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="run again, replacing finished runs")
    p.add_argument("--corpus", type=text_file, help="a text file to pretrain on instead of the scale's corpus")
    p.add_argument("--vocab-size", type=cli.number(int, 260), help="BPE vocabulary (default: the scale's)")
    p.add_argument("--train-args", help="more train.py options for every run, e.g. \"--dropout 0\"")
    p.add_argument("--device", help="train.py's --device for every run (and the evaluation's)")
    p.add_argument("--arms", help="run only these arms, comma-separated (default: all)")
    p.add_argument("--steps-factor", type=cli.number(float, 0, 1000, low_open=True), default=1.0,
                   help="multiply every run's steps, in (0, 1000]: 3 trains three times longer (default: %(default)s)")
    p.add_argument("--jobs", type=cli.number(int, 1), default=1,
                   help="runs side by side (default: %(default)s; each is a train.py process)")
    return p


def main(argv=None):
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.experiment == "list":
        return list_experiments()
    chosen = EXPERIMENTS if args.experiment == "all" else [e for e in EXPERIMENTS if e.name == args.experiment]
    try:
        failed = 0
        parse_train_args(args.train_args)  # its quoting, checked before any work
        with lock.writing(args.out, "experiments.py"):  # one writer: a second experiments.py is refused
            for exp in chosen:
                results = run_experiment(exp, args)
                failed += results["failed_now"]
    except (Refused, OSError, ValueError) as err:
        sys.exit(f"error: {cli.describe(err)}")
    except KeyboardInterrupt:
        sys.exit("interrupted: rerun the same command to resume")
    if failed:
        sys.exit(f"error: {failed} run(s) failed; the report marks them and names the command to rerun")


if __name__ == "__main__":
    main()
