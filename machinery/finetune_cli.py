"""The command line of finetune.py: its options (Table 10's hyperparameters, checked), the --sweep over
Table 10's grid, and one-line errors.

    python finetune.py --task rte --data glue/RTE --checkpoint roberta-base/ --out runs/rte
    python finetune.py --task mrpc ... --sweep

Nothing imports finetune.py: finetune.main passes itself in (`fine`: its finetune, TABLE_10, SWEEP).
"""
import argparse
import collections
import json
import os
import statistics

import evaluate
from machinery import cli, evaluate_cli, files, lock, task_files


# ---------------------------------------------------------------------------------------- the sweep
def sweep_runs(args, grid):
    """The runs of the sweep: (lr, batch size, seed, their own --out) for each point of the grid."""
    return [(lr, bs, seed, os.path.join(args.out, f"lr{lr}_bs{bs}_seed{seed}"))
            for lr in grid["lr"] for bs in grid["batch_size"] for seed in range(args.sweep_seeds)]


def check_sweep(args, fine):
    """Before any run: no finished sweep in --out, nor a finished run in one of its run folders (unless
    --overwrite)."""
    cli.check_out(args.out, args.overwrite, ("sweep.json",), "a finished sweep")
    for *_, out in sweep_runs(args, fine.SWEEP):
        cli.check_out(out, args.overwrite, fine.FINISHED, "a finished run of the sweep")
        task_files.check_empty(out, args.overwrite)


def sweep(args, fine):
    """Section 5.1: the grid of Table 10 (fine.SWEEP), each setting run with several seeds; the median per
    setting. Refuses, before any run, an --out that holds a finished sweep or run (unless --overwrite)."""
    check_sweep(args, fine)
    scores = {}
    for lr, bs, seed, out in sweep_runs(args, fine.SWEEP):
        summary = fine.finetune(argparse.Namespace(**{**vars(args), "lr": lr, "batch_size": bs, "seed": seed,
                                                      "out": out}))
        scores.setdefault((lr, bs), []).append(summary["dev"][next(iter(summary["dev"]))][summary["primary_metric"]])
        if len(scores[(lr, bs)]) == args.sweep_seeds:
            print(f"lr {lr} batch {bs}: median {statistics.median(scores[(lr, bs)]):.2f} over seeds {scores[(lr, bs)]}")
    results = [{"lr": lr, "batch_size": bs, "scores": s, "median": statistics.median(s)}
               for (lr, bs), s in scores.items()]
    best = max(results, key=lambda r: r["median"])
    files.write_atomic(os.path.join(args.out, "sweep.json"), json.dumps({"settings": results, "best": best}, indent=2))
    return best


# ---------------------------------------------------------------------------------------- the options
def below_one(parse):
    """An argparse type: `parse`'s number, and less than 1."""
    def check(text):
        value = parse(text)
        if value >= 1:
            raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
        return value
    return check


HYPERPARAMETERS = [  # Table 10's, whose defaults depend on the task's family
    ("--lr", cli.number(float, 0, 1, low_open=True), "peak learning rate, in (0, 1]"),
    ("--batch-size", cli.number(int, 1), "examples per update, at least 1"),
    ("--epochs", cli.number(int, 1), "passes over the training set, at least 1"),
    ("--warmup-ratio", below_one(cli.number(float, 0, 1)), "share of the updates with a linear warmup, in [0, 1)"),
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


def parser(fine):
    p = cli.ArgumentParser(prog="finetune.py", description=fine.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, fine.TABLE_10)
    p.add_argument("--max-seq-len", type=cli.number(int, 8),
                   help="tokens per input, at most the model's positions (default: min(512, positions))")
    p.add_argument("--doc-stride", type=cli.number(int, 1), default=128,
                   help="SQuAD: tokens between window starts, at most a window's context (default: %(default)s)")
    p.add_argument("--eval-batch-size", type=cli.number(int, 1), default=32,
                   help="inputs per forward on dev (default: %(default)s)")
    p.add_argument("--init-from", type=cli.path_arg,
                   help="start the encoder from this finetuned (MNLI) model's folder (default: --checkpoint's)")
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


def work(args, fine):
    for option, path in (("--checkpoint", args.checkpoint), ("--init-from", args.init_from)):
        if path and os.path.realpath(path) == os.path.realpath(args.out):
            raise ValueError(f"--out {args.out} is the {option} folder: the run would replace that model")
    out, task_dir = os.path.realpath(args.out), os.path.realpath(args.data)
    if out == task_dir or out.startswith(task_dir.rstrip(os.sep) + os.sep):
        raise ValueError(f"--out {args.out} is {'the' if out == task_dir else 'inside the'} --data folder: the run "
                         f"would write among the task's files; choose another --out")
    if args.sweep:
        check_sweep(args, fine)
    else:
        cli.check_out(args.out, args.overwrite, fine.FINISHED, "a finetuning run's results")
        task_files.check_empty(args.out, args.overwrite)
    with lock.writing(args.out, "finetune.py"):  # one writer: a second finetune.py into --out is refused
        if args.sweep:
            print(json.dumps(sweep(args, fine), indent=2))
        else:
            summary = fine.finetune(args)
            print(json.dumps({"best_epoch": summary["best_epoch"], "dev": summary["dev"],
                              **majority_baseline(args.task, args.data, args.max_eval_examples)}, indent=2))


def majority_baseline(task, folder, max_eval=None):
    """A classification task's floor on the same dev sets: always predicting the training set's most frequent
    label, scored by the official metrics ({} for regression, SQuAD and RACE)."""
    if task not in evaluate.GLUE or evaluate.GLUE[task].labels is None:
        return {}
    train, devs = task_files.read_task(task, folder)
    label = collections.Counter(lab for _, lab in train).most_common(1)[0][0]
    scores = {name: evaluate.glue_metrics(task, [label] * len(ex[:max_eval]), [lab for _, lab in ex[:max_eval]])
              for name, ex in devs.items()}
    return {"majority_class": {"label": label, **(scores["dev"] if list(scores) == ["dev"] else scores)}}


def main(argv, fine):
    """`python finetune.py ...`: `fine` is the finetune module (its finetune, TABLE_10, SWEEP, FINISHED)."""
    args = parser(fine).parse_args(argv)
    cli.run(lambda: work(args, fine))
