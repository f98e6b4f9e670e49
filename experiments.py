"""Section 4 of the paper as experiments: one command reruns a finding, beside the paper's numbers.

    python experiments.py list                  # the experiments, their questions, time per scale
    python experiments.py summary               # every verdict of experiments/*/results.json, one table
    python experiments.py masking               # Table 1: static vs dynamic masking (Section 4.1)
    python experiments.py formats               # Table 2: the four input formats, with and without NSP
    python experiments.py batch-size            # Table 3: batch sizes at equal tokens, lr scaled as the paper
    python experiments.py text-encoding         # Section 4.4: byte-level vs character-level BPE
    python experiments.py data-and-steps        # Table 4 / Section 5: more data, more steps
    python experiments.py mask-rate             # beyond the paper: 15% vs 30% vs 40% of tokens masked
      [--scale classroom|gpu] [--quick] [--seeds N] [--glue DIR] [--mlm-only] [--out experiments/] [--overwrite]
      [--arms A,B] [--jobs N] [--steps-factor F] [--train-args "..."] [--corpus FILE] [--vocab-size N]

Each run gets max(1, the CPUs this process may use // --jobs) threads, and prints its step, loss and time
left every 30 s. On a 2-core machine `--jobs 2` (two runs side by side, one thread each) is the fastest way
through; on a shared machine, `OMP_NUM_THREADS=1 python experiments.py NAME --jobs 1`.

Each experiment is a declaration in EXPERIMENTS below: its question, its arms (train.py options), the
paper's table, and the paper's claims to check. The runner types the commands a user would type
(bpe.py, data.py, train.py, finetune.py), prints each one so any run can be repeated by hand, runs every
arm with several seeds, and evaluates every checkpoint on the same held-out documents, 15% of their tokens
masked once with a fixed seed (data.heldout_batches), whatever the run trained on: the same masked tokens
for every arm, except where an arm's inputs are built its own way (formats: each arm's own input format;
text-encoding: each arm's own tokenizer, scored in bits per byte). Finished runs are skipped when their
settings and code match (each records a hash of the source files; a run of other code is trained again),
interrupted ones resumed (train.py --resume); --overwrite trains finished ones again.

The paper's metric where it used one: masking, formats, batch-size and text-encoding finetune every
checkpoint on SST-2 (finetune.py, the scale's recipe) and test its dev accuracy beside the MLM figure.
SST-2 comes from --glue DIR, else from `python data.py download glue-sst-2`; without it (or with
--mlm-only) they run the MLM part and say how to get it. --glue adds SST-2 to the other experiments too.

Outputs, in experiments/<name>/: results.json (every number and command), report.md (the paper's table
beside ours, the verdicts), loss.png when matplotlib is installed, and one folder per run
(<arm>/seed<k>/: train.py's checkpoint and log.jsonl, run.json with the command and the numbers).

A verdict tests a claim ("`better` beats `worse`") on each of its metrics, the held-out MLM figure and
SST-2 accuracy, over the seeds' values (experiment_report.verdict, machinery/stats.py):
    the paired t-test when both arms finished the same seeds (run k of every arm starts from seed k), else
    Welch's t-test; two-sided, each metric at 5% / the number of metrics (Bonferroni);
    the report prints each difference with its 95% confidence interval and p.
    "reproduced"                    significant, in the paper's order
    "not reproduced at this scale"  significant, in the opposite order
    "not significant"               neither: the interval holds 0
    "mixed: the metrics disagree"   one metric each way
3 seeds by default: the robust findings (data-and-steps, mask-rate, batch-size) are significant with 3;
a finding that needs more (--seeds 5) says so through its interval.
"""
import argparse
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

import data
from machinery import cli, corpora, files, lock

if __name__ == "__main__":  # run as a script: the machinery's `import experiments` is this module, not a copy
    sys.modules["experiments"] = sys.modules[__name__]
from machinery import experiment_data, experiment_report, experiment_runs  # noqa: E402 data, report, runs


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
    tokenizer: str = ""               # "" = the scale's byte-level BPE; "characters": a character-level BPE
    vocab: float = 1.0                # its vocabulary, as a share of the scale's


