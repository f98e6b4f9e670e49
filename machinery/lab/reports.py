"""experiments.py's results: the statistics over seeds, the verdict of each claim (the rule is in
experiments.py's docstring and RULE below: Holm over every test of an experiment, intervals at the level
tested, equivalence by TOST, no verdict from zero spread, the learning gate, SST-2 only past the random-init
control), the paper's own gap beside it, and the report (report.md: the paper's table beside ours, the
verdicts, every run's figures and command) and the plot (loss.png, when matplotlib is installed).

    arms = [reports.arm_summary(records, arm) for arm in exp.arms]
    verdicts = reports.judge(exp, arms, unigram={"static": 6.85, "dynamic": 6.85})
    text = reports.report(exp, results, runs, base)
"""
import math
import os
import re
import shlex
import statistics

import experiments
from machinery.basics import files
from machinery.lab import runner, stats

PLUMBING = ("--seeds", "--jobs", "--out", "--glue", "--device", "--arms")  # options that do not change a run's result


# ---------------------------------------------------------------------------------------- statistics
ALPHA = 0.05                     # two-sided, familywise over every test of an experiment (Holm)
METRICS = {  # the figures a verdict can use: name, whether lower is better, the equivalence margin (declared
    # before the runs, at a size 5 seeds can resolve: docs/experiments/README.md, Power; None: no TOST), its unit
    "loss": ("held-out MLM loss", True, 0.05, " nats"),
    "bits_per_byte": ("held-out bits per byte", True, 0.04, " bits/byte"),
    "bpb_non_english": ("bits per byte on non-English text", True, None, " bits/byte"),
    "bpb_code": ("bits per byte on code", True, None, " bits/byte"),
    "sst2": ("SST-2 dev accuracy", False, None, " points"),
}
MARGINS = ("Equivalence margins: 0.05 nats of held-out MLM loss (a 5% change of perplexity); 0.04 bits per byte "
           "of English (twice what 5 seeds resolve there); none for non-English text, code and SST-2, whose "
           "seeds spread by more than any margin worth stating, so no equivalence is tested there.")
CONTROL = "random-init"          # finetuned from random weights: SST-2 counts only where the pretrained arms beat it
LEARNED_BELOW = 0.8              # an arm learned: its held-out ppl under 0.8 x the unigram baseline's
QUICK = "no verdict: a --quick run cannot answer the question"


def downstream_tasks():
    return [task for task, _, _ in experiments.GLUE_TASKS]


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
    scored = [r for r in finished if r.get("heldout")]  # a random-init control has SST-2 but no MLM figures
    out = {"arm": arm.name, "finished": len(finished),
           "failed": sum(r["arm"] == arm.name and r.get("status") == "failed" for r in records)}
    for key in ("loss", "loss_se", "ppl", "accuracy", "accuracy_se", "bits_per_byte"):
        out[key] = stat([(r["seed"], r["heldout"][key]) for r in scored])
    for key in sorted({k for r in scored for k in r["heldout"].get("texts", {})}):
        out[f"bpb_{key}"] = stat([(r["seed"], r["heldout"]["texts"][key]["bits_per_byte"]) for r in scored
                                  if key in r["heldout"].get("texts", {})])
        out[f"bpb_{key}_uniform"] = stat([(r["seed"], r["heldout"]["texts"][key]["uniform_bits_per_byte"])
                                          for r in scored if "uniform_bits_per_byte" in r["heldout"]
                                          .get("texts", {}).get(key, {})])  # the gate's baseline there
    for task in downstream_tasks():
        scores = [(r["seed"], r["glue"][task]["accuracy"]) for r in finished
                  if "accuracy" in r.get("glue", {}).get(task, {})]
        if scores:
            out[task] = stat(scores)
    return out


