"""experiments.py's runs: every run planned (arm x seed: its folder and train.py options), and one run taken from
wherever it stands to its record: trained (its command printed), evaluated, finetuned; or failed, with its rerun.
"""
import ast
import glob
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

import bpe
import data
import experiments
import roberta
from machinery.formats import checkpoints, prepared
from machinery.lab import text_figures
from machinery.basics import files, speed
from machinery.fast import orders

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


# ---------------------------------------------------------------------------------------- commands
PRINT_LOCK = threading.Lock()
AST_LOCK = threading.Lock()      # CPython 3.11's ast.parse is not thread-safe (gh-106905): experiments side by side
PROGRESS_SECONDS = 30            # a running run's progress line, this often
SAMPLE_TOKENS = 2_000_000        # equal tokens: the formats' batches measured on this many training tokens
CORE = ["bpe.py", "roberta.py", "data.py", "train.py", "finetune.py", "evaluate.py"]


def say(text):
    """Print whole lines, one writer at a time: runs side by side (--jobs) never share a line."""
    with PRINT_LOCK:
        print(text, flush=True)


def script(name):
    """A project script as a user types it: `train.py` from the repository, its path from elsewhere."""
    return os.path.relpath(os.path.join(ROOT, name))


def shown(argv):
    """The command as a user would type it."""
    return shlex.join(["python", *argv[1:]])


def execute(argv, log_path, env_threads=0, progress=None):
    """Run a command (argv[0] is python), its output into log_path; (exit code, last line of its errors).
    `progress`, when given, is called every PROGRESS_SECONDS while the command runs."""
    env = {"OMP_NUM_THREADS": str(env_threads)} if env_threads else {}
    env.update(os.environ)  # a thread count set by the user wins
    with open(log_path, "a") as log:
        log.write(f"$ {shown(argv)}\n")
        log.flush()
        start = log.tell()
        proc = subprocess.Popen([sys.executable, *argv[1:]], stdout=log, stderr=log, text=True, env=env)
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
    """One run's progress from its log.jsonl: step, loss, speed and the time left."""
    last = (log_records(run) or [{}])[-1]
    if "step" not in last:
        return f"{label}: starting ({duration(elapsed)})"
    steps = run.options["max_steps"]
    text = f"{label}: step {last['step']:,}/{steps:,} ({last['step'] / steps:.0%})"
    if isinstance(last.get("loss"), (int, float)):
        text += f", loss {last['loss']:.3f}"
    if isinstance(tps := last.get("tokens_per_s"), (int, float)) and tps > 0:
        left = (steps - last["step"]) * run.options["batch_size"] * run.options["seq_len"] / tps
        text += f", {tps:,.0f} tokens/s, ETA {duration(left)}"
    return text + f" ({duration(elapsed)} so far)"


# ---------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    arm: "experiments.Arm"
    seed: int
    folder: str
    options: dict                # train.py options of this run
    data: str                    # the data.py folder it trains on
    heldout: str                 # the data.py folder whose held-out split scores it (one per tokenizer)
    flags: tuple = ()            # train.py options without a value, from --train-args
    corpus: str = ""             # bits-per-byte experiments: the corpus whose held-out lines it is scored on
    fitted: tuple = ()           # options the plan set for this arm (equal tokens per update), shown with its own

    @property
    def argv(self):
        """The train.py command of this run."""
        return ["python", script("train.py"), "--data", self.data, "--out", self.folder] + option_words(self.options) \
            + list(self.flags)


# An arm's option at train.py's own default is left out of its command, so that the same run declared two ways
# (formats' --format full-sentences, mask-rate's --mask-rate 0.15, text-encoding's byte-level: none) is one command.
TRAIN_DEFAULTS = {"format": "full-sentences", "mask_rate": data.Masking.rate, "masking": "dynamic"}


def option_words(options):
    """train.py options as typed, those at train.py's default (TRAIN_DEFAULTS) left out."""
    return [word for key, value in options.items() if TRAIN_DEFAULTS.get(key, object()) != value
            for word in flag(key, value).split(" ", 1)]


def run_folder(out, data_dir, options, flags, heldout, corpus, finetune):
    """OUT/_runs/<key>/seed<k>, the key a hash of everything but the seed that makes the run and its record: an
    arm declared by two experiments is one run, trained and scored once."""
    what = [data_dir, option_words({k: v for k, v in options.items() if k != "seed"}), list(flags), heldout]
    key = hashlib.sha256(json.dumps(what + [corpus, finetune]).encode()).hexdigest()[:10]
    return os.path.join(out, "_runs", key, f"seed{options['seed']}")