@dataclass
class Claim:
    """One finding to check: `better` beats `worse` on the experiment's metric (and SST-2 when finetuned)."""
    better: str
    worse: str
    says: str                         # the finding, in the paper's words or close to them
    metric: str = ""                  # "" = the experiment's; another held-out figure (report.METRICS) alone


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
    metric: str = "loss"                         # the held-out figure the verdicts test (report.METRICS)
    downstream: bool = False                     # every checkpoint finetuned on SST-2 too (when its data is here)


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
        base={"max_steps": Times(1.25)}, data="slice", downstream=True,
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
        base={"max_steps": Times(0.75)}, downstream=True,
        note="Each arm's held-out MLM loss is measured on held-out inputs built in its own format (pairs with "
             "their separators for the pair formats, single-sentence pairs for SENTENCE-PAIR), 15% of their "
             "tokens masked with the same fixed seed: each arm is scored at the task it trained on, so the "
             "losses also differ by how much context each format gives. SST-2 accuracy after finetuning is "
             "the figure that favours no format."),
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
        base={"batch_size": Times(0.5), "max_steps": Times(2), "lr": Times(0.5)}, downstream=True,
        note="The paper's ratios: batch x8 and x32 with steps /8 and /32 and lr x7 and x10. Our base batch is "
             "half the scale's, so that the largest arm still makes a few dozen updates. The paper's largest "
             "batches still make 125K and 31K updates; at the classroom scale they make 200 and 50, and the "
             "number of updates may be what limits them (does --steps-factor 4 close the gap?)."),
    Experiment(
        "text-encoding", "Byte-level BPE (RoBERTa) or character-level BPE (BERT): what does each cost on English, "
                         "on other languages and on code?",
        arms=[Arm("byte-level", {}), Arm("char-level", tokenizer="characters"),
              Arm("char-level-0.6x", tokenizer="characters", vocab=0.6)],
        claims=[Claim("char-level-0.6x", "byte-level", "byte-level BPE (50K) is slightly worse than BERT's "
                                                       "character-level BPE (30K) on some end tasks (Section 4.4)"),
                Claim("char-level", "byte-level", "not in the paper: character units beat bytes at an equal "
                                                  "vocabulary size (is it the unit or the size?)"),
                Claim("byte-level", "char-level-0.6x", "a universal encoding: byte-level BPE spells any text, so "
                                                       "it models non-English text better", metric="bpb_non_english"),
                Claim("byte-level", "char-level-0.6x", "... and code", metric="bpb_code")],
        paper=PaperTable(
            "Section 4.4 (no table)", "\"Early experiments revealed only slight differences between these encodings, "
            "with the Radford et al. (2019) BPE achieving slightly worse end-task performance on some tasks. "
            "Nevertheless, we believe the advantages of a universal encoding scheme outweighs the minor "
            "degredation in performance.\"", "Encoding", [("vocabulary", "setting")],
            [("byte-level BPE (RoBERTa)", "byte-level", ["50K"]), ("character-level BPE (BERT)", "char-level-0.6x",
                                                                   ["30K"])]),
        metric="bits_per_byte", downstream=True,
        note="The vocabularies: the scale's size for byte-level and char-level, 0.6 of it for char-level-0.6x (the "
             "paper's 30K:50K). The character-level alphabet is the training text's characters; any other "
             "character is <unk>, and an <unk> can be masked and predicted. Bits per byte of the masked targets, "
             "with an <unk> costing its loss plus 8 bits per byte of the character it hides, on the held-out "
             "English documents (masked once), and on non-English text and code (machinery/heldout_text/, "
             "masked 8 times); the second table gives the <unk> rates."),
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
    finetune_s: float = 0        # per run, when finetuned on SST-2 (for the time estimates of `list`)


