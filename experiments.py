"""Section 4 of the paper as experiments: one command reruns a finding, beside the paper's numbers.

    python experiments.py list                  # the experiments, their questions, time per scale
    python experiments.py summary               # every verdict of experiments/*/results.json, one table
    python experiments.py masking               # Table 1: static vs dynamic masking (Section 4.1)
    python experiments.py formats               # Table 2: the four input formats, with and without NSP
    python experiments.py batch-size            # Table 3: batch sizes at equal sequences, lr tuned for each
    python experiments.py batch-size-grid       # ... the lr grid behind it, on the tuning split
    python experiments.py text-encoding         # Section 4.4: byte-level vs character-level BPE
    python experiments.py data-and-steps        # Table 4 / Section 5: more data, more steps
    python experiments.py mask-rate             # beyond the paper: 15% vs 30% vs 40% of tokens masked

Each experiment is a declaration in EXPERIMENTS below: its question, its arms (train.py options), the paper's
table and claims. The runner (machinery/lab) prints and runs the commands a user would type (bpe.py, data.py,
train.py, finetune.py), run k of every arm with --seed k, into OUT/_runs/ (a run two experiments declare trains
once; finished runs are skipped, interrupted ones resumed, those of other code and data made again), and writes
OUT/<name>/results.json, report.md and loss.png. Each run gets the CPUs // --jobs threads (on 2 cores `--jobs 2`
is fastest). SST-2: --glue DIR, else `python data.py download glue-sst-2` (by default at the gpu scale). The
method, the design, every verdict word, the report's legend: docs/experiments/. Options: --help.
"""
from dataclasses import dataclass, field


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
    finetune: str = ""                # finetune.py options of its own ("--random-init": the control below)


# The downstream control: the same SST-2 finetuning from random weights (its one update of pretraining is never
# used), run only when SST-2 is here; SST-2 counts in a verdict only where the pretrained arms beat it.
CONTROL = Arm("random-init", {"max_steps": 1}, finetune="--random-init")

@dataclass
class Claim:
    """One finding to check: `better` beats `worse` on the experiment's metric (and SST-2 when finetuned)."""
    better: str
    worse: str
    says: str                         # the finding, in the paper's words or close to them
    metric: str = ""                  # "" = the experiment's; another held-out figure (reports.METRICS) alone
    source: str = ""                  # whose claim, when not the paper's: "consistent with SOURCE", not "reproduced"


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
    data: str = "full"                           # "full", "slice" (a share of the training documents), "tune"
    heldout: str = "full"                        # the held-out split that scores it: "full", or "tune" (for tuning)
    seeds: int = 0                               # 0: the scale's
    epochs: int = 0                              # > 0: every arm trains this many epochs of its data (x --steps-factor)
    equal_tokens: bool = False                   # every arm's update holds as many tokens as FULL-SENTENCES'
    note: str = ""                               # how to read the result
    metric: str = "loss"                         # the held-out figure the verdicts test (reports.METRICS)
    downstream: bool = False                     # every checkpoint finetuned on SST-2 too (when its data is here)

# ---------------------------------------------------------------------------------------- the experiments
# Section 4.1 at classroom scale: 12 epochs of the slice with 3 static masks, each seen 4 times (BERT: 40 / 10).
MASKING_EPOCHS, STATIC_MASKS = 12, 3

# Table 3 at classroom scale: batches of 8, 16 and 32 for the paper's 256, 2K and 8K (why: docs/experiments/
# README.md, Design), each at the lr `batch-size-grid` chose for it on the tuning split, inside its grid.
BATCHES = {"bsz-256": 1, "bsz-2k": 2, "bsz-8k": 4}          # x the base batch, / its steps
GRID_LR = {name: [0.5e-3, 1e-3, 2e-3] for name in BATCHES}  # the old grid's best for 4 and 32 sequences: 1e-3
GRID_SEEDS = 2
TUNED_LR = {"bsz-256": 0.001, "bsz-2k": 0.001, "bsz-8k": 0.001}  # batch-size-grid chose 1e-3 for each, inside its grid