def measure(better, worse, key="loss", lower_is_better=None):
    """One metric of a claim (`better` beats `worse`) measured, before any level is set: the paired t-test
    when both arms finished the same seeds (run k of each arm shares seed k: its initialisation, and its
    data order where the arms read the same batches; the seeds are independent, so the differences are
    too), else Welch's. difference > 0 is the claim's direction. No test: a "no verdict: ..." word."""
    b, w = better.get(key), worse.get(key)
    if not b or not w or b["n"] == 0 or w["n"] == 0:
        return {"metric": key, "verdict": "no verdict: an arm has no finished run"}
    if b["n"] < 2 or w["n"] < 2:
        return {"metric": key, "verdict": "no verdict: one seed per arm gives no spread (use --seeds 3)"}
    same = b.get("seeds") is not None and b["seeds"] == w.get("seeds")
    lower = METRICS[key][1] if lower_is_better is None else lower_is_better
    first, second = (b["values"], w["values"]) if lower else (w["values"], b["values"])
    test = {"metric": key, **stats.compare(first, second, paired_runs=same)}
    if test["zero_spread"]:  # every paired difference alike (or every run): no t-test, no verdict
        test["verdict"] = "no verdict: zero spread"
    return test


def decide(test, level, adjusted=None, alpha=ALPHA):
    """A measured test's word at the level it was held to (Holm's, `level`): its interval at 1 - level;
    "reproduced" when p < level in the claim's direction, "not reproduced at this scale" in the other;
    else "equivalent within ±M" when TOST rejects at level / 2 (exactly when that interval lies inside the
    metric's margin ±M); else "not significant"."""
    if test.get("p") is None:
        return test
    _, _, margin, unit = METRICS[test["metric"]]
    t = {**stats.interval(test, 1 - level), "alpha": level, "family_alpha": alpha, "margin": margin,
         "adjusted_p": test["p"] if adjusted is None else adjusted,
         "tost_p": None if margin is None else stats.tost(test, margin)}  # no margin: no equivalence test
    t["within_margin"] = t["tost_p"] is not None and t["tost_p"] < level / 2
    if t["p"] < level:
        t["verdict"] = "reproduced" if t["difference"] > 0 else "not reproduced at this scale"
    else:
        t["verdict"] = f"equivalent within ±{margin:g}{unit}" if t["within_margin"] else "not significant"
    return t


def verdict(better, worse, key="loss", lower_is_better=None, alpha=ALPHA):
    """One metric's test of a claim on its own (a family of one test, at `alpha`): `measure`, `decide`."""
    return decide(measure(better, worse, key, lower_is_better), alpha, alpha=alpha)


def combined(tests):
    """A claim's word from the words of the metrics that count: any without a test leaves the claim
    without a verdict; both orders: mixed; one order; all equivalent; else not significant."""
    words = [t["verdict"] for t in tests]
    if not words:
        return "no verdict: an arm has no finished run"
    missing = [w for w in words if w.startswith("no verdict")]
    if missing:
        return missing[0]
    if {"reproduced", "not reproduced at this scale"} <= set(words):
        return "mixed: the metrics disagree"
    found = next((w for w in ("reproduced", "not reproduced at this scale") if w in words), None)
    if found:
        return found
    if all(w.startswith("equivalent within ") for w in words):
        return "equivalent within " + " and ".join(dict.fromkeys(w[len("equivalent within "):] for w in words))
    return "not significant"


def learning_ratios(arms, unigram):
    """Each arm's held-out perplexity over the unigram baseline's on the same masked tokens (`unigram`: arm ->
    the unigram distribution's loss there): exp(loss - unigram loss). An arm above LEARNED_BELOW did not learn."""
    unigram = unigram or {}
    return {a["arm"]: math.exp(a["loss"]["mean"] - unigram[a["arm"]]) for a in arms
            if a["arm"] != CONTROL and a["loss"]["n"] and unigram.get(a["arm"]) is not None}