SCALES = {
    "classroom": Scale("classroom", dict(config="tiny", seq_len=128, batch_size=16, lr=1e-3, max_steps=800),
                       vocab_size=4096, valid_fraction=0.05, slice_every=10, corpus="builtin", seeds=3,
                       eval_sequences=100_000, tokens_per_s=25_000, overhead_s=6, measured=True,
                       finetune=dict(epochs=1, max_train_examples=8000, batch_size=32, lr=1e-3, max_seq_len=64),
                       finetune_s=40),
    "gpu": Scale("gpu", dict(config="base", seq_len=128, batch_size=256, micro_batch_size=128, lr=5e-4,
                             max_steps=2000, amp="bf16", device="cuda"),
                 vocab_size=32768, valid_fraction=0.005, slice_every=10, corpus="wikitext-103", seeds=3,
                 eval_sequences=2000, tokens_per_s=300_000, overhead_s=60, measured=False, workers=8, finetune_s=120,
                 finetune=dict(epochs=2, max_train_examples=20000, batch_size=32, lr=3e-5, max_seq_len=128)),
    "quick": Scale("quick", dict(config="tiny", seq_len=32, batch_size=4, lr=1e-3, max_steps=16, device="cpu"),
                   vocab_size=512, valid_fraction=0.1, slice_every=10, corpus="builtin-quick", seeds=2,
                   eval_sequences=24, tokens_per_s=3000, overhead_s=4, measured=True, workers=1, threads=1,
                   finetune=dict(epochs=1, max_train_examples=64, max_eval_examples=64, batch_size=16, lr=1e-3,
                                 max_seq_len=64)),
}
# (task, folder, required with --glue). SST-2 only: RTE's 277 dev examples give one run's accuracy a standard
# error of 3 points, at chance for a classroom model, more than any gap between arms at this scale.
GLUE_TASKS = [("sst2", "SST-2", True)]
GLUE_DOWNLOAD = "glue-sst-2"     # `python data.py download glue-sst-2` writes SST-2/ into the cache's folder of that name


# ---------------------------------------------------------------------------------------- one experiment
DEFAULT_OUT = "experiments"


def run_experiment(exp, args):
    """One experiment: its data prepared, every chosen run trained and evaluated (--jobs side by side), the
    claims judged, and results.json, report.md and loss.png written in OUT/<name>/."""
    scale = SCALES["quick" if args.quick else args.scale]
    if scale.train.get("device") == "cuda" and not args.device and not torch.cuda.is_available():
        raise ValueError("--scale gpu needs a CUDA GPU (none is available here); use --scale classroom, or "
                         "--device cpu to run the gpu scale's settings slowly")
    t0 = time.time()
    chosen = experiment_runs.chosen_arms(exp, args.arms)
    args.code = experiment_runs.code_hash()
    experiment_runs.say(f"[{exp.name}] {exp.question}\n[{exp.name}] preparing the data ({scale.name} scale)")
    args.finetune_on = downstream_folder(exp, args)  # SST-2's folder, or None: the MLM part only
    prepared = experiment_data.prepare(scale, args, any((a.data or exp.data) == "slice" for a in chosen), chosen,
                                       exp.arms)
    planned = experiment_runs.plan(exp, scale, args, prepared)
    runs = [] if args.report_only else [r for r in planned if r.arm in chosen]  # --report-only: runs on disk only
    experiment_runs.check_conflicts(runs, args.overwrite)
    with ThreadPoolExecutor(args.jobs) as pool:  # --jobs runs side by side (each train.py is its own process)
        records = list(pool.map(lambda i: experiment_runs.do_run(runs[i], i + 1, len(runs), exp, scale, args),
                                 range(len(runs))))
    skipped_now = sum(bool(r.pop("skipped", False)) for r in records)
    trained_now = sum(r.get("status") == "finished" for r in records) - skipped_now
    failed_now = sum(r.get("status") == "failed" for r in records)
    records, runs = with_earlier_runs(exp, planned, [] if args.report_only else chosen, records, runs)
    results = collect(exp, scale, args, prepared, planned, records, failed_now, t0)
    report, png = write_outputs(exp, scale, args, results, runs)
    experiment_runs.say(f"[{exp.name}] {trained_now} run(s) trained, {skipped_now} skipped (finished before), "
                        f"{failed_now} failed in {experiment_runs.duration(results['wall_seconds'])}; verdict: "
                        f"{results['verdict']}; report: {report}" + (f", {png}" if png else ""))
    return results


def downstream_folder(exp, args):
    """The GLUE folder whose SST-2 finetunes every checkpoint: --glue, else (for an experiment scored
    downstream) the download cache's; None when it is absent, or with --mlm-only: the MLM part only."""
    if args.mlm_only or not (args.glue or exp.downstream):
        return None
    folder = args.glue or os.path.join(corpora.DEFAULT_CACHE, GLUE_DOWNLOAD)
    if os.path.isfile(os.path.join(folder, "SST-2", "train.tsv")):
        return folder
    experiment_runs.say(f"[{exp.name}] SST-2 is not here, so the downstream score is left out: `python data.py "
                        f"download {GLUE_DOWNLOAD}` fetches it (or pass --glue DIR); running the MLM part only")
    return None


