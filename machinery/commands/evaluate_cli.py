"""The command line of evaluate.py (its docstring lists the commands): perplexity (`python evaluate.py perplexity`
alone: the demo's run on its held-out data), fill-mask, and the official metrics of prediction files or of a
finetuned classifier's own predictions."""
import argparse
import math
import os
import sys

import torch

import data
import evaluate
import roberta
from machinery.basics import baselines, cli, files
from machinery.commands import corpora
from machinery.formats import checkpoints, task_files
from machinery.formats import prepared


def task_arg(among=evaluate.TASKS, kind="task"):
    """An argparse type: a task name among `among` (which are `kind` tasks), else an error that lists them."""
    def parse(task):
        if task not in among:
            what = f"{task!r} is not a {kind}" if task in evaluate.TASKS else f"unknown task {task!r}"
            raise argparse.ArgumentTypeError(f"{what}: choose one of {', '.join(among)}")
        return task
    return parse


MIN_SEQ_LEN = 8  # as train.py's --seq-len: data.py's blocks need room for a few tokens besides <s> and </s>


def perplexity(path, data_dir, split="valid", seq_len=None, batch_size=8):
    """Masked-LM loss and perplexity of a pretrained checkpoint on a prepared split, with the masks of train.py's
    held-out evaluation, at the length it trained at (seq_len None) or `seq_len`; beside them, on the same masks,
    the training tokens' unigram distribution and always guessing the most frequent token."""
    model, tok = evaluate.load_checkpoint(path, need_trained_head=True, verbose=False)
    trained = checkpoints.train_settings(path)
    positions = model.cfg.max_positions
    seq_len = seq_len or min(trained.get("seq_len") or positions, positions)
    if not MIN_SEQ_LEN <= seq_len <= positions:
        raise ValueError(f"--seq-len {seq_len}: must be in [{MIN_SEQ_LEN}, {positions}] (the model's positions)")
    masking = data.Masking(**trained["masking"]) if isinstance(trained.get("masking"), dict) else data.Masking()
    tokens, ends, meta = prepared.load_split(data_dir, split)
    prepared.check_tokenizer(meta, tok, data_dir, path)
    if tokens.size == 0:
        raise ValueError(f"{data_dir}: the {split} split is empty")
    batches = data.heldout_batches(tokens, ends, tok, seq_len, batch_size, masking)
    out = data.evaluate_mlm(model, batches, detailed=True)
    total, count = out["loss_sum"], out["targets"]
    if count == 0:
        raise ValueError(f"{data_dir}: the {split} split gave no masked tokens to predict at --seq-len {seq_len}")
    if not math.isfinite(total):
        raise ValueError(f"{path}: its loss on {data_dir} is not finite: its outputs overflow (NaN or infinity)")
    se = math.sqrt(max(out["loss_sq_sum"] / count - (total / count) ** 2, 0) / count)  # of the mean, over targets
    base = baselines.unigram_baselines(prepared.load_split(data_dir, "train")[0], batches, tok)
    return {"loss": total / count, "loss_se": se, "ppl": math.exp(total / count) if total < 709 * count else "inf",
            "accuracy": out["correct"] / count, "targets": count, "split": split, "seq_len": seq_len,
            "mask_rate": masking.rate, "unigram_loss": base["unigram_loss"],
            "unigram_ppl": math.exp(min(base["unigram_loss"], 709)), "most_frequent_token":
            tok.decode([base["most_frequent"]]), "most_frequent_accuracy": base["most_frequent_accuracy"]}


def perplexity_command(args):
    checkpoint, data_dir = perplexity_folders(args.checkpoint, args.data)
    result = perplexity(checkpoint, data_dir, args.split, args.seq_len, args.batch_size)
    if result["mask_rate"] != data.Masking.rate:  # the demo trains at 40%: its report scores 15% masks, a lower figure
        print(f"{checkpoint}: {result['mask_rate']:.0%} of the held-out tokens masked, the rate it trained at (BERT's "
              f"15% gives fewer targets, each with more context: a lower perplexity, as the demo's report shows)",
              file=sys.stderr)
    print(files.json_text(result, indent=2))


def perplexity_folders(checkpoint, data_dir):
    """--checkpoint (default: the demo's run folder) and --data (default: the data it trained on, as its
    checkpoint.pt records): `python evaluate.py perplexity` alone scores the demo."""
    if checkpoint is None and not os.path.isfile(os.path.join(corpora.DEMO_OUT, "checkpoint.pt")):
        raise ValueError(f"no --checkpoint given and no demo run in {corpora.DEMO_OUT}: run `python train.py` (the "
                         f"demo) first, or pass --checkpoint DIR --data DIR")
    checkpoint = checkpoint or corpora.DEMO_OUT
    if data_dir is None:
        data_dir = checkpoints.train_settings(checkpoint).get("data")
        if not data_dir or not os.path.isfile(os.path.join(data_dir, "meta.json")):
            raise ValueError(f"no --data given, and {checkpoint} names no prepared data folder that is here "
                             f"({data_dir or 'none recorded'}): pass --data DIR (a folder written by data.py)")
    return checkpoint, data_dir