def seed_gate(arm, metric, unigram):
    """The learning gate, per seed and per metric: each run of `arm` that fails it, with its figure. Every
    metric: its held-out ppl under LEARNED_BELOW x the unigram's on the same masks (`unigram`: that loss). Bits
    per byte of non-English text or code also: under a uniform guess's over its vocabulary on the same targets."""
    fails, u = [], unigram.get(arm["arm"])
    if arm["loss"]["n"] and u is not None:
        fails += [f"seed {s}: {math.exp(v - u):.2f}x the unigram ppl" for s, v in zip(arm["loss"]["seeds"],
                                                                                    arm["loss"]["values"])
                  if math.exp(v - u) >= LEARNED_BELOW]
    uniform = dict(zip(arm.get(f"{metric}_uniform", {}).get("seeds", []),
                       arm.get(f"{metric}_uniform", {}).get("values", [])))
    if uniform and arm.get(metric):
        fails += [f"seed {s}: {v:.2f} bits/byte, a uniform guess {uniform[s]:.2f}"
                  for s, v in zip(arm[metric]["seeds"], arm[metric]["values"]) if s in uniform and v >= uniform[s]]
    return fails


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


def judge(exp, arms, unigram=None, quick=False):
    """Every claim's verdict. Its metrics: the experiment's MLM figure (or the claim's own), and SST-2 when
    finetuned. Every test this makes (each claim x metric, each pretrained arm against the random-init
    control on SST-2) is one family, corrected by Holm at ALPHA (`decide` at each test's level); then each
    claim's word (`finish`): the learning gate (`unigram`: arm -> the unigram loss on its held-out masks),
    SST-2 counted only where both arms beat the control, `combined` over the metrics that count."""
    by_name = {a["arm"]: a for a in arms}
    entries = []
    for claim in claims_of(exp):
        if claim.better not in by_name or claim.worse not in by_name:
            continue  # an arm not run here: the claim is the baseline report's
        better, worse = by_name[claim.better], by_name[claim.worse]
        keys = [claim.metric] if claim.metric else \
            [exp.metric] + [task for task in downstream_tasks() if task in better and task in worse]
        entry = {"better": claim.better, "worse": claim.worse, "says": claim.says,
                 "tests": [measure(better, worse, key) for key in keys], "paper_gap": paper_gap(exp, claim),
                 "proxy": bool(exp.downstream and not claim.metric), "beyond": claim.beyond,
                 "gate": {a["arm"]: seed_gate(a, keys[0], unigram or {}) for a in (better, worse)}}
        sds = [a["sst2"]["sd"] for a in (better, worse) if a.get("sst2", {}).get("n", 0) > 1]
        entry["paper_note"] = paper_gap_note(entry["paper_gap"], max(sds) if sds else None)
        entries.append(entry)
    controls = control_tests(entries, by_name)
    family = [t for t in [t for e in entries for t in e["tests"]] + controls if t.get("p") is not None]
    for t, h in zip(family, stats.holm([t["p"] for t in family], ALPHA)):
        t.update(decide(t, h["level"], h["adjusted"]), family=len(family), rank=h["rank"])
    ratios = learning_ratios(arms, unigram)
    for entry in entries:
        finish(entry, ratios, controls, CONTROL in by_name, quick)
    if quick:  # the tests' numbers stay; no words
        for t in [t for e in entries for t in e["tests"]] + controls:
            t["verdict"] = t["verdict"] if t["verdict"].startswith("no verdict") else ""
    return entries


def control_tests(entries, by_name):
    """SST-2 of each pretrained arm of a claim against the random-init control's (the claim's direction: the
    pretrained arm is better); none when no control ran."""
    if CONTROL not in by_name:
        return []
    pairs = dict.fromkeys((arm, t["metric"]) for e in entries for t in e["tests"] for arm in (e["better"], e["worse"])
                          if t["metric"] in downstream_tasks())
    return [{**measure(by_name[arm], by_name[CONTROL], task), "arm": arm} for arm, task in pairs]


