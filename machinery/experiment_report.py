"""experiments.py's results: the statistics over seeds, the verdict of each claim (the rule is in
experiments.py's docstring), the paper's own gap beside it, and the report (report.md: the paper's table
beside ours, the verdicts, every run and command) and the plot (loss.png, when matplotlib is installed).

    arms = [experiment_report.arm_summary(records, arm) for arm in exp.arms]
    verdicts = experiment_report.judge(exp, arms)
    text = experiment_report.report(exp, results, runs, base)
"""
import math
import os
import re
import shlex
import statistics

import experiments
from machinery import experiment_runs, stats

PLUMBING = ("--seeds", "--jobs", "--out", "--glue", "--device", "--arms")  # options that do not change a run's result


# ---------------------------------------------------------------------------------------- statistics
ALPHA = 0.05                     # two-sided, over each claim's metrics together (Bonferroni)
METRICS = {  # the figures a verdict can use: name, and whether lower is better
    "loss": ("held-out MLM loss", True),
    "bits_per_byte": ("held-out bits per byte", True),
    "bpb_non_english": ("bits per byte on non-English text", True),
    "bpb_code": ("bits per byte on code", True),
    "sst2": ("SST-2 dev accuracy", False),
}


def summarize(values):
    """(mean, sample standard deviation, n) of the finished runs' values."""
    n = len(values)
    if n == 0:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if n > 1 else 0.0), n


def stat(pairs):
    """A metric over an arm's finished runs: mean, sd, n, and each value with its seed (for the tests)."""
    pairs = sorted(pairs)
    mean, sd, n = summarize([v for _, v in pairs])
    return {"mean": mean, "sd": sd, "n": n, "seeds": [s for s, _ in pairs], "values": [v for _, v in pairs]}


def arm_summary(records, arm):
    finished = [r for r in records if r["arm"] == arm.name and r.get("status") == "finished"]
    out = {"arm": arm.name, "finished": len(finished),
           "failed": sum(r["arm"] == arm.name and r.get("status") == "failed" for r in records)}
    for key in ("loss", "loss_se", "ppl", "accuracy", "accuracy_se", "bits_per_byte"):
        out[key] = stat([(r["seed"], r["heldout"][key]) for r in finished])
    for key in sorted({k for r in finished for k in r.get("heldout", {}).get("texts", {})}):
        out[f"bpb_{key}"] = stat([(r["seed"], r["heldout"]["texts"][key]["bits_per_byte"]) for r in finished
                                  if key in r["heldout"].get("texts", {})])
    for task, _, _ in experiments.GLUE_TASKS:
        scores = [(r["seed"], r["glue"][task]["accuracy"]) for r in finished
                  if "accuracy" in r.get("glue", {}).get(task, {})]
        if scores:
            out[task] = stat(scores)
    return out


def verdict(better, worse, key="loss", lower_is_better=True, alpha=ALPHA):
    """One metric's test of a claim (`better` beats `worse`): the paired t-test when both arms finished the
    same seeds (run k of each arm shares seed k: its initialisation, and its data order where the arms read
    the same batches; the seeds are independent, so the differences are too), else Welch's. difference > 0
    is the claim's direction; the 95% interval and p are the test's, two-sided."""
    b, w = better.get(key), worse.get(key)
    if not b or not w or b["n"] == 0 or w["n"] == 0:
        return {"verdict": "no verdict: an arm has no finished run"}
    if b["n"] < 2 or w["n"] < 2:
        return {"verdict": "no verdict: one seed per arm gives no spread (use --seeds 3)"}
    same = b.get("seeds") is not None and b["seeds"] == w.get("seeds")
    first, second = (b["values"], w["values"]) if lower_is_better else (w["values"], b["values"])
    test = stats.compare(first, second, paired_runs=same)
    significant = test["p"] < alpha
    word = "not significant" if not significant else "reproduced" if test["difference"] > 0 else \
        "not reproduced at this scale"
    return {"verdict": word, "metric": key, "alpha": alpha, **test}


def combined(tests):
    """A claim's verdict over its metrics (each tested at ALPHA / number of metrics: Bonferroni)."""
    words = {t["verdict"] for t in tests}
    if not tests or all(w.startswith("no verdict") for w in words):
        return next(iter(words), "no verdict: an arm has no finished run")
    if {"reproduced", "not reproduced at this scale"} <= words:
        return "mixed: the metrics disagree"
    return next((w for w in ("reproduced", "not reproduced at this scale") if w in words), "not significant")


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
    return exp.claims + [experiments.Claim(a.name, a.beats, a.says or f"{a.name} beats {a.beats}")
                         for a in exp.arms if a.beats]


