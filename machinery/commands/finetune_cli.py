"""The command line of finetune.py: its options (Table 10's hyperparameters, checked), the --sweep over Table 10's
grid (finetune.sweep, Section 5.1), and one-line errors.

    python finetune.py --task rte --data glue/RTE --checkpoint roberta-base/ --out runs/rte
    python finetune.py --task mrpc ... --sweep
"""
import argparse
import collections
import os
import sys

import evaluate
import finetune
from machinery.basics import cli, files, lock
from machinery.commands import corpora, evaluate_cli
from machinery.formats import task_files


# ---------------------------------------------------------------------------------------- the options
HYPERPARAMETERS = [  # Table 10's, whose defaults depend on the task's family
    ("--lr", cli.number(float, 0, 1, low_open=True), "peak learning rate, in (0, 1]"),
    ("--batch-size", cli.number(int, 1), "examples per update, at least 1"),
    ("--epochs", cli.number(int, 1), "passes over the training set, at least 1"),
    ("--warmup-ratio", cli.number(float, 0, 1, high_open=True), "share of the updates with a linear warmup, in [0, 1)"),
    ("--weight-decay", cli.number(float, 0, 1), "AdamW weight decay (not on biases and LayerNorms), in [0, 1]"),
]


def add_run_options(p, table_10):
    p.add_argument("--task", type=evaluate_cli.task_arg(), required=True,
                   help=f"{', '.join(evaluate.TASKS)} (required)")
    p.add_argument("--data", type=cli.path_arg, required=True,
                   help="the task's folder: GLUE's train.tsv + dev.tsv, SQuAD's train/dev JSONs, RACE's train/ + dev/ "
                        "(required)")
    p.add_argument("--checkpoint", type=cli.path_arg, required=True,
                   help="a train.py output or a Hugging Face RoBERTa folder, with its tokenizer files (required)")
    p.add_argument("--out", type=cli.path_arg, required=True,
                   help="folder for checkpoint.pt, metrics.json, log.jsonl and the dev predictions (required)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out (default: refuse)")
    for name, kind, what in HYPERPARAMETERS:
        p.add_argument(name, type=kind, help=f"{what} (default: Table 10's, " + ", ".join(
            f"{family} {table_10[family][name[2:].replace('-', '_')]}" for family in table_10) + ")")
    p.add_argument("--seed", type=cli.number(int, 0, 2 ** 32 - 1), default=0,
                   help="seed of the head's initialisation and the data order (default: %(default)s)")


def parser():
    p = cli.ArgumentParser(prog="finetune.py", description=finetune.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, finetune.TABLE_10)
    p.add_argument("--max-seq-len", type=cli.number(int, 8),
                   help="tokens per input, at most the model's positions (default: min(512, positions))")
    p.add_argument("--doc-stride", type=cli.number(int, 1), default=128,
                   help="SQuAD: tokens between window starts, at most a window's context (default: %(default)s)")
    p.add_argument("--eval-batch-size", type=cli.number(int, 1), default=32,
                   help="inputs per forward on dev (default: %(default)s)")
    p.add_argument("--init-from", type=cli.path_arg,
                   help="start the encoder from this finetuned (MNLI) model's folder (default: --checkpoint's)")
    p.add_argument("--random-init", action="store_true",
                   help="the control: --checkpoint's config and tokenizer, every weight freshly initialised")
    p.add_argument("--sweep", action="store_true",
                   help="Table 10's grid of lr x batch size, median over seeds; a run folder per point in --out "
                        "(refused before any run where one holds results, unless --overwrite)")
    p.add_argument("--sweep-seeds", type=cli.number(int, 1), default=5, help="seeds per point (default: %(default)s)")
    p.add_argument("--max-train-examples", type=cli.number(int, 1),
                   help="use only the first N training examples (default: all)")
    p.add_argument("--max-eval-examples", type=cli.number(int, 1),
                   help="evaluate on the first N dev examples (default: all)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def check_data(task, folder):
    """A task's --data folder is there; else the error says where `python data.py download` puts it."""
    if not os.path.isdir(folder):
        glue = evaluate.GLUE.get(task)
        raise ValueError(f"{folder}: {'a file, not a' if os.path.exists(folder) else 'no such'} data folder"
                         + corpora.where_is(task, glue.folder if glue else None))


def work(args):
    check_data(args.task, args.data)
    for option, path in (("--checkpoint", args.checkpoint), ("--init-from", args.init_from)):
        if path and os.path.realpath(path) == os.path.realpath(args.out):
            raise ValueError(f"--out {args.out} is the {option} folder: the run would replace that model")
    if args.random_init and args.init_from:
        raise ValueError("--random-init and --init-from: a random-init control starts from no trained weights")
    out, task_dir = os.path.realpath(args.out), os.path.realpath(args.data)
    if out == task_dir or out.startswith(task_dir.rstrip(os.sep) + os.sep):
        raise ValueError(f"--out {args.out} is {'the' if out == task_dir else 'inside the'} --data folder: the run "
                         f"would write among the task's files; choose another --out")
    if args.sweep:  # no finished sweep in --out, nor a finished run in its run folders, unless --overwrite
        cli.check_out(args.out, args.overwrite, ("sweep.json",), "a finished sweep")
        for *_, out in finetune.sweep_runs(args):
            cli.check_out(out, args.overwrite, finetune.FINISHED, "a finished run of the sweep")
            task_files.check_empty(out, args.overwrite)
    else:
        cli.check_out(args.out, args.overwrite, finetune.FINISHED, "a finetuning run's results")
        task_files.check_empty(args.out, args.overwrite)
    with lock.writing(args.out, "finetune.py"):  # one writer: a second finetune.py into --out is refused
        if args.sweep:
            print(files.json_text(finetune.sweep(args), indent=2))
        else:
            summary = finetune.finetune(args)
            print(files.json_text({"best_epoch": summary["best_epoch"], "dev": summary["dev"],
                                   **majority_baseline(args.task, args.data, args.max_eval_examples)}, indent=2))


def majority_baseline(task, folder, max_eval=None):
    """A classification task's floor on the same dev sets: always predicting the training set's most frequent
    label, scored by the official metrics ({} for regression, SQuAD and RACE)."""
    if task not in evaluate.GLUE or evaluate.GLUE[task].labels is None:
        return {}
    train, devs = task_files.read_task("glue", evaluate.GLUE[task], folder)
    label = collections.Counter(lab for _, lab in train).most_common(1)[0][0]
    scores = {name: evaluate.glue_metrics(task, [label] * len(ex[:max_eval]), [lab for _, lab in ex[:max_eval]])
              for name, ex in devs.items()}
    return {"majority_class": {"label": label, **(scores["dev"] if list(scores) == ["dev"] else scores)}}


def main(argv=None):
    """`python finetune.py ...`: the options checked, then one run or the sweep, one-line errors."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    cli.run(lambda: work(args))