def flag(key, value):
    """An option as typed: ("max_steps", 800) -> "--max-steps 800"; floats to 6 significant digits."""
    return f"--{key.replace('_', '-')} " + (f"{value:.6g}" if isinstance(value, float) else str(value))


def apply(options, changes):
    """options with `changes` applied: a Times multiplies the current value (rounded for whole numbers)."""
    out = dict(options)
    for key, value in changes.items():
        if isinstance(value, experiments.Times):
            value = value.factor * out[key]
            value = max(1, round(value)) if isinstance(out[key], int) else value
        out[key] = value
    return out


def base_options(exp, scale, steps_factor=1.0):
    """The train.py options every arm of `exp` starts from at this scale."""
    return apply(apply(scale.train, exp.base), {"max_steps": experiments.Times(steps_factor)})


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
    """Every run of the experiment: arm x seed, with its folder and train.py options. Run k of every arm has
    --seed k (train.py: its initialisation, data order, masks), so the arms of one seed are paired."""
    base = base_options(exp, scale, args.steps_factor)
    extra, flags = parse_train_args(args.train_args)
    per_update = update_tokens(exp, base, prepared)
    runs = []
    for arm in exp.arms:
        if arm.finetune and not getattr(args, "finetune_on", None):
            continue  # the downstream control runs only where there is a downstream score to control
        options = {**apply(base, arm.options), **extra}
        fitted = per_update.get(options.get("format"), {})
        options.update(fitted)
        if exp.epochs and scale.whole_epochs and not arm.finetune:
            options["max_steps"] = epoch_steps(prepared.folders[arm.data or exp.data], options,
                                               max(1, round(exp.epochs * args.steps_factor)))
        steps = options["max_steps"]
        options.setdefault("warmup_steps", max(1, round(0.1 * steps)))
        options.update(log_interval=max(1, steps // 40), eval_interval=max(1, steps // 8),
                       save_interval=max(1, steps // 4), eval_sequences=scale.eval_sequences)
        if args.device:
            options["device"] = args.device
        own = char_key(arm, args.vocab_size or scale.vocab_size)  # its own tokenizer's data
        train_dir, heldout = prepared.folders[own or arm.data or exp.data], prepared.folders[own or exp.heldout]
        for seed in range(args.seeds or exp.seeds or scale.seeds):
            seeded = {**options, "seed": seed}
            folder = run_folder(args.out, train_dir, seeded, flags, heldout, prepared.corpus, arm.finetune)
            runs.append(Run(arm, seed, folder, seeded, train_dir, heldout, tuple(flags), prepared.corpus,
                            tuple(fitted)))
    return runs


def epoch_steps(folder, options, epochs):
    """The updates of exactly `epochs` epochs of `folder`'s training examples in batches of --batch-size (an
    epoch's incomplete last batch dropped); the declared max_steps when the data is not prepared."""
    if not os.path.isfile(os.path.join(folder, "meta.json")):
        return options["max_steps"]
    tok = bpe.Tokenizer.load(os.path.dirname(os.path.normpath(folder)))
    tokens, ends, _ = prepared.load_split(folder, "train")
    n = len(data.examples(tokens, ends, options.get("format", "full-sentences"), options["seq_len"], tok.eos_id))
    return epochs * max(1, n // options["batch_size"])


def real_lengths(tokens, ex, fmt, seq_len, eos_id):
    """The real tokens of each example as train.py collates it (data.collate): <s> and a block for the single-
    segment formats; a pair without the </s> inside its segments, cut to fit, and its four special tokens."""
    if not data.FORMATS[fmt].pairs:
        return np.minimum(ex["a_end"] - ex["a_start"] + 1, seq_len)
    ends = np.concatenate([[0], np.cumsum(np.asarray(tokens) == eos_id)])
    la = ex["a_end"] - ex["a_start"] - (ends[ex["a_end"]] - ends[ex["a_start"]])
    lb = ex["b_end"] - ex["b_start"] - (ends[ex["b_end"]] - ends[ex["b_start"]])
    la, lb = data.truncate_pair(la, lb, seq_len - 4)
    return la + lb + 4


def run_tokens(tokens, ends, eos_id, fmt, options, seed=0):
    """The real tokens a run of these options reads in its max_steps updates, as train.py batches them."""
    seq_len, size = options["seq_len"], options["batch_size"]
    ex = data.examples(tokens, ends, fmt, seq_len, eos_id, seed)
    lengths, real = data.example_lengths(ex, fmt, seq_len), real_lengths(tokens, ex, fmt, seq_len, eos_id)
    budget = (options.get("tokens_per_batch") or size * seq_len) if data.FORMATS[fmt].by_tokens else None
    total, left, epoch = 0, options["max_steps"], 0
    while left > 0:
        found = data.epoch_batches(lengths, size, seed, epoch, budget)
        sums = [int(real[found.get(i)].sum()) for i in range(min(left, len(found)))]
        if not sums:
            raise ValueError(f"{fmt}: too little data for one batch")
        total, left, epoch = total + sum(sums), left - len(sums), epoch + 1
    return total


def update_tokens(exp, base, prep):
    """Section 4.2's equal tokens: {format: the train.py options that give its run as many real tokens as
    FULL-SENTENCES' run, within 1%}: a batch scaled by the mean length (SEGMENT-PAIR) or the tokens-per-batch
    budget whose batches hold as many on average, then the updates that match the total."""
    if not exp.equal_tokens:
        return {}
    folder, seq_len = prep.folders[exp.data], base["seq_len"]
    eos = bpe.Tokenizer.load(os.path.dirname(os.path.normpath(folder))).eos_id
    tokens, ends, _ = prepared.load_split(folder, "train")
    lines = int(np.searchsorted(ends, SAMPLE_TOKENS)) + 1  # the first 2M tokens' lines
    tokens, ends = tokens[:int(ends[min(lines, len(ends)) - 1])], ends[:lines]
    target = run_tokens(tokens, ends, eos, "full-sentences", base)
    out = {}
    for fmt in sorted({a.options.get("format", "full-sentences") for a in exp.arms} - {"full-sentences"}):
        ex = data.examples(tokens, ends, fmt, seq_len, eos)
        lengths, real = data.example_lengths(ex, fmt, seq_len), real_lengths(tokens, ex, fmt, seq_len, eos)
        per_update = target / base["max_steps"]
        if not data.FORMATS[fmt].by_tokens:
            fitted = {"batch_size": max(1, round(per_update / float(real.mean())))}
        else:
            order = orders.epoch_order(len(lengths), 0, 0).tolist()
            mean = {b: float(np.mean([real[x].sum() for x in data.budget_batches(order, lengths, b)]))
                    for b in range(round(per_update), round(per_update * lengths.mean() / real.mean()) + seq_len + 1)}
            fitted = {"tokens_per_batch": min(mean, key=lambda b: abs(mean[b] - per_update))}
        options = {**base, **fitted}
        fitted["max_steps"] = max(1, round(base["max_steps"] * target / run_tokens(tokens, ends, eos, fmt, options)))
        out[fmt] = fitted
    return out


def char_key(arm, vocab):
    """The data key of an arm with its own tokenizer ("char2458"), or None for the scale's byte-level BPE."""
    return f"char{max(bpe.MIN_VOCAB, round(arm.vocab * vocab))}" if arm.tokenizer == "characters" else None


def chosen_arms(exp, names):
    """The arms to run: all, or those --arms names."""
    known = [a.name for a in exp.arms]
    for name in names.split(",") if names else []:
        if name not in known:
            raise ValueError(f"--arms: {name!r} is not an arm of {exp.name} ({', '.join(known)})")
    return [a for a in exp.arms if not names or a.name in names.split(",")]


def code_hash(root=ROOT, paths=None):
    """The version of the code a run ran with: a hash of the held-out texts and the files experiments.py and the
    core import, wherever the import stands (this runner too); or of `paths`, relative to root. Not of experiments.py's
    declarations ("the experiments" to "scales"): a run's command is compared on its own (a new arm reruns nothing)."""
    texts = sorted(glob.glob(os.path.join(root, "machinery", "lab", "heldout_text", "*.txt"))) if paths is None else []
    paths = [os.path.join(root, name) for name in (paths or imported(CORE + ["experiments.py"], root))] + texts
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            text = f.read()
        if os.path.basename(path) == "experiments.py":
            text = re.sub(rb"\n# -+ the experiments\n.*?\n# -+ scales\n", b"", text, flags=re.S)
        h.update(os.path.relpath(path, root).encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:12]


def imported(paths, root=ROOT):
    """`paths` (relative to root) and every project file they import, directly or not, wherever the import stands."""
    seen, todo = set(), list(paths)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        with open(os.path.join(root, path), "rb") as f, AST_LOCK:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                for candidate in (name.replace(".", "/") + ".py", name.replace(".", "/") + "/__init__.py"):
                    if os.path.isfile(os.path.join(root, candidate)):
                        todo.append(candidate)
    return sorted(seen)


def run_status(run, command, overwrite, code=None):
    """"finished", "evaluate" (trained, not evaluated), "resume", "new", "stale" (its folder holds this run
    made with other code: trained again) or "conflict" (another run's folder)."""
    record = files.read_json(os.path.join(run.folder, "run.json"), missing=True)
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
    record = files.read_json(os.path.join(run.folder, "run.json"), missing=True)
    if record and record.get("command") == shown(run.argv) and record.get("status") in ("finished", "failed"):
        return {**record, "arm": run.arm.name}  # a shared run: the arm of this experiment that declared it
    return None


def check_conflicts(runs, overwrite):
    """Before any work: refuse to touch a folder that holds another run (unless --overwrite)."""
    for run in runs:
        if run_status(run, run.argv, overwrite) == "conflict":
            raise ValueError(f"{run.folder} holds a run with other settings than `{shown(run.argv)}`; "
                             f"pass --overwrite to replace it, or choose another --out")


def write_run(run, record):
    files.write_atomic(os.path.join(run.folder, "run.json"), files.json_text(record, indent=2))


def log_records(run):
    """The records of the run's log.jsonl (train.py's), [] before its first."""
    path = os.path.join(run.folder, "log.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def curve(records, run):
    """(step, sequences x length seen, held-out loss at the run's own masking) from train.py's log."""
    size = run.options["batch_size"] * run.options["seq_len"]
    return [[r["step"], r["step"] * size, r["valid_loss"]] for r in records
            if isinstance(r.get("valid_loss"), (int, float)) and math.isfinite(r["valid_loss"])]


# ---------------------------------------------------------------------------------------- evaluation
def evaluate_heldout(folder, data_dir, seq_len, device, corpus, valid_fraction):
    """The checkpoint's loss, accuracy (with standard errors) and bits per byte on the fixed 15% held-out masks of
    data_dir (FULL-SENTENCES blocks); with `corpus`, text_figures' under "texts"."""
    tok = bpe.Tokenizer.load(folder)
    model = roberta.load_pretrained(folder, verbose=False, new_head_ok=False)
    checkpoints.check_tokenizer(folder, tok)  # the tokenizer its checkpoint.pt recorded
    tokens, ends, meta = prepared.load_split(data_dir, "valid")
    prepared.check_tokenizer(meta, tok, data_dir, folder)
    batches = data.heldout_batches(tokens, ends, tok, seq_len, batch_size=32)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = data.evaluate_mlm(model.to(device), batches, device, detailed=True)
    n = out["targets"]
    loss, acc = out["loss_sum"] / n, out["correct"] / n
    byte_len = np.array([len(tok.vocab.get(i, b"")) for i in range(len(tok))], dtype=np.int64)
    target_bytes = sum(int(byte_len[labels[labels != -100].numpy()].sum()) for _, labels in batches)
    figures = {"loss": loss, "loss_se": math.sqrt(max(out["loss_sq_sum"] / n - loss ** 2, 0.0) / n),
               "ppl": math.exp(loss), "accuracy": 100 * acc, "accuracy_se": 100 * math.sqrt(acc * (1 - acc) / n),
               "bits_per_byte": out["loss_sum"] / math.log(2) / max(target_bytes, 1), "targets": n, "format": "full-sentences"}
    if corpus:  # <unk> counted: the English figure replaces the one above
        texts = text_figures.all_figures(model, tok, corpus, valid_fraction, seq_len, device)
        figures.update(texts=texts, bits_per_byte=texts["english"]["bits_per_byte"])
    return figures


def finetune_run(run, glue, scale, fresh, threads):
    """{task: accuracy or an error line} of a finished run (finetune.py); `fresh`: retrained now (old scores stale)."""
    scores, log_path = {}, os.path.join(run.folder, "finetune.out")
    for task, folder, _ in experiments.GLUE_TASKS:
        task_dir = os.path.join(glue, folder)
        if not all(os.path.isfile(os.path.join(task_dir, f)) for f in ("train.tsv", "dev.tsv")):
            continue
        out = os.path.join(run.folder, f"glue-{task}")
        argv = ["python", script("finetune.py"), "--task", task, "--data", task_dir, "--checkpoint", run.folder,
                "--out", out, "--seed", str(run.seed), "--no-progress"]
        argv += option_words(scale.finetune) + shlex.split(run.arm.finetune)  # the control's --random-init
        metrics = None if fresh else files.read_json(os.path.join(out, "metrics.json"), missing=True)
        if metrics is None:
            if os.path.isdir(out):  # stale, or unfinished: finetune.py refuses an existing --out
                shutil.rmtree(out)
            say(f"    {shown(argv)}")
            code, last = execute(argv, log_path, threads)
            metrics = files.read_json(os.path.join(out, "metrics.json"), missing=True)
            if code != 0 or metrics is None:
                scores[task] = {"error": last, "command": shown(argv)}
                continue
        scores[task] = {"accuracy": next(iter(metrics["dev"].values()))["accuracy"], "command": shown(argv)}
    return scores


def do_run(run, i, total, exp, scale, args):
    """One run from wherever it stands to its record: skipped (finished before: finetuned if --glue is new to
    it), trained (a progress line every PROGRESS_SECONDS), evaluated, finetuned; or failed."""
    command, code = run.argv, code_hash()
    label = f"[{exp.name}] {i}/{total} {run.arm.name} seed {run.seed}"
    if code != args.code:
        say(f"{label}: warning: the code changed since this experiment started ({args.code} -> {code}); this "
            f"run uses the new code, and the report will say that its runs mix code versions")
    status = run_status(run, command, args.overwrite, code)
    if status == "finished":  # here, or in another experiment that declares the same run
        say(f"{label}: finished before, skipped ({shown(command)})")
        record = files.read_json(os.path.join(run.folder, "run.json"), missing=True)
        if args.finetune_on and not record.get("glue"):  # SST-2 here now: finetune the finished checkpoint
            record["glue"] = finetune_run(run, args.finetune_on, scale, False, speed.threads_for(args.jobs))
            write_run(run, record)
        return {**record, "arm": run.arm.name, "skipped": True}  # a shared run: this experiment's arm
    threads = scale.threads or speed.threads_for(args.jobs)
    flags = ["--resume"] if status == "resume" else ["--overwrite"] if args.overwrite or status == "stale" else []
    if status == "stale":
        was = files.read_json(os.path.join(run.folder, "run.json"), missing=True).get("code") or "not recorded"
        doing = f"training again: it ran with other code (code {was}, now {code})"
    else:
        doing = {"resume": "resuming", "evaluate": "evaluating"}.get(status, "training")
    say(f"{label}: {doing} ({threads} thread{'s' if threads > 1 else ''})"
        + (f"\n    {shown(command + flags)}" if status != "evaluate" else ""))
    record = {"command": shown(command), "arm": run.arm.name, "seed": run.seed, "folder": run.folder, "code": code}
    t0 = time.time()
    if status != "evaluate":
        os.makedirs(run.folder, exist_ok=True)
        write_run(run, {"command": shown(command), "status": "running", "code": code})
        exit_code, last = execute(command + flags, os.path.join(run.folder, "train.out"), threads,
                                  progress=lambda: say(progress_line(label, run, time.time() - t0)))
        if exit_code != 0:  # marked failed, with its last error and the command that reruns it
            rerun = shown(command + (["--resume"] if os.path.isfile(os.path.join(run.folder, "checkpoint.pt")) else []))
            record.update(status="failed", error=last, rerun=rerun, curve=curve(log_records(run), run),
                          log=os.path.join(run.folder, "train.out"))
            write_run(run, record)
            say(f"{label}: FAILED: {last}\n    its log is kept in {run.folder}; to rerun it: {rerun}")
            return record
    return finish_run(run, record, t0, status, label, scale, args, threads)


def finish_run(run, record, t0, status, label, scale, args, threads):
    """A trained run: evaluated on the fixed held-out masks, finetuned with --glue, its record written."""
    heldout = evaluate_heldout(run.folder, run.heldout, run.options["seq_len"], args.device, run.corpus,
                               scale.valid_fraction)
    log = log_records(run)
    last = (log or [{}])[-1]
    record.update(status="finished", seconds=round(time.time() - t0, 1), heldout=heldout, curve=curve(log, run),
                  epochs=last.get("epoch"), train_loss=last.get("loss"), nsp=any("nsp_loss" in r for r in log),
                  sequences_seen=run.options["max_steps"] * run.options["batch_size"],
                  tokens_seen=last.get("tokens_seen"))  # real tokens of every update, no padding
    if args.finetune_on:
        record["glue"] = finetune_run(run, args.finetune_on, scale, status != "evaluate", threads)
    write_run(run, record)
    say(f"{label}: done: held-out loss {heldout['loss']:.4f} [se {heldout['loss_se']:.4f}], accuracy "
        f"{heldout['accuracy']:.1f}% ({heldout['targets']:,} masked tokens), {record['seconds']:.0f} s")
    return record