def fill_mask_command(args):
    model, tok = evaluate.load_checkpoint(args.checkpoint, need_trained_head=True, verbose=False)
    top = evaluate.fill_mask(model, tok, args.text, args.top_k)
    if not all(math.isfinite(prob) for _, prob in top):
        raise ValueError(f"{args.checkpoint}: its probabilities for <mask> are not finite: its outputs overflow "
                         f"(NaN or infinity)")
    for token, prob in top:
        print(f"{prob:.4f}\t{token!r}")


def squad_command(args):
    examples = task_files.read_squad(args.data)
    predictions = files.read_json(args.predictions, "answers")
    na = task_files.check_na_probs(files.read_json(args.na_prob_file, "no-answer probabilities"),
                                   args.na_prob_file) if args.na_prob_file else None
    task_files.check_predictions([e["id"] for e in examples], predictions, args.predictions,
                                 lambda a: isinstance(a, str), 'a string ("" for no answer)',
                                 lambda n: f": the official v2.0 script's scores, over the {n} predicted only")
    metrics = evaluate.squad_metrics(examples, predictions, na, args.na_prob_thresh, tuned_apart=True)
    print(files.json_text(metrics, indent=2))  # exact, f1: these answers' scores; the best thresholds set apart


def glue_command(args):
    if args.checkpoint:
        scores = {name: metrics for name, (_, metrics) in checkpoint_predictions(args).items()}
        print(files.json_text(scores.popitem()[1] if len(scores) == 1 else scores, indent=2))
        return
    if args.max_seq_len or args.batch_size:
        raise ValueError("--max-seq-len and --batch-size say how --checkpoint predicts: not with --predictions")
    gold = [label for _, label in task_files.read_glue(evaluate.GLUE[args.task], args.data)]
    pred = task_files.read_glue_predictions(args.predictions, evaluate.GLUE[args.task], len(gold))
    print(files.json_text(evaluate.glue_metrics(args.task, pred, gold), indent=2))


def checkpoint_predictions(args):
    """Section 5.1's dev scores without training: {dev set name: (predictions, official metrics)} of a finetuned
    classifier (--checkpoint) on --data, a task's folder (its dev files: MNLI's matched and mismatched) or one
    file, encoded and predicted as finetune.py does, its outputs read as the task's labels by output_labels."""
    if os.path.isdir(args.data):
        dev_sets = task_files.read_glue_dev(evaluate.GLUE[args.task], args.data)
    else:
        dev_sets = {os.path.basename(args.data).rsplit(".", 1)[0]: task_files.read_glue(evaluate.GLUE[args.task], args.data)}
    model, tok = evaluate.load_checkpoint(args.checkpoint, roberta.RobertaForSequenceClassification, need_trained_head=True,
                                  verbose=False)
    labels = output_labels(args.task, args.checkpoint, model.num_labels)
    max_len = cli.max_seq_len(args.max_seq_len, model.cfg.max_positions)
    if labels:
        print(f"{args.checkpoint}: outputs 0-{len(labels) - 1} read as {', '.join(labels)}", file=sys.stderr)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    out = {}
    for name, rows in dev_sets.items():
        inputs = evaluate.glue_features(args.task, tok, rows, max_len)
        out[name] = evaluate.glue_predict(args.task, model, tok, rows, inputs, args.batch_size or 32, device, labels)
    return out


def output_labels(task, checkpoint, outputs):
    """The task's label, as its GLUE files write it, of each of a classifier's outputs: the checkpoint's
    id2label (checkpoints.id2label) matched to the task's labels whatever their case (roberta-large-mnli's
    CONTRADICTION, NEUTRAL, ENTAILMENT), or the task's own order where it names none. None: a regressor."""
    labels = evaluate.GLUE[task].labels
    if outputs != (len(labels) if labels else 1):
        raise ValueError(f"{checkpoint}: a classifier with {outputs} output{'s' * (outputs != 1)}, but {task} has "
                         + (f"{len(labels)} labels" if labels else "a score to regress (1 output)"))
    names = checkpoints.id2label(checkpoint) if labels else None
    if names is None:
        return labels
    by_name = {label.lower(): label for label in labels}
    mapped = tuple(by_name.get(str(name).lower()) for name in names)
    if None in mapped or sorted(mapped) != sorted(labels):
        raise ValueError(f"{checkpoint}: its labels ({', '.join(map(str, names))}, by id2label) are not {task}'s "
                         f"({', '.join(labels)}), whatever the case")
    return mapped