def finish(entry, ratios, controls, control_ran, quick):
    """A claim's word: no verdict without runs (or with one seed); none from a --quick run; inconclusive when
    an arm did not learn (the learning gate); else `combined` over the metrics that count, labelled
    "(MLM proxy)" when the downstream metric did not count (or, for an experiment scored downstream, was
    not measured)."""
    arms = (entry["better"], entry["worse"])
    beaten = {(c["arm"], c["metric"]) for c in controls if c.get("verdict") == "reproduced"}
    for t in entry["tests"]:
        t["counted"] = t["metric"] not in downstream_tasks() or all((a, t["metric"]) in beaten for a in arms)
    downstream = [t for t in entry["tests"] if t["metric"] in downstream_tasks()]
    losers = [a for a in arms if not all((a, t["metric"]) in beaten for t in downstream)]
    entry["downstream"] = "" if not downstream else "counted" if not losers else \
        "unchecked: no random-init control ran" if not control_ran else \
        f"excluded: {' and '.join(losers)} {'does' if len(losers) == 1 else 'do'} not beat the random-init control " \
        "significantly"
    entry["ratios"] = {a: ratios.get(a) for a in arms}
    entry["controls"] = [c for c in controls if c["arm"] in arms]
    base = combined([t for t in entry["tests"] if t["counted"]])
    if entry.get("beyond") and base == "reproduced":  # a claim beyond the paper is never "reproduced"
        base = f"consistent with {entry['beyond']}"
    gate = entry.get("gate", {})  # judge's seed_gate: the runs of each arm that fail the learning gate
    not_learned = [f"{a} did not learn ({'; '.join(gate[a])})" for a in arms if gate.get(a)]
    if base.startswith(("no verdict: an arm", "no verdict: one seed")):
        entry["verdict"] = base
    elif quick:
        entry["verdict"] = QUICK
    elif not_learned:
        entry["verdict"] = f"inconclusive: {' and '.join(not_learned)}"
        for t in entry["tests"]:  # the numbers stay; no word of a metric outlives the gate
            t["verdict"] = t["verdict"] if t["verdict"].startswith("no verdict") else ""
    else:
        proxy = any(not t["counted"] for t in entry["tests"]) or (entry["proxy"] and not downstream)
        entry["verdict"] = base + (" (MLM proxy)" if proxy and not base.startswith("no verdict") else "")
    entry["proxy"] = entry["verdict"].endswith("(MLM proxy)")
    return entry


def overall(verdicts):
    """The experiment's verdict: how many claims got each word."""
    words = [v["verdict"] for v in verdicts]
    if not words:
        return "none: no claim has both its arms here (compare with the baseline report)"
    if len(set(words)) == 1 and words[0].startswith("no verdict"):
        return words[0]
    counts = {w: words.count(w) for w in words}
    return ", ".join(f"{n} {w}" for w, n in counts.items()) + f" (of {len(words)} findings)"


# ---------------------------------------------------------------------------------------- report
def fmt(stat, digits, scale=1.0):
    if not stat or stat["n"] == 0:
        return "-"
    if stat["n"] == 1:
        return f"{stat['mean'] * scale:.{digits}f}"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['sd'] * scale:.{digits}f}"