def with_earlier_runs(exp, planned, chosen, records, runs):
    """This invocation's runs and records, with those of the arms not run now that finished or failed before,
    in the experiment's order (arm, then seed)."""
    others = [(r, experiment_runs.earlier_record(r)) for r in planned if r.arm not in chosen]
    records = records + [record for _, record in others if record]
    runs = runs + [r for r, record in others if record]
    order = {a.name: i for i, a in enumerate(exp.arms)}
    records.sort(key=lambda r: (order[r["arm"]], r["seed"]))
    runs.sort(key=lambda r: (order[r.arm.name], r.seed))
    return records, runs


def collect(exp, scale, args, prepared, planned, records, failed_now, t0):
    """results.json: every number and command of the experiment, its arms' summaries and the verdicts."""
    ran = {r["arm"] for r in records}  # arms with a run (now or before): the report shows only these
    arms = [experiment_report.arm_summary(records, arm) for arm in exp.arms if arm.name in ran]
    verdicts = experiment_report.judge(exp, arms)
    if scale.name == "quick":
        verdicts = without_verdicts(verdicts)
    finished = [r for r in records if r.get("status") == "finished"]
    return {"experiment": exp.name, "question": exp.question, "scale": scale.name,
            "seeds": args.seeds or scale.seeds, "train_args": args.train_args,
            "paper": None if exp.paper is None else {"source": exp.paper.source, "caption": exp.paper.caption,
                                                     "columns": exp.paper.columns, "rows": exp.paper.rows},
            "preparation": prepared.commands,
            "data": {k: data.read_meta(v)["train"] for k, v in prepared.folders.items()
                     if os.path.isfile(os.path.join(v, "meta.json"))},
            "heldout_targets": shared_targets(exp, finished),
            "invocation": invocation(exp, args), "variant": is_variant(args),
            "codes": sorted({r.get("code") or "not recorded" for r in records}), "code": args.code,
            "baselines": experiment_data.heldout_baselines(prepared, planned[0].options["seq_len"]),
            "not_run": [a.name for a in exp.arms if a.name not in ran],
            "glue": args.finetune_on, "sst2_dev_examples": dev_examples(args.finetune_on, scale), "runs": records, "arms": arms, "verdicts": verdicts,
            "verdict": experiment_report.overall(verdicts), "failed_now": failed_now,
            "wall_seconds": earlier_wall(exp, args) if args.report_only else round(time.time() - t0, 1),
            "run_seconds": round(sum(r.get("seconds", 0) for r in records), 1)}


QUICK_VERDICT = "no verdict: --quick runs only check that the command works, too small to answer the question"


def without_verdicts(verdicts):
    """--quick: the tests' numbers stay, their words go (a few updates of a tiny model answer nothing)."""
    for v in verdicts:
        for t in v.get("tests", []):
            if not t["verdict"].startswith("no verdict"):
                t["verdict"] = "no verdict (--quick)"
        if not v["verdict"].startswith("no verdict"):
            v["verdict"] = QUICK_VERDICT
    return verdicts


def shared_targets(exp, finished):
    """The masked held-out tokens of the runs scored on the shared masks (FULL-SENTENCES blocks of the
    scale's tokenizer); else those of the first run."""
    own = {a.name for a in exp.arms if a.tokenizer or a.options.get("format", "full-sentences") != "full-sentences"}
    shared = [r for r in finished if r["arm"] not in own] or finished
    return shared[0]["heldout"]["targets"] if shared else 0


def earlier_wall(exp, args):
    """--report-only: the wall time of the invocation that trained the runs (its results.json), kept."""
    earlier = experiment_runs.read_json(os.path.join(args.out, exp.name, "results.json")) or {}
    return earlier.get("wall_seconds", 0.0)


def dev_examples(glue, scale):
    """How many SST-2 dev sentences score each finetuned run (the scale's cap, or the whole dev file)."""
    if not glue:
        return None
    with open(os.path.join(glue, "SST-2", "dev.tsv"), encoding="utf-8") as f:
        rows = sum(1 for line in f if line.strip()) - 1  # the header
    return min(rows, scale.finetune.get("max_eval_examples", rows))