def judge(exp, arms):
    """Every claim's verdict: its metrics (the experiment's MLM figure, and SST-2 accuracy when finetuned),
    each tested (`verdict`) at ALPHA / the number of metrics, and the claim's word from them (`combined`)."""
    by_name = {a["arm"]: a for a in arms}
    out = []
    for claim in claims_of(exp):
        if claim.better not in by_name or claim.worse not in by_name:
            continue  # an arm not run here: the claim is the baseline report's
        better, worse = by_name[claim.better], by_name[claim.worse]
        keys = [claim.metric] if claim.metric else \
            [exp.metric] + [task for task, _, _ in experiments.GLUE_TASKS if task in better and task in worse]
        tests = [verdict(better, worse, key, METRICS[key][1], ALPHA / len(keys)) for key in keys]
        entry = {"better": claim.better, "worse": claim.worse, "says": claim.says, "verdict": combined(tests),
                 "tests": tests, "paper_gap": paper_gap(exp, claim)}
        sds = [a["sst2"]["sd"] for a in (better, worse) if a.get("sst2", {}).get("n", 0) > 1]
        entry["paper_note"] = paper_gap_note(entry["paper_gap"], max(sds) if sds else None)
        out.append(entry)
    return out


def overall(verdicts):
    words = [v["verdict"] for v in verdicts]
    counts = {w: words.count(w) for w in ("reproduced", "not significant", "not reproduced at this scale",
                                          "mixed: the metrics disagree")}
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
        cells += [fmt(summary.get(task), 1) for task, _, _ in experiments.GLUE_TASKS]
    status = f"{summary['finished']}" + (f" (+{summary['failed']} failed)" if summary["failed"] else "")
    return cells + [status]


def settings_cell(run, train_args=""):
    """What sets this arm apart, as train.py flags: its own options (after Times), its data, and --train-args
    (every run's)."""
    parts = [f"--data {run.data}"] if run.arm.data else []
    return " ".join(parts + [experiment_runs.flag(key, run.options[key]) for key in run.arm.options]
                    + ([train_args] if train_args else []))


def table(exp, results, runs):
    """The paper's table, its rows in its order, our measured columns beside them."""
    glue = results["glue"] is not None
    ours = ["held-out loss", "ppl", "masked acc. %", "bits/byte"] + \
           ([f"{t.upper()} acc. % (ours)" for t, _, _ in experiments.GLUE_TASKS] if glue else []) + ["seeds"]
    arms = {a["arm"]: a for a in results["arms"]}
    first_run = {r.arm.name: r for r in reversed(runs)}
    paper = exp.paper or experiments.PaperTable("", "", "Arm", [], [])
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


def text_table(results):
    """Per arm and held-out text (text-encoding): bits per byte with the <unk> cost, and the <unk> rates."""
    texts = [r for r in results["runs"] if r.get("status") == "finished" and r["heldout"].get("texts")]
    if not texts:
        return []
    lines = ["| arm | held-out text | bits/byte (<unk> cost counted) | <unk> % of tokens | <unk> % of bytes | "
             "% of the bits spent on <unk> | bytes per token |", "|---|---|---|---|---|---|---|"]
    for arm in dict.fromkeys(r["arm"] for r in texts):
        for name in texts[0]["heldout"]["texts"]:
            figures = [r["heldout"]["texts"][name] for r in texts if r["arm"] == arm]
            mean = {k: statistics.fmean(f[k] for f in figures) for k in figures[0]}
            sd = statistics.stdev(f["bits_per_byte"] for f in figures) if len(figures) > 1 else 0.0
            lines.append(f"| {arm} | {name.replace('_', '-')} | {mean['bits_per_byte']:.3f} ± {sd:.3f} | "
                         f"{mean['unk_share_of_tokens']:.2f} | {mean['unk_share_of_bytes']:.2f} | "
                         f"{mean['unk_cost_share']:.1f} | {mean['bytes_per_token']:.2f} |")
    return lines + ["", "Means over seeds (± the seeds' standard deviation). An <unk> costs the model's loss on it "
                        "plus 8 bits per byte of the character it hides.", ""]


def report(exp, results, runs, base):
    """report.md: the question, the paper's table beside ours, the verdicts, every run and command."""
    return "\n".join(header(exp, results, runs, base) + table(exp, results, runs) + [""] + text_table(results)
                     + ([f"*{exp.note}*", ""] if exp.note else []) + verdict_lines(results)
                     + runs_section(results))