def arm_cells(summary, glue, ratio=None):
    """Our columns for one arm: loss ± sd [se], ppl, ppl / the unigram's (the learning gate), accuracy ± sd
    [se], bits/byte (+ GLUE)."""
    if summary["loss"]["n"] == 0:
        cells = ["-"] * 5
    else:
        loss, se = summary["loss"]["mean"], summary["loss_se"]["mean"]
        bpb = summary["bits_per_byte"]["mean"]
        gate = "-" if ratio is None else f"{ratio:.2f}" + (" (did not learn)" if ratio >= LEARNED_BELOW else "")
        cells = [f"{fmt(summary['loss'], 3)} [{se:.3f}]", f"{math.exp(loss):.1f} [{math.exp(loss) * se:.1f}]", gate,
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
    return " ".join(parts + [runner.flag(key, run.options[key]) for key in (*run.arm.options, *run.fitted)]
                    + ([train_args] if train_args else []))


def table(exp, results, runs):
    """The paper's table, its rows in its order, our measured columns beside them."""
    glue = results["glue"] is not None
    ours = ["held-out loss", "ppl", "ppl ÷ unigram ppl", "masked acc. %", "bits/byte"] + \
           ([f"{t.upper()} acc. % (ours)" for t, _, _ in experiments.GLUE_TASKS] if glue else []) + ["seeds"]
    arms = {a["arm"]: a for a in results["arms"]}
    ratios = learning_ratios(results["arms"], results.get("arm_baselines"))
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
            cells = [label, *values, settings] + arm_cells(arms[arm], glue, ratios.get(arm))
        lines.append("| " + " | ".join(cells) + " |")
    b = results.get("baselines")
    if b:
        lines += ["", f"**Baselines on the same masks** (what a model learns first): the unigram distribution of "
                      f"the training tokens, held-out loss {b['unigram_loss']:.3f} (ppl {math.exp(b['unigram_loss']):.1f}); "
                      f"always guessing {b['most_frequent']!r}, accuracy {b['most_frequent_accuracy']:.1f}%. A model near "
                      f"these has learned little beyond how often each token occurs. The learning gate: an arm whose "
                      f"held-out ppl is {LEARNED_BELOW:g}x the unigram ppl on its own masked tokens or more (the "
                      f"column ppl ÷ unigram ppl) did not learn, and no claim about it gets a verdict."]
        own = {arm: loss for arm, loss in (results.get("arm_baselines") or {}).items()
               if abs(loss - b["unigram_loss"]) > 1e-9}
        if own:  # arms scored on inputs of their own (format, tokenizer): their own unigram baseline
            lines[-1] += " Arms scored on inputs of their own, their unigram loss there: " + \
                ", ".join(f"{arm} {loss:.3f}" for arm, loss in own.items()) + "."
    return lines


def text_table(results):
    """Per arm and held-out text (text-encoding): bits per byte with the <unk> cost, and the <unk> rates."""
    texts = [r for r in results["runs"] if r.get("status") == "finished" and (r.get("heldout") or {}).get("texts")]
    if not texts:
        return []
    lines = ["| arm | held-out text | coverage: % of characters spelled | bits/byte (<unk> cost counted) | "
             "<unk> % of tokens | <unk> % of bytes | % of the bits spent on <unk> | bytes per token |",
             "|---|---|---|---|---|---|---|---|"]
    for arm in dict.fromkeys(r["arm"] for r in texts):
        for name in texts[0]["heldout"]["texts"]:
            figures = [r["heldout"]["texts"][name] for r in texts if r["arm"] == arm]
            mean = {k: statistics.fmean(f[k] for f in figures) for k in figures[0]}
            sd = statistics.stdev(f["bits_per_byte"] for f in figures) if len(figures) > 1 else 0.0
            cover = f"{mean['coverage']:.2f}" if "coverage" in mean else "-"
            lines.append(f"| {arm} | {name.replace('_', '-')} | {cover} | {mean['bits_per_byte']:.3f} ± {sd:.3f} | "
                         f"{mean['unk_share_of_tokens']:.2f} | {mean['unk_share_of_bytes']:.2f} | "
                         f"{mean['unk_cost_share']:.1f} | {mean['bytes_per_token']:.2f} |")
    return lines + ["", "Means over seeds (± the seeds' standard deviation). Coverage, the universality figure: the "
                        "share of the text's characters the tokenizer spells (the rest become <unk>; the tokenizers "
                        "learned from the training documents only). An <unk> costs the model's loss on it plus 8 bits "
                        "per byte of the character it hides (the % of the bits spent on <unk>).", ""]


def report(exp, results, runs, base):
    """report.md: the question, the paper's table beside ours, the verdicts, every run and command."""
    return "\n".join(header(exp, results, runs, base) + table(exp, results, runs) + [""] + text_table(results)
                     + ([f"*{exp.note}*", ""] if exp.note else []) + verdict_lines(results)
                     + runs_section(results))


QUICK_NOTICE = ("**A --quick run: it cannot answer the question.** Its models train for seconds on a tiny corpus "
                "and learn little beyond how often each token occurs; this report checks that the code runs, and "
                "gives no verdicts. Run without --quick (the classroom scale: 3 seeds, minutes per run) for them.")


def header(exp, results, runs, base):
    paper = exp.paper
    lines = [f"# {exp.name}: {paper.source if paper else 'beyond the paper'}", ""]
    if results["scale"] == "quick":
        lines += [QUICK_NOTICE, ""]
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
    options = " ".join(runner.flag(k, v) for k, v in base.items())
    return lines + [
        f"**Ours** ({results['scale']} scale, {seeds}): `train.py {options}` "
        f"(warmup 10% of the steps) and each arm's options below, on the {exp.data} data unless an arm says "
        f"otherwise (training data, {sizes}; {code_sentence(results)}). " + heldout_sentence(results, runs) +
        " Cells: mean ± standard "
        "deviation over seeds [the held-out standard error of one run's figure, mean over seeds]; ppl = exp(mean "
        "loss). The standard error says how well this sample of masked tokens pins down one model's loss; the "
        "verdicts compare arms by the spread over seeds.", ""]


def code_sentence(results):
    """The code of the runs and of their data (hashes of the source files, runner.code_hash)."""
    runs, data = ", ".join(results.get("codes") or ["none"]), ", ".join(results.get("data_codes") or ["not recorded"])
    return f"the runs ran with code {runs}, their data was prepared by code {data}"


def heldout_sentence(results, runs):
    """What every run is scored on: the same masked tokens, or each arm its own (format or tokenizer)."""
    targets = {r["heldout"]["targets"] for r in results["runs"] if r.get("status") == "finished" and r.get("heldout")}
    if len(targets) <= 1 and len({r.heldout for r in runs}) == 1:
        return (f"Every run is evaluated on the same {results['heldout_targets']:,} masked held-out tokens (15%, "
                f"fixed masks, `{runs[0].heldout}`).")
    return ("Every run is evaluated on the same held-out documents, cut into tokens by each arm's own tokenizer "
            "(see the note below the table), 15% of their tokens masked with one fixed seed; the masked tokens "
            "therefore differ between arms.")


def level_text(alpha):
    """A confidence level in words: 1 - 0.05 / 3 -> "98.33%"."""
    return f"{100 * (1 - alpha):.4g}%"


def test_text(t):
    """One metric's test in words: the difference in the claim's direction, its interval at the level the
    test was held to (Holm's), p and the Holm-adjusted p, the equivalence test's p, the word."""
    name, _, margin, unit = METRICS[t["metric"]]
    digits = 1 if t["metric"] == "sst2" else 4
    word = f": {t['verdict']}" if t.get("verdict") else ""
    if t.get("p") is None:  # e.g. SST-2 at chance: every run predicts one label, the same accuracy in every seed
        return f"{name}: {t['difference']:+.{digits}f}{unit} in every seed alike (zero spread, no t-test{word})"
    text = (f"{name}: {t['difference']:+.{digits}f}{unit} in the claim's favour ({level_text(t['alpha'])} CI "
            f"{t['low']:+.{digits}f} to {t['high']:+.{digits}f}; {t['test']}, p = {t['p']:.2g}, Holm-adjusted "
            f"p = {t['adjusted_p']:.2g} against {t['family_alpha']:g}, i.e. this test held to {t['alpha']:.3g}; "
            + ("no equivalence margin for this metric" if t.get("tost_p") is None else
               f"equivalence (TOST, ±{margin:g}{unit}): p = {t['tost_p']:.2g} against {t['alpha'] / 2:.3g}")
            + f"{word}; "
            f"these runs resolve about {t['resolves']:.{digits}f}{unit}")
    return text + (")" if t.get("counted", True) else "; not counted in the verdict)")


def verdict_lines(results):
    lines = [f"**Verdict: {results['verdict']}.**", "",
             f"Time: {results['run_seconds'] / 60:.1f} min of runs in all (each run's training and evaluation, "
             f"added up); this invocation took {results['wall_seconds'] / 60:.1f} min.", ""]
    for v in results["verdicts"]:
        text = f"- *{v['better']} beats {v['worse']}* ({v['says']}): **{v['verdict']}**"
        tests = [t for t in v.get("tests", []) if "difference" in t]
        if tests:
            text += "; " + "; ".join(test_text(t) for t in tests)
        if v.get("downstream") and v["downstream"] != "counted":
            text += f". SST-2 {v['downstream']}" + ("" if v["verdict"].startswith("no verdict") else
                                                   ": the verdict rests on the MLM figure")
        if v["paper_note"]:
            text += f". {v['paper_note'][0].upper()}{v['paper_note'][1:]}"
        lines.append(text + ".")
    rules = [] if results["scale"] == "quick" else [RULE, "", MARGINS, ""]  # no verdicts: no words to explain
    return lines + [""] + downstream_lines(results) + rules + finetuning_noise(results)


def downstream_lines(results):
    """The random-init control: each pretrained arm's SST-2 against it, or why SST-2 is unchecked."""
    tested = [v for v in results["verdicts"] if v.get("downstream")]
    if not tested:
        return []
    controls = {}
    for v in results["verdicts"]:
        for c in v.get("controls", []):
            controls.setdefault((c["arm"], c["metric"]), c)
    if not controls:
        return [f"**Downstream check.** No `{CONTROL}` control ran here (the same finetuning from random "
                "weights), so nothing shows that SST-2 accuracy measures pretraining at this scale: SST-2 is "
                "unchecked, each verdict rests on the MLM figure (marked MLM proxy), and SST-2's numbers are "
                "shown beside it, not counted.", ""]
    return [f"**Downstream check.** SST-2 counts in a claim only where both its arms beat the `{CONTROL}` control "
            "(the same finetuning from random weights) significantly, in the same Holm family: "
            + "; ".join(f"{arm} beats {CONTROL}: " + test_text(c) for (arm, _), c in controls.items()) + ".", ""]


def finetuning_noise(results):
    """How big an SST-2 difference these runs can resolve, and why: the dev set's size and the seeds' spread."""
    tests = [t for v in results["verdicts"] for t in v.get("tests", [])
             if t.get("metric") == "sst2" and "resolves" in t]
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
            f"{min(resolves):.1f} to {max(resolves):.1f} points (the intervals' half-widths, each at its test's "
            f"level)" + paper + ".", ""]