def batch_arm(name, lr, suffix=""):
    """One batch size of Table 3: its batch and steps relative to the base (equal sequences), and its lr."""
    return Arm(name + suffix, {"batch_size": Times(BATCHES[name]), "max_steps": Times(1 / BATCHES[name]), "lr": lr})


# Adding one: a name, a question, the arms (train.py options), and the claims to check. Everything else
# (seeds, evaluation, report, verdicts) follows. See EXERCISES.md.
EXPERIMENTS = [
    Experiment(
        "masking", "Does dynamic masking (a new mask each epoch) beat BERT's static masking (fixed masks, each seen 4 "
                   "times)?",
        arms=[Arm("static", {"masking": "static", "static_masks": STATIC_MASKS}),
              Arm("dynamic", {"masking": "dynamic"}), CONTROL],
        claims=[Claim("dynamic", "static", "dynamic masking is comparable or slightly better than static "
                                           "(Section 4.1)")],
        paper=PaperTable(
            "Table 1 (Section 4.1)", "Comparison between static and dynamic masking for BERT-base. F1 for "
            "SQuAD, accuracy for MNLI-m and SST-2; medians over 5 seeds. Reference: BERT-base as published.",
            "Masking", [("SQuAD 2.0", "higher"), ("MNLI-m", "higher"), ("SST-2", "higher")],
            [("reference", None, ["76.3", "84.3", "92.8"]), ("static", "static", ["78.3", "84.3", "92.5"]),
             ("dynamic", "dynamic", ["78.7", "84.0", "92.9"])]),
        base={"max_steps": Times(1.25)}, data="slice", epochs=MASKING_EPOCHS, downstream=True,
        note=f"BERT's static masking duplicates the data 10 times with 10 masks and trains 40 epochs, so each "
             f"mask is seen 4 times. Here the runs train {MASKING_EPOCHS} epochs of a quarter of the training "
             f"documents with {STATIC_MASKS} static masks, so each is seen {MASKING_EPOCHS // STATIC_MASKS} times, "
             f"as BERT's, and dynamic masking gives every epoch a new one: a quarter is the smallest share on "
             f"which the arms learn within the classroom budget (on a tenth, 40 epochs, they did not), so the "
             f"repetition comes from fewer masks rather than more epochs."),
    Experiment(
        "formats", "Which input format is best: sentence pairs with NSP, or packed full sentences without it?",
        arms=[Arm("segment-pair", {"format": "segment-pair"}), Arm("sentence-pair", {"format": "sentence-pair"}),
              Arm("full-sentences", {"format": "full-sentences"}), Arm("doc-sentences", {"format": "doc-sentences"}),
              CONTROL],
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
        downstream=True, equal_tokens=True,
        note="Equal tokens per update, as the paper: FULL-SENTENCES' blocks set the budget (batch x their mean "
             "length); DOC-SENTENCES and SENTENCE-PAIR take as many sequences as fit it (--tokens-per-batch), "
             "SEGMENT-PAIR a batch scaled by its mean length (the tokens each arm saw are in the run table). "
             "Every arm is scored on the same held-out text: the same FULL-SENTENCES blocks of the held-out "
             "documents with the same 15% of tokens masked, so the losses compare one model with another on "
             "identical targets (a pair-format model reads single blocks there, a format it did not train on: "
             "this favours the single-segment formats a little)."),
    Experiment(
        "batch-size", "At an equal number of sequences seen, do larger batches (lr tuned for each) train better?",
        arms=[batch_arm(name, TUNED_LR[name]) for name in BATCHES] + [CONTROL],
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
        base={"seq_len": 64, "max_steps": Times(2)}, data="tune", downstream=True,
        note="Batches of 8, 16 and 32 sequences of 64 tokens (the paper's ratios 8 and 32 compressed to 2 and 4, "
             "steps /2 and /4): 25,600 sequences for every arm, so that the smallest batch makes 3,200 updates and "
             "the largest 800, the fewest with which a classroom model learned. Each arm's lr is the best of a "
             "grid of three (2 seeds a point) chosen on the tuning split by `python experiments.py "
             "batch-size-grid`; warmup is 10% of each arm's updates, the same share of its sequences for every "
             "arm (not tuned: a fixed share keeps the schedules alike, and the grid's budget goes to the seeds); "
             "every arm trains on the training documents less that split."),
    Experiment(
        "batch-size-grid", "Which lr suits each batch size? (the tuning behind batch-size; scored on the tuning "
                           "split, never the reported held-out documents)",
        arms=[batch_arm(name, lr, f"-lr{lr:g}") for name in BATCHES for lr in GRID_LR[name]], claims=[],
        base={"seq_len": 64, "max_steps": Times(2)}, data="tune", heldout="tune", seeds=GRID_SEEDS,
        note="Two seeds per point. Each batch size takes the lr with the lowest mean held-out loss here (on the "
             "tuning split: training documents that no run of batch-size trains on), which must lie inside its "
             "grid, not at an edge; batch-size declares it (TUNED_LR)."),
    Experiment(
        "text-encoding", "Byte-level BPE (RoBERTa) or character-level BPE (BERT): what does each cost on English, "
                         "on other languages and on code?",
        arms=[Arm("byte-level", {}), Arm("char-level", tokenizer="characters"),
              Arm("char-level-0.6x", tokenizer="characters", vocab=0.6), CONTROL],
        claims=[Claim("char-level-0.6x", "byte-level", "byte-level BPE (50K) is slightly worse than BERT's "
                                                       "character-level BPE (30K) on some end tasks (Section 4.4)"),
                Claim("char-level", "byte-level", "character units beat bytes at an equal vocabulary size (is the "
                                                  "gap the unit or the size?)", source="the unit hypothesis (not "
                                                                                      "in the paper)"),
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
              Arm("more-data-2x-steps", {"max_steps": Times(2)}), CONTROL],
        claims=[Claim("more-data", "less-data", "more data improves performance at the same steps (16GB -> 160GB)"),
                Claim("more-data-2x-steps", "more-data", "pretraining longer helps (100K -> 300K steps)")],
        paper=PaperTable(
            "Table 4 (Section 5)", "RoBERTa (BERT-large architecture) as it pretrains over more data and for "
            "longer; each row adds to the one above. Dev F1 for SQuAD, accuracy for MNLI-m and SST-2.",
            "RoBERTa", [("data", "setting"), ("bsz", "setting"), ("steps", "setting"),
                        ("SQuAD (v1.1/2.0)", "higher"), ("MNLI-m", "higher"), ("SST-2", "higher")],
            [("with BOOKS + WIKI", "less-data", ["16GB", "8K", "100K", "93.6/87.3", "89.0", "95.3"]),
             ("+ additional data", "more-data", ["160GB", "8K", "100K", "94.0/87.7", "89.3", "95.6"]),
             ("+ pretrain longer", "more-data-2x-steps", ["160GB", "8K", "300K", "94.4/88.7", "90.0", "96.1"]),
             ("+ pretrain even longer", None, ["160GB", "8K", "500K", "94.6/89.4", "90.2", "96.4"])]),
        note="Less data is every fourth training document (the paper: 16GB of 160GB, a tenth; on a tenth the "
             "classroom model does not learn); all arms are evaluated on the same held-out documents. The "
             "paper's 100K and 300K steps are 1x and 2x of the scale's 1,600 updates here (more-data is the same "
             "run as formats' full-sentences, trained once): at 1,200 updates one seed of less-data stayed above "
             "the unigram baseline, and a third arm (3x) would take this experiment past 25 minutes at 5 seeds, "
             "so the paper's 500K row is shown, not run."),
    Experiment(
        "mask-rate", "Is 15% the right share of tokens to mask, or do 30% and 40% train better?",
        arms=[Arm("rate-15", {"mask_rate": 0.15}), Arm("rate-30", {"mask_rate": 0.30}),
              Arm("rate-40", {"mask_rate": 0.40}), CONTROL],
        claims=[Claim("rate-40", "rate-15", "Wettig et al. 2023 (arXiv:2202.08005): masking 40% outperforms "
                                            "15% for BERT-large, on GLUE and SQuAD", source="Wettig et al."),
                Claim("rate-30", "rate-15", "the same trend at 30%", source="Wettig et al.")],
        note="Every arm is evaluated on the same held-out masks at 15%, whatever rate it trained at: an MLM proxy "
             "of Wettig et al.'s downstream claim about large models, where a 40% arm also gets 2.7x the targets "
             "per update. They find that larger models favour higher rates: a tiny model may not."),
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
    tokens_per_s: float          # for the time estimates of `list`: one run's speed, two side by side (--jobs 2)
    overhead_s: float            # per run: start, evaluations, saving
    finetune: dict               # finetune.py options with --glue
    measured: bool               # tokens_per_s measured (True) or assumed (False)
    workers: int = 2
    threads: int = 0             # OMP_NUM_THREADS for the runs (0: torch's choice; with --jobs, cores / jobs)
    finetune_s: float = 0        # per run when finetuned on SST-2, two side by side (for the time estimates of `list`)
    update_s: float = 0.0        # per update, whatever its size (batching, masking, the optimizer), for `list`
    downstream: bool = True      # SST-2 finetuned by default where an experiment is scored downstream
    probe: dict = None           # why not, measured: the pilots' figures that the reports state
    whole_epochs: bool = True    # Experiment.epochs honoured (False: the declared max_steps, for seconds-long runs)


# The classroom's SST-2 probe as measured in the runs of 2026-12-03 (BENCHMARKS.md): why it is off by default there.
# tokens_per_s and update_s: a line through that batch-size grid's wall times (4 x 64 tokens: 44 ms an update;
# 32 x 64: 150 ms; 128 x 64: 500 ms), one thread, two runs side by side.
PROBE = dict(control=50.92, pretrained=(52, 59), counted=0, verdicts=16, seconds=(20, 35), share="a quarter")

SCALES = {
    "classroom": Scale("classroom", dict(config="tiny", seq_len=128, batch_size=8, lr=2e-3, max_steps=1600,
                                         dropout=0.0),
                       vocab_size=4096, valid_fraction=0.05, slice_every=4, corpus="builtin", seeds=5,
                       eval_sequences=100_000, tokens_per_s=17_000, update_s=0.029, overhead_s=10, measured=True,
                       finetune=dict(epochs=3, max_train_examples=1000, batch_size=32, lr=3e-4, max_seq_len=64),
                       finetune_s=30, downstream=False, probe=PROBE),
    "gpu": Scale("gpu", dict(config="base", seq_len=128, batch_size=256, micro_batch_size=128, lr=5e-4, max_steps=2000,
                             amp="bf16", device="cuda"),
                 vocab_size=32768, valid_fraction=0.005, slice_every=10, corpus="wikitext-103", seeds=3,
                 eval_sequences=2000, tokens_per_s=300_000, overhead_s=60, measured=False, workers=8, finetune_s=120,
                 finetune=dict(epochs=2, max_train_examples=20000, batch_size=32, lr=3e-5, max_seq_len=128)),
    "quick": Scale("quick", dict(config="tiny", seq_len=32, batch_size=4, lr=1e-3, max_steps=16, device="cpu"),
                   vocab_size=512, valid_fraction=0.1, slice_every=10, corpus="builtin-quick", seeds=2,
                   eval_sequences=24, tokens_per_s=3000, overhead_s=4, measured=True, workers=1, threads=1,
                   finetune=dict(epochs=1, max_train_examples=64, max_eval_examples=64, batch_size=16, lr=1e-3,
                                 max_seq_len=64), whole_epochs=False),
}
# (task, folder, required with --glue). SST-2 only: RTE's 277 dev examples give one run's accuracy a standard
# error of 3 points, at chance for a classroom model, more than any gap between arms at this scale.
GLUE_TASKS = [("sst2", "SST-2", True)]
DEFAULT_OUT, GLUE_DOWNLOAD = "experiments", "glue-sst-2"  # --out's default; the data.py download holding SST-2/


if __name__ == "__main__":  # machinery: the runner (prepare, train, finetune, judge, report), its options
    from machinery.lab import command
    command.main()