def header(exp, results, runs, base):
    paper = exp.paper
    lines = [f"# {exp.name}: {paper.source if paper else 'beyond the paper'}", ""]
    if results["scale"] == "quick":
        lines += [f"**A --quick run: it cannot answer the question.** Its runs are a few updates of a tiny model on "
                  f"a small part of the corpus: they check that the command works, and no verdict is given. The "
                  f"answer: `{results['invocation'].replace(' --quick', '')}`.", ""]
    if results.get("variant"):
        words = shlex.split(results["invocation"])[3:]
        kept = [w for i, w in enumerate(words) if not (w in PLUMBING or i and words[i - 1] in PLUMBING
                                                       or w in ("--quick", "--overwrite", "--scale"))]
        changed = f"what does `{shlex.join(kept)}`, and any edit to the code made for it, change?" if kept else \
            "what does the edit to the code made for it change?"
        baseline = f"python experiments.py {exp.name}" + (" --quick" if results["scale"] == "quick" else "")
        lines += [f"**A variant of the `{exp.name}` experiment**: `{results['invocation']}`. Its question: {changed} "
                  f"Compare each row with the same row of the baseline report, "
                  f"`{os.path.join(experiments.DEFAULT_OUT, exp.name, 'report.md')}` (made by `{baseline}`). "
                  f"The experiment's own question:", ""]
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
    elif results.get("codes") and results["code"] not in results["codes"]:
        lines += [f"**Code.** The runs ran with code {results['codes'][0]} (a hash of the project's source files); "
                  f"this report and its verdicts were made from them by code {results['code']} "
                  f"(`--report-only`, which trains nothing).", ""]
    if paper:
        lines += [f"**The paper** ({paper.source}): {paper.caption}", ""]
    sizes = "; ".join(f"{name}: {d['tokens']:,} tokens in {d['documents']:,} documents"
                      for name, d in results["data"].items())
    seeds = f"{results['seeds']} seed{'s' if results['seeds'] != 1 else ''} per arm"
    options = " ".join(experiment_runs.flag(k, v) for k, v in base.items())
    return lines + [
        f"**Ours** ({results['scale']} scale, {seeds}): `train.py {options}` "
        f"(warmup 10% of the steps) and each arm's options below, on the {exp.data} data unless an arm says "
        f"otherwise (training data, {sizes}). " + heldout_sentence(results, runs) + " Cells: mean ± standard "
        "deviation over seeds [the held-out standard error of one run's figure, mean over seeds]; ppl = exp(mean "
        "loss). The standard error says how well this sample of masked tokens pins down one model's loss; the "
        "verdicts compare arms by the spread over seeds.", ""]


def heldout_sentence(results, runs):
    """What every run is scored on: the same masked tokens, or each arm its own (format or tokenizer)."""
    targets = {r["heldout"]["targets"] for r in results["runs"] if r.get("status") == "finished"}
    if len(targets) <= 1 and len({r.heldout for r in runs}) == 1:
        return (f"Every run is evaluated on the same {results['heldout_targets']:,} masked held-out tokens (15%, "
                f"fixed masks, `{runs[0].heldout}`).")
    return ("Every run is evaluated on the same held-out documents, each arm on inputs built its own way (its "
            "input format, or its tokenizer: see the note below the table), 15% of their tokens masked with one "
            "fixed seed; the masked tokens therefore differ between arms.")


def test_text(t):
    """One metric's test in words: the difference in the claim's direction, its 95% interval, p."""
    name = METRICS[t["metric"]][0]
    unit, digits = (" points", 1) if t["metric"] == "sst2" else ("", 4)
    if t["se"] == 0:  # e.g. SST-2 at chance: every run predicts one label, the same accuracy in every seed
        return f"{name}: {t['difference']:+.{digits}f}{unit} in every seed alike (no spread: {t['verdict']})"
    return (f"{name}: {t['difference']:+.{digits}f}{unit} in the claim's favour (95% CI {t['low']:+.{digits}f} "
            f"to {t['high']:+.{digits}f}; {t['test']}, p = {t['p']:.2g} against {t['alpha']:g}: {t['verdict']}; "
            f"these runs resolve about {t['resolves']:.{digits}f}{unit})")