def write_outputs(exp, scale, args, results, runs):
    """results.json, report.md and loss.png (when matplotlib is installed) in OUT/<name>/; (report, png)."""
    folder = os.path.join(args.out, exp.name)
    os.makedirs(folder, exist_ok=True)
    files.write_atomic(os.path.join(folder, "results.json"), json.dumps(results, indent=2))
    base = experiment_runs.base_options(exp, scale, args.steps_factor)
    files.write_atomic(os.path.join(folder, "report.md"), experiment_report.report(exp, results, runs, base))
    png = experiment_report.plot(exp, results, os.path.join(folder, "loss.png"))
    return os.path.join(folder, "report.md"), png


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
    flags = [f for f, on in (("--quick", args.quick), ("--mlm-only", args.mlm_only), ("--overwrite", args.overwrite),
                             ("--report-only", args.report_only)) if on]
    return shlex.join(argv + flags)


# ---------------------------------------------------------------------------------------- command line
def estimate_minutes(exp, scale):
    base = experiment_runs.base_options(exp, scale)
    seconds = 0.0
    for arm in exp.arms:
        o = experiment_runs.apply(base, arm.options)
        seconds += scale.seeds * (o["max_steps"] * o["batch_size"] * o["seq_len"] / scale.tokens_per_s
                                  + scale.overhead_s + (scale.finetune_s if exp.downstream else 0))
    return seconds / 60


def list_experiments():
    for exp in EXPERIMENTS:
        source = exp.paper.source if exp.paper else "beyond the paper"
        times = ", ".join(f"{name} ~{estimate_minutes(exp, s):.0f} min" + ("" if s.measured else " (assumed speed)")
                          for name, s in SCALES.items() if name != "quick")
        print(f"{exp.name:<15} {source}: {exp.question}\n{'':15} {len(exp.arms)} arms: "
              f"{', '.join(a.name for a in exp.arms)}; {SCALES['classroom'].seeds} seeds each"
              + ("; + SST-2 finetuning" if exp.downstream else "") + f"; {times}; --quick: seconds")


def experiment_name(text):
    names = ["list", "all", "summary"] + [e.name for e in EXPERIMENTS]
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
    p.add_argument("experiment", type=experiment_name, help="list, all, summary, or one of: " +
                   ", ".join(e.name for e in EXPERIMENTS))
    p.add_argument("--scale", choices=["classroom", "gpu"], default="classroom",
                   help="classroom: <= 20 min per experiment on a 2-core CPU; gpu: ~1 hour on one GPU")
    p.add_argument("--quick", action="store_true", help="seconds per experiment, for the tests (tiny everything)")
    p.add_argument("--seeds", type=cli.number(int, 1), help="seeds per arm (default: 3; --quick: 2)")
    p.add_argument("--glue", type=glue_folder, help="a GLUE folder holding SST-2/: every checkpoint is finetuned "
                   "and its SST-2 dev accuracy tested (default for masking, formats, batch-size, text-encoding: "
                   f"the download cache's, from `python data.py download {GLUE_DOWNLOAD}`)")
    p.add_argument("--mlm-only", action="store_true", help="no finetuning: the held-out MLM figures only")
    p.add_argument("--report-only", action="store_true", help="train nothing: the report and verdicts again, from "
                   "the runs on disk that finished (whatever code they ran with: the report names it)")
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
    if args.experiment == "summary":  # every verdict of OUT/*/results.json, as one markdown table
        return print(experiment_report.summary([e.name for e in EXPERIMENTS], args.out))
    chosen = EXPERIMENTS if args.experiment == "all" else [e for e in EXPERIMENTS if e.name == args.experiment]
    failed = cli.run(lambda: run_all(chosen, args))  # bad input: one line, `error: ...`
    if failed:
        sys.exit(f"error: {failed} run(s) failed; the report marks them and names the command to rerun")


def run_all(chosen, args):
    """The chosen experiments one after the other, in one writer's lock of --out; the runs that failed now."""
    try:
        failed = 0
        experiment_runs.parse_train_args(args.train_args)  # its quoting, checked before any work
        with lock.writing(args.out, "experiments.py"):  # one writer: a second experiments.py is refused
            for exp in chosen:
                results = run_experiment(exp, args)
                failed += results["failed_now"]
    except KeyboardInterrupt:
        sys.exit("interrupted: rerun the same command to resume")
    return failed


if __name__ == "__main__":
    main()