RULE = ("Verdicts: every test of this report (each claim x metric, and each pretrained arm against the "
        "random-init control on SST-2 when one ran) is two-sided, and the tests are corrected together by "
        "Holm's step-down method at 5% familywise: the smallest p is held to 5% / m (m tests), the next to "
        "5% / (m - 1), and so on until one fails; it and every larger p fail. A test is significant exactly when "
        "its Holm-adjusted p is below 5%, and its interval is printed at the level it was held to, so it "
        "excludes 0 exactly then. The test is the paired t-test when both arms finished the same seeds (run k "
        "of every arm starts from seed k: the same initialisation, and the same data order where the arms read "
        "the same batches; the seeds are independent, so the per-seed differences are independent draws), else "
        "Welch's t-test. reproduced: significant in the paper's order; not reproduced at this scale: significant "
        "in the opposite order; equivalent within ±M: not significant, and the equivalence test (TOST: two "
        "one-sided t-tests against the metric's margin M, each at half the test's level) rejects, i.e. the "
        "interval lies inside ±M; not significant: neither, which does not mean comparable; mixed: the metrics "
        "disagree. No verdict: zero spread: every per-seed difference is the same (or every run of both arms), "
        "so there is no t-test. Inconclusive: ARM did not learn: its held-out ppl is 0.8x the unigram ppl or "
        "more (the learning gate), so the claim says nothing about pretraining. (MLM proxy): the verdict rests "
        "on the MLM figure alone: SST-2 unchecked (no random-init control ran) or excluded (an arm does not beat "
        "the control). A difference "
        "smaller than the 'resolves' figure (the interval's half-width) cannot be told from noise with these runs.")