def verdict_lines(results):
    lines = [f"**Verdict: {results['verdict']}.**", "",
             f"Time: {results['run_seconds'] / 60:.1f} min of runs in all (each run's training and evaluation, "
             f"added up); this invocation took {results['wall_seconds'] / 60:.1f} min.", ""]
    for v in results["verdicts"]:
        text = f"- *{v['better']} beats {v['worse']}* ({v['says']}): **{v['verdict']}**"
        tests = [t for t in v.get("tests", []) if "difference" in t]
        if tests:
            text += "; " + "; ".join(test_text(t) for t in tests)
        if v["paper_note"]:
            text += f". {v['paper_note'][0].upper()}{v['paper_note'][1:]}"
        lines.append(text + ".")
    rule = RULE if results["scale"] != "quick" else \
        "The tests' numbers are shown for checking the code; at --quick scale they say nothing about the paper."
    return lines + ["", rule, ""] + finetuning_noise(results)


def finetuning_noise(results):
    """How big an SST-2 difference these runs can resolve, and why: the dev set's size and the seeds' spread."""
    tests = [t for v in results["verdicts"] for t in v.get("tests", []) if t.get("metric") == "sst2" and "se" in t]
    scores = [a["sst2"] for a in results["arms"] if a.get("sst2", {}).get("n")]
    if not tests or not scores or not results.get("sst2_dev_examples"):
        return []
    n, acc = results["sst2_dev_examples"], statistics.fmean(s["mean"] for s in scores) / 100
    sampling = 100 * math.sqrt(acc * (1 - acc) / n)
    spread = max((s["sd"] for s in scores if s["n"] > 1), default=0.0)
    resolves = [t["resolves"] for t in tests]
    gaps = sorted(abs(g) for v in results["verdicts"] for name, g in v.get("paper_gap", []) if name == "SST-2")
    paper = f"; the paper's own SST-2 gaps for these claims are {gaps[0]:g} to {gaps[-1]:g} points" if gaps else ""
    return [f"**Finetuning noise.** Each run's SST-2 accuracy is measured on {n:,} dev sentences: at "
            f"{100 * acc:.1f}% the sampling error alone is {sampling:.1f} points (binomial standard error). "
            f"Over seeds (pretraining and finetuning together) an arm's accuracy spreads by up to {spread:.1f} "
            f"points (standard deviation), so these SST-2 tests resolve differences of about "
            f"{min(resolves):.1f} to {max(resolves):.1f} points (the 95% intervals' half-widths)" + paper + ".", ""]


RULE = ("Verdicts: each claim's metrics are tested two-sided, at 5% over the claim's metrics together (5% / "
        "the number of metrics each, Bonferroni). The test is the paired t-test when both arms finished the "
        "same seeds (run k of every arm starts from seed k: the same initialisation, and the same data order "
        "where the arms read the same batches; the seeds are independent, so the per-seed differences are "
        "independent draws), else Welch's t-test. reproduced: significant in the paper's order; not reproduced "
        "at this scale: significant in the opposite order; not significant: neither (the interval holds 0); "
        "mixed: the metrics disagree. The interval is the difference's 95% confidence interval; a difference "
        "smaller than the 'resolves' figure (the interval's half-width) cannot be told from noise with these "
        "runs. Each claim is tested on its own: with several claims per experiment, one in twenty true-null "
        "claims would come out significant by chance.")


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


def short_test(t):
    """One test in a table cell: difference [95% CI], p."""
    d = 1 if t["metric"] == "sst2" else 3
    name = METRICS[t["metric"]][0]
    if t["se"] == 0:
        return f"{name} {t['difference']:+.{d}f} in every seed alike"
    return f"{name} {t['difference']:+.{d}f} [{t['low']:+.{d}f}, {t['high']:+.{d}f}], p = {t['p']:.2g}"


def summary(names, out):
    """One markdown table of every claim's verdict in OUT/<name>/results.json: BENCHMARKS.md's, from the runs."""
    lines = ["| experiment | claim | verdict | difference in the claim's favour [95% CI], p (test) | runs |",
             "|---|---|---|---|---|"]
    for name in names:
        results = experiment_runs.read_json(os.path.join(out, name, "results.json"))
        if not results:
            continue
        minutes = f"{results['seeds']} seeds, {results['wall_seconds'] / 60:.1f} min"
        for v in results["verdicts"]:
            tests = "; ".join(short_test(t) for t in v.get("tests", []) if "difference" in t)
            test = next((t["test"] for t in v.get("tests", []) if "test" in t), "")
            lines.append(f"| `{name}` | {v['better']} beats {v['worse']} | **{v['verdict']}** | {tests} ({test}) "
                         f"| {minutes} |")
    return "\n".join(lines) if len(lines) > 2 else f"no results.json under {out}/: run an experiment first"


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