def race_command(args):
    questions = task_files.read_race(args.data)
    predictions = files.read_json(args.predictions, "answers")
    task_files.check_predictions([q["qid"] for q in questions], predictions, args.predictions,
                                 lambda a: a in ("A", "B", "C", "D"), "one of A, B, C, D",
                                 lambda n: "; they count as wrong")
    print(files.json_text(evaluate.race_metrics(questions, predictions), indent=2))


def add_pretraining_commands(sub):
    s = sub.add_parser("perplexity", help="masked-LM perplexity of a checkpoint on prepared data")
    s.set_defaults(run=perplexity_command)
    s.add_argument("--checkpoint", type=cli.path_arg,
                   help="a train.py output folder (default: out/demo, the demo's run)")
    s.add_argument("--data", type=cli.path_arg,
                   help="a folder written by data.py (default: the one the checkpoint trained on; the demo's is "
                        "cache/demo/data)")
    s.add_argument("--split", default="valid", choices=["train", "valid"],
                   help="the split of --data to evaluate (default: %(default)s)")
    s.add_argument("--seq-len", type=cli.number(int, MIN_SEQ_LEN),
                   help=f"tokens per sequence, at least {MIN_SEQ_LEN} and at most the model's positions (default: the "
                        f"length the checkpoint trained at; a Hugging Face model's positions)")
    s.add_argument("--batch-size", type=cli.number(int, 1), default=8,
                   help="sequences per forward (default: %(default)s)")
    s = sub.add_parser("fill-mask", help="the most likely tokens for <mask>")
    s.set_defaults(run=fill_mask_command)
    s.add_argument("--checkpoint", type=cli.path_arg, required=True,
                   help="a train.py output or a Hugging Face RoBERTa folder with its LM head (required)")
    s.add_argument("--top-k", type=cli.number(int, 1), default=5,
                   help="how many tokens to list, at most the vocabulary (default: %(default)s)")
    s.add_argument("text", help="a text with exactly one <mask>")


def add_task_commands(sub):
    s = sub.add_parser("squad", help="official SQuAD v2.0 metrics (v1.1 files too)")
    s.set_defaults(run=squad_command)
    s.add_argument("--data", type=cli.path_arg, required=True, help="dev-v1.1.json or dev-v2.0.json (required)")
    s.add_argument("--predictions", type=cli.path_arg, required=True,
                   help="JSON {question id: answer text}, \"\" for no answer (required)")
    s.add_argument("--na-prob-file", type=cli.path_arg,
                   help="JSON {question id: no-answer probability}: adds the best thresholds (default: none)")
    s.add_argument("--na-prob-thresh", type=cli.number(float, 0, 1), default=1.0,
                   help="answer \"\" where the no-answer probability is above this, in [0, 1] (default: %(default)s)")
    s = sub.add_parser("glue", help="GLUE metrics of a predictions TSV, or of a finetuned classifier")
    s.set_defaults(run=glue_command)
    s.add_argument("--task", type=task_arg(list(evaluate.GLUE), "GLUE task"), required=True,
                   help=f"{', '.join(evaluate.GLUE)} (required)")
    s.add_argument("--data", type=cli.path_arg, required=True,
                   help="the task's dev.tsv; with --checkpoint also the task's folder, for all its dev files (MNLI: "
                        "matched and mismatched) (required)")
    given = s.add_mutually_exclusive_group(required=True)
    given.add_argument("--predictions", type=cli.path_arg,
                       help="the GLUE submission TSV: index<TAB>prediction, one row per dev example")
    given.add_argument("--checkpoint", type=cli.path_arg,
                       help="a finetuned classifier to predict with (no training): a finetune.py output or a Hugging "
                            "Face RobertaForSequenceClassification folder; its id2label names its outputs")
    s.add_argument("--max-seq-len", type=cli.number(int, 8),
                   help="with --checkpoint: tokens per input, at most the model's positions (default: min(512, "
                        "positions))")
    s.add_argument("--batch-size", type=cli.number(int, 1), help="with --checkpoint: inputs per forward (default: 32)")
    s = sub.add_parser("race", help="RACE accuracy (all, middle, high)")
    s.set_defaults(run=race_command)
    s.add_argument("--data", type=cli.path_arg, required=True, help="a RACE split folder, dev/ or test/ (required)")
    s.add_argument("--predictions", type=cli.path_arg, required=True,
                   help="JSON {\"<passage id>-<question index>\": \"A\"-\"D\"} (required)")


def parser():
    p = cli.ArgumentParser(prog="evaluate.py", description=evaluate.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add_pretraining_commands(sub)
    add_task_commands(sub)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    cli.run(lambda: args.run(args))