def runs_section(results):
    """Failed runs, every run's per-seed figures (each value a verdict tests, so that any verdict can be
    recomputed from this table), and every command."""
    lines = []
    failed = [r for r in results["runs"] if r.get("status") == "failed"]
    if failed:
        lines += ["## Failed runs", ""] + [f"- **FAILED** {r['arm']} seed {r['seed']}: {r['error']} (log kept in "
                                           f"`{r['folder']}`). Rerun: `{r['rerun']}`" for r in failed] + [""]
    unigram = results.get("arm_baselines") or {}
    texts = sorted({k for r in results["runs"] for k in (r.get("heldout") or {}).get("texts", {})} - {"english"})
    tasks = [t for t in downstream_tasks() if any("accuracy" in r.get("glue", {}).get(t, {}) for r in results["runs"])]
    head = ["arm", "seed", "status", "held-out loss [se]", "ppl ÷ unigram ppl", "masked acc. %", "bits/byte"] + \
        [f"bits/byte, {k.replace('_', '-')}" for k in texts] + [f"{t.upper()} acc. %" for t in tasks] + \
        ["tokens seen", "epochs", "seconds"]
    lines += ["## Runs", "", "Every run's own figures: the values the verdicts test (a paired test pairs the rows "
              "of one seed), printed to enough digits to recompute each test and its p from this table.", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["runs"]:
        h = r.get("heldout") or {}
        cells = [r["arm"], str(r["seed"]), str(r.get("status"))]
        if h:
            ratio = math.exp(h["loss"] - unigram[r["arm"]]) if unigram.get(r["arm"]) is not None else None
            cells += [f"{h['loss']:.5f} [{h['loss_se']:.4f}]", "-" if ratio is None else f"{ratio:.3f}",
                      f"{h['accuracy']:.2f}", f"{h['bits_per_byte']:.5f}"]
            cells += [f"{h['texts'][k]['bits_per_byte']:.5f}" if k in h.get("texts", {}) else "-" for k in texts]
        else:
            cells += ["-"] * (4 + len(texts))
        cells += [f"{r['glue'][t]['accuracy']:.3f}" if "accuracy" in r.get("glue", {}).get(t, {}) else "-"
                  for t in tasks]
        seen = f"{r['tokens_seen']:,}" if r.get("tokens_seen") else "-"  # real tokens of every update, no padding
        lines.append("| " + " | ".join(cells + [seen, str(r.get("epochs", "-")), str(r.get("seconds", "-"))]) + " |")
    return lines + ["", "## Commands", "", "Preparation:", "", "```"] + results["preparation"] + [
        "```", "", "Each run (rerun any one by hand; add --resume to continue one that was interrupted):", "", "```"
    ] + [r["command"] for r in results["runs"]] + ["```", ""]


def short_test(t):
    """One test in a table cell: difference [interval at the test's level], p (Holm-adjusted p)."""
    d = 1 if t["metric"] == "sst2" else 3
    name = METRICS[t["metric"]][0]
    if t.get("p") is None or t["se"] == 0:
        return f"{name} {t['difference']:+.{d}f} in every seed alike"
    return (f"{name} {t['difference']:+.{d}f} [{t['low']:+.{d}f}, {t['high']:+.{d}f}], p = {t['p']:.2g} "
            f"(Holm {t.get('adjusted_p', t['p']):.2g})" + ("" if t.get("counted", True) else " not counted"))


def summary(names, out):
    """One markdown table of every claim's verdict in OUT/<name>/results.json: BENCHMARKS.md's, from the runs."""
    lines = ["| experiment | claim | verdict | difference in the claim's favour [interval at the level tested], p "
             "(Holm-adjusted p) (test) | runs |", "|---|---|---|---|---|"]
    for name in names:
        results = files.read_json(os.path.join(out, name, "results.json"), missing=True)
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


