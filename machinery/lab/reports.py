"""experiments.py's results: each claim's verdict (`measure`, `decide`: one test and its word; `judge`: Holm, the
learning gate, SST-2 past the control), report.md and the suite's summary. The rules: METHOD, stated once.
"""
import math
import os
import statistics

import experiments
from machinery.basics import files
from machinery.lab import runner, stats

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
CONTROL = "random-init"          # finetuned from random weights: SST-2 counts only where the pretrained arms beat it
LEARNED_BELOW = 0.8              # an arm learned: its held-out ppl under 0.8 x the unigram baseline's
QUICK = "no verdict: a --quick run cannot answer the question"
METHOD = "../../docs/experiments/README.md"  # from OUT/<name>/report.md and docs/experiments/<name>.md alike
TASKS = [task for task, _, _ in experiments.GLUE_TASKS]  # the downstream metrics


def stat(pairs):
    """A metric over an arm's finished runs: mean, sample sd, n, and each value with its seed (for the tests)."""
    values = [v for _, v in sorted(pairs)]
    return {"mean": statistics.fmean(values) if values else None, "n": len(values),
            "sd": None if not values else statistics.stdev(values) if len(values) > 1 else 0.0,
            "seeds": [s for s, _ in sorted(pairs)], "values": values}


def arm_summary(records, arm):
    finished = [r for r in records if r["arm"] == arm.name and r.get("status") == "finished"]
    scored = [r for r in finished if r.get("heldout")]  # a random-init control has SST-2 but no MLM figures
    out = {"arm": arm.name, "finished": len(finished),
           "failed": sum(r["arm"] == arm.name and r.get("status") == "failed" for r in records)}
    for key in ("loss", "loss_se", "accuracy", "accuracy_se", "bits_per_byte"):
        out[key] = stat([(r["seed"], r["heldout"][key]) for r in scored])
    for key in sorted({k for r in scored for k in r["heldout"].get("texts", {})}):
        for name, figure in ((f"bpb_{key}", "bits_per_byte"), (f"bpb_{key}_uniform", "uniform_bits_per_byte")):
            out[name] = stat([(r["seed"], r["heldout"]["texts"][key][figure]) for r in scored  # uniform: the gate
                              if figure in r["heldout"].get("texts", {}).get(key, {})])
    for task in TASKS:
        scores = [(r["seed"], r["glue"][task]["accuracy"]) for r in finished
                  if "accuracy" in r.get("glue", {}).get(task, {})]
        if scores:
            out[task] = stat(scores)
    return out


def measure(better, worse, key="loss"):
    """One metric of a claim (`better` beats `worse`), before any level is set: the paired t-test when both arms
    finished the same seeds, else Welch's; difference > 0 is the claim's direction. No test: "no verdict: ..."."""
    b, w = better.get(key), worse.get(key)
    if not b or not w or b["n"] == 0 or w["n"] == 0:
        return {"metric": key, "verdict": "no verdict: an arm has no finished run"}
    if b["n"] < 2 or w["n"] < 2:
        return {"metric": key, "verdict": "no verdict: one seed per arm gives no spread (use --seeds 3)"}
    same = b.get("seeds") is not None and b["seeds"] == w.get("seeds")
    first, second = (b["values"], w["values"]) if METRICS[key][1] else (w["values"], b["values"])
    test = {"metric": key, **stats.compare(first, second, paired_runs=same)}
    if test["zero_spread"]:  # every paired difference alike (or every run): no t-test, no verdict
        test["verdict"] = "no verdict: zero spread"
    return test


def decide(test, level, adjusted=None):
    """A measured test's word at the level it was held to (Holm's, `level`), with its interval at 1 - level."""
    if test.get("p") is None:
        return test
    _, _, margin, unit = METRICS[test["metric"]]
    t = {**stats.interval(test, 1 - level), "alpha": level, "adjusted_p": test["p"] if adjusted is None else adjusted,
         "tost_p": None if margin is None else stats.tost(test, margin)}  # no margin: no equivalence test
    if t["p"] < level:
        t["verdict"] = "reproduced" if t["difference"] > 0 else "not reproduced at this scale"
    else:
        t["verdict"] = f"equivalent within ±{margin:g}{unit}" if t["tost_p"] is not None and t["tost_p"] < level / 2 \
            else "not significant"
    return t


def verdict(better, worse, key="loss", alpha=ALPHA):
    """One metric's test of a claim on its own (a family of one test, at `alpha`)."""
    return decide(measure(better, worse, key), alpha)


def combined(tests):
    """A claim's word from its counted metrics' words: no verdict if any has none; mixed; one order; all
    equivalent; else not significant."""
    words = [t["verdict"] for t in tests] or ["no verdict: an arm has no finished run"]
    missing = [w for w in words if w.startswith("no verdict")]
    signed = sorted({"reproduced", "not reproduced at this scale"} & set(words))
    if missing or len(signed) == 1:
        return (missing or signed)[0]
    if signed:
        return "mixed: the metrics disagree"
    if all(w.startswith("equivalent within ") for w in words):
        return "equivalent within " + " and ".join(dict.fromkeys(w[len("equivalent within "):] for w in words))
    return "not significant"


def learning_ratios(arms, unigram):
    """Each arm's held-out ppl over the unigram baseline's on the same masked tokens (`unigram`: arm -> its loss
    there): exp(loss - unigram loss). An arm above LEARNED_BELOW did not learn."""
    unigram = unigram or {}
    return {a["arm"]: math.exp(a["loss"]["mean"] - unigram[a["arm"]]) for a in arms
            if a["arm"] != CONTROL and a["loss"]["n"] and unigram.get(a["arm"]) is not None}


def seed_gate(arm, metric, unigram):
    """The learning gate (METHOD), per seed and per metric: each run of `arm` that fails it, with its figure
    (`unigram`: the unigram loss on its masks; bits per byte of other texts: against a uniform guess's)."""
    fails, u = [], unigram.get(arm["arm"])
    if arm["loss"]["n"] and u is not None:
        ratios = [(s, math.exp(v - u)) for s, v in zip(arm["loss"]["seeds"], arm["loss"]["values"])]
        fails += [f"seed {s}: {r:.2f}x the unigram ppl" for s, r in ratios if r >= LEARNED_BELOW]
    guess = arm.get(f"{metric}_uniform", {})
    uniform = dict(zip(guess.get("seeds", []), guess.get("values", [])))
    if uniform and arm.get(metric):
        fails += [f"seed {s}: {v:.2f} bits/byte, a uniform guess {uniform[s]:.2f}"
                  for s, v in zip(arm[metric]["seeds"], arm[metric]["values"]) if s in uniform and v >= uniform[s]]
    return fails


def judge(exp, arms, unigram=None, quick=False):
    """Every claim's verdict on its metrics (the experiment's MLM figure or the claim's own, and SST-2 when
    finetuned): every test, the control's too, one Holm family at ALPHA; then each claim's word (`finish`)."""
    by_name = {a["arm"]: a for a in arms}
    entries = []
    carried = [experiments.Claim(a.name, a.beats, a.says or f"{a.name} beats {a.beats}") for a in exp.arms if a.beats]
    for claim in exp.claims + carried:  # and the claims its arms carry (Arm(..., beats="rate-15", says="..."))
        if claim.better not in by_name or claim.worse not in by_name:
            continue  # an arm not run here: the claim is the baseline report's
        better, worse = by_name[claim.better], by_name[claim.worse]
        keys = [claim.metric] if claim.metric else \
            [exp.metric] + [task for task in TASKS if task in better and task in worse]
        entries.append({"better": claim.better, "worse": claim.worse, "says": claim.says, "source": claim.source,
                        "tests": [measure(better, worse, key) for key in keys],
                        "proxy": bool(exp.downstream and not claim.metric),
                        "gate": {a["arm"]: seed_gate(a, keys[0], unigram or {}) for a in (better, worse)}})
    pairs = dict.fromkeys((arm, t["metric"]) for e in entries for t in e["tests"] for arm in (e["better"], e["worse"])
                          if t["metric"] in TASKS)  # each pretrained arm's SST-2 against the control's, if it ran
    controls = [{**measure(by_name[arm], by_name[CONTROL], task), "arm": arm} for arm, task in pairs
                if CONTROL in by_name]
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


def finish(entry, ratios, controls, control_ran, quick):
    """A claim's word: none without runs, or from a --quick run; inconclusive when an arm did not learn; else
    `combined` over the metrics that count, "(MLM proxy)" when SST-2 did not count or was not measured."""
    arms = (entry["better"], entry["worse"])
    beaten = {(c["arm"], c["metric"]) for c in controls if c.get("verdict") == "reproduced"}
    for t in entry["tests"]:
        t["counted"] = t["metric"] not in TASKS or all((a, t["metric"]) in beaten for a in arms)
    downstream = [t for t in entry["tests"] if t["metric"] in TASKS]
    losers = [a for a in arms if not all((a, t["metric"]) in beaten for t in downstream)]
    entry["downstream"] = "" if not downstream else "counted" if not losers else \
        "unchecked: no random-init control ran" if not control_ran else \
        f"excluded: {' and '.join(losers)} {'does' if len(losers) == 1 else 'do'} not beat the random-init control " \
        "significantly"
    entry["ratios"] = {a: ratios.get(a) for a in arms}
    entry["controls"] = [c for c in controls if c["arm"] in arms]
    base = combined([t for t in entry["tests"] if t["counted"]])
    beyond = {"reproduced": "consistent with", "not reproduced at this scale": "contrary to"}
    if entry["source"] and base in beyond:  # a claim beyond the paper (e.g. Wettig et al.) is never "reproduced"
        base = f"{beyond[base]} {entry['source']}"
    not_learned = [f"{a} did not learn ({'; '.join(entry['gate'][a])})" for a in arms if entry["gate"].get(a)]
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
    return entry


def overall(verdicts):
    """The experiment's verdict: how many claims got each word."""
    words = [v["verdict"] for v in verdicts]
    if not words:
        return "none: no claim has both its arms here (compare with the baseline report)"
    if len(set(words)) == 1 and words[0].startswith("no verdict"):
        return words[0]
    return ", ".join(f"{words.count(w)} {w}" for w in dict.fromkeys(words)) + f" (of {len(words)} findings)"


# ---------------------------------------------------------------------------------------- report
def fmt(stat, digits):
    """mean ± sd over seeds ("-" without a run; the value alone from one)."""
    if not stat or stat["n"] == 0:
        return "-"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['sd']:.{digits}f}" if stat["n"] > 1 else "")


def arm_cells(summary, glue, ratio=None):
    """Our columns for one arm: loss, ppl, ppl / the unigram's, accuracy, bits/byte (+ GLUE), seeds."""
    if summary["loss"]["n"] == 0:
        cells = ["-"] * 5
    else:
        loss, se, bpb = summary["loss"]["mean"], summary["loss_se"]["mean"], summary["bits_per_byte"]["mean"]
        gate = "-" if ratio is None else f"{ratio:.2f}" + (" (did not learn)" if ratio >= LEARNED_BELOW else "")
        cells = [f"{fmt(summary['loss'], 3)} [{se:.3f}]", f"{math.exp(loss):.1f} [{math.exp(loss) * se:.1f}]", gate,
                 f"{fmt(summary['accuracy'], 1)} [{summary['accuracy_se']['mean']:.1f}]",
                 f"{fmt(summary['bits_per_byte'], 3)} [{bpb * se / loss:.3f}]"]
    if glue:
        cells += [fmt(summary.get(task), 1) for task, _, _ in experiments.GLUE_TASKS]
    status = f"{summary['finished']}" + (f" (+{summary['failed']} failed)" if summary["failed"] else "")
    return cells + [status]


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
            run, extra = first_run[arm], results.get("train_args")  # what sets the arm apart, as train.py flags
            flags = [f"--data {run.data}"] * bool(run.arm.data) + [runner.flag(key, run.options[key])
                                                                   for key in (*run.arm.options, *run.fitted)]
            settings = " ".join(flags + [extra] * bool(extra)) or "(the base)"
            cells = [label, *values, settings] + arm_cells(arms[arm], glue, ratios.get(arm))
        lines.append("| " + " | ".join(cells) + " |")
    if b := results.get("baselines"):  # arms scored on inputs of their own have their own unigram baseline
        own = {arm: loss for arm, loss in (results.get("arm_baselines") or {}).items()
               if abs(loss - b["unigram_loss"]) > 1e-9}
        lines += ["", f"**Baselines on the same masks**: the unigram distribution of the training tokens, held-out "
                      f"loss {b['unigram_loss']:.3f} (ppl {math.exp(b['unigram_loss']):.1f}); always guessing "
                      f"{b['most_frequent']!r}, accuracy {b['most_frequent_accuracy']:.1f}%."
                  + (" Arms scored on inputs of their own, their unigram loss there: "
                     + ", ".join(f"{arm} {loss:.3f}" for arm, loss in own.items()) + "." if own else "")]
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
    return lines + [""]


def report(exp, results, runs, base):
    """report.md: the table of arms, one line per verdict, every run and its command (the legend: METHOD)."""
    note = [f"*{exp.note}*", ""] if exp.note else []
    return "\n".join(header(exp, results) + table(exp, results, runs) + [""] + setup(exp, results, runs, base)
                     + text_table(results) + note + verdict_lines(results) + runs_section(results))


def header(exp, results):
    """The title, the question, and what the reader must know first: a --quick run, a variant, mixed code."""
    lines = [f"# {exp.name}: {exp.paper.source if exp.paper else 'beyond the paper'}", ""]
    if results["scale"] == "quick":
        lines += ["**A --quick run: it cannot answer the question.** Its models train for seconds on a tiny corpus; "
                  "this report checks that the code runs, and gives no verdicts (run without --quick for them).", ""]
    if results.get("variant"):
        baseline = f"python experiments.py {exp.name}" + (" --quick" if results["scale"] == "quick" else "")
        lines += [f"**A variant of the `{exp.name}` experiment**: `{results['invocation']}`: what do its options, "
                  f"and any edit to the code made for it, change? Compare each row with the same row of the baseline "
                  f"report, `{os.path.join(experiments.DEFAULT_OUT, exp.name, 'report.md')}` (made by `{baseline}`).", ""]
    lines += [f"**Question.** {exp.question}", ""]
    if results.get("not_run"):
        lines += [f"Arms not run here: {', '.join(results['not_run'])} (see the baseline report).", ""]
    if len(results.get("codes", [])) > 1:
        by_code = {c: sorted({f"{r['arm']} seed {r['seed']}" for r in results["runs"]
                              if (r.get("code") or "not recorded") == c}) for c in results["codes"]}
        lines += ["**Mixed code.** These runs ran with different versions of the code: " + "; ".join(
            f"{c}: {', '.join(runs)}" for c, runs in by_code.items()) + f". The code now is {results['code']}: rerun "
                  f"the command (`{results['invocation']}`, without --arms) to train runs of other code again.", ""]
    elif results.get("codes") and results["code"] not in results["codes"]:
        lines += [f"**Code.** The runs ran with code {results['codes'][0]}; this report was made from them by code "
                  f"{results['code']} (`--report-only`, which trains nothing).", ""]
    return lines


def setup(exp, results, runs, base):
    """The paper's setting and ours: train.py's options, the data, what every run is scored on."""
    paper = [f"**The paper** ({exp.paper.source}): {exp.paper.caption}", ""] if exp.paper else []
    sizes = "; ".join(f"{name}: {d['tokens']:,} tokens in {d['documents']:,} documents"
                      for name, d in results["data"].items())
    targets = {r["heldout"]["targets"] for r in results["runs"] if r.get("status") == "finished" and r.get("heldout")}
    scored = f"the same {results['heldout_targets']:,} masked held-out tokens (15%, fixed masks, `{runs[0].heldout}`)" \
        if len(targets) <= 1 and len({r.heldout for r in runs}) == 1 else \
        "the same held-out documents, cut into tokens by each arm's own tokenizer (15% masked, one fixed seed)"
    return paper + [
        f"**Ours** ({results['scale']} scale, {results['seeds']} seed{'s' if results['seeds'] != 1 else ''} per arm): "
        f"`train.py {' '.join(runner.flag(k, v) for k, v in base.items())}` and each arm's options, on the "
        f"{exp.data} data unless an arm says otherwise (training data, {sizes}; the runs ran with code "
        f"{', '.join(results.get('codes') or ['none'])}, their data was prepared by code "
        f"{', '.join(results.get('data_codes') or ['not recorded'])}); every run scored on {scored}. "
        f"The method, the verdict rules and the legend: [docs/experiments/README.md]({METHOD}).", ""]


def measured(t, better, worse, cell=False):
    """One metric's test in the direction measured: the arm that did better, by how much, the interval at the
    level it was held to, the test, p and Holm's p (in a table `cell`: the arm, the gap and the interval)."""
    name, _, _, unit = METRICS[t["metric"]]
    digits, sign = (1 if t["metric"] == "sst2" else 3 if cell else 4), (1 if t["difference"] >= 0 else -1)
    text = f"{name}: {better if sign > 0 else worse} better by {abs(t['difference']):.{digits}f}{unit}"
    if t.get("p") is None:  # e.g. SST-2 at chance: every run predicts one label, the same accuracy in every seed
        same = f"{name}: {better} and {worse} the same" if abs(t["difference"]) < 0.5 * 10 ** -digits else text
        return same + " in every seed (zero spread, no t-test)"
    low, high = sorted((sign * t["low"], sign * t["high"]))
    interval = f"[{low:+.{digits}f}, {high:+.{digits}f}]" if cell else \
        f"({100 * (1 - t['alpha']):.4g}% CI {low:+.{digits}f} to {high:+.{digits}f}; {t['test']}, p = {t['p']:.2g}, " \
        f"Holm p = {t['adjusted_p']:.2g})"
    return f"{text} {interval}" + ("" if t.get("counted", True) else " [not counted]")


def verdict_lines(results):
    """The experiment's verdict, one line per claim, the arms against the random-init control, the time."""
    lines = ["## Verdicts", "", f"**Verdict: {results['verdict']}.**", ""]
    for v in results["verdicts"]:
        tests = [measured(t, v["better"], v["worse"]) for t in v.get("tests", []) if "difference" in t]
        lines.append(f"- *{v['better']} beats {v['worse']}* ({v['says']}): " + "; ".join(tests)
                     + f" → **{v['verdict']}**.")
    controls = {(c["arm"], c["metric"]): c for v in results["verdicts"] for c in v.get("controls", [])}
    if controls:
        lines += ["", f"**Downstream check** (SST-2 counts in a claim only where both its arms beat `{CONTROL}`): "
                  + "; ".join(f"{arm} against it, " + measured(c, arm, CONTROL)
                              + (": beats it" if c.get("verdict") == "reproduced" else "")
                              for (arm, _), c in controls.items()) + "."]
    elif any(v.get("downstream", "").startswith("unchecked") for v in results["verdicts"]):
        lines += ["", f"**Downstream check**: no `{CONTROL}` control ran, so SST-2 is shown, not counted."]
    return lines + ["", f"Time: {results['run_seconds'] / 60:.1f} min of runs in all (each run's training and "
                        f"evaluation, added up); this invocation took {results['wall_seconds'] / 60:.1f} min.", ""]


def runs_section(results):
    """Failed runs, every run's figures (each value a verdict tests: any verdict recomputes), every command."""
    failed = [f"- **FAILED** {r['arm']} seed {r['seed']}: {r['error']} (log kept in `{r['folder']}`). Rerun: "
              f"`{r['rerun']}`" for r in results["runs"] if r.get("status") == "failed"]
    lines = ["## Failed runs", ""] + failed + [""] if failed else []
    unigram = results.get("arm_baselines") or {}
    texts = sorted({k for r in results["runs"] for k in (r.get("heldout") or {}).get("texts", {})} - {"english"})
    tasks = [t for t in TASKS if any("accuracy" in r.get("glue", {}).get(t, {}) for r in results["runs"])]
    head = ["arm", "seed", "status", "held-out loss [se]", "ppl ÷ unigram ppl", "masked acc. %", "bits/byte"] + \
        [f"bits/byte, {k.replace('_', '-')}" for k in texts] + [f"{t.upper()} acc. %" for t in tasks] + \
        ["tokens seen", "epochs", "seconds"]
    lines += ["## Runs", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
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
        "```", "", "Each run:", "", "```"] + [r["command"] for r in results["runs"]] + ["```", ""]


# ---------------------------------------------------------------------------------------- the suite
def model_of(run):
    """Which model a run is: runs of one seed and held-out loss to the last digit, on as many masked tokens, are
    one model trained twice (full-sentences, byte-level and rate-15 are); without MLM figures, its command."""
    h = run.get("heldout") or {}
    return (run["seed"], h["loss"], h.get("targets")) if "loss" in h else run["command"]


def suite_holm(found):
    """Holm over the whole suite ({name: results}): one test per distinct comparison (a metric and the two arms'
    models), so that a test repeated by experiments sharing a model counts once. {id(test): (comparison, Holm)}."""
    keyed = []
    for res in found.values():
        model = {arm: frozenset(model_of(r) for r in res["runs"] if r["arm"] == arm and r.get("status") == "finished")
                 for arm in {r["arm"] for r in res["runs"]}}
        for v in res["verdicts"]:
            keyed += [((t["metric"], model.get(v["better"]), model.get(v["worse"])), t) for t in v["tests"]]
            keyed += [((c["metric"], model.get(c["arm"]), model.get(CONTROL)), c) for c in v.get("controls", [])]
    family = {k: t["p"] for k, t in keyed if t.get("p") is not None}
    holm = dict(zip(family, stats.holm(list(family.values()), ALPHA)))
    return {id(t): (k, holm.get(k)) for k, t in keyed}


def summary(names, out):
    """BENCHMARKS.md's tables from OUT/<name>/results.json: every arm (arms_table); every claim, each metric as
    measured, p, Holm in its experiment and over the whole suite; how many distinct pretrained models beat the
    control."""
    found = {name: r for name in names if (r := files.read_json(os.path.join(out, name, "results.json"), missing=True))}
    if not found:
        return f"no results.json under {out}/: run an experiment first"
    suite = suite_holm(found)
    lines = arms_table(found) + ["", "| experiment | claim | as measured [interval at the level tested] | p | "
                                 "Holm p: experiment | Holm p: suite | verdict |", "|---|---|---|---|---|---|---|"]
    for name, res in found.items():
        for v in res["verdicts"]:
            cells = [(measured(t, v["better"], v["worse"], cell=True), p_text(t.get("p")), p_text(t.get("p") and t["adjusted_p"]),
                      p_text((suite[id(t)][1] or {}).get("adjusted"))) for t in v["tests"] if "difference" in t]
            columns = ["; ".join(column) for column in zip(*cells)] or ["-"] * 4
            lines.append(f"| `{name}` | {v['better']} beats {v['worse']} | {' | '.join(columns)} | **{v['verdict']}** |")
    controls = {suite[id(c)][0]: (c, suite[id(c)][1]) for res in found.values() for v in res["verdicts"]
                for c in v.get("controls", []) if c.get("p") is not None}  # one per distinct model
    if controls:
        alone = sum(c["difference"] > 0 and c["p"] < ALPHA for c, _ in controls.values())
        held = sum(c["difference"] > 0 and h["adjusted"] < ALPHA for c, h in controls.values())
        lines += ["", f"Against the `{CONTROL}` control on SST-2: {alone} of {len(controls)} distinct pretrained models "
                      f"beat it at p < {ALPHA:g}, {held} after Holm over the suite's {len({k for k, h in suite.values() if h})} "
                      f"distinct tests (a model shared between experiments, the same runs, counted once)."]
    return "\n".join(lines)


def arms_table(found):
    """Each experiment's pretrained arms: the figure its verdicts test, mean ± sd over seeds; its worst seed's
    held-out ppl over the unigram's (the learning gate); the real tokens a run trained on (mean); the wall time."""
    lines = ["| experiment | arm | tested figure, mean ± sd | worst seed: ppl ÷ unigram ppl | real tokens | "
             "wall time |", "|---|---|---|---|---|---|"]
    for name, res in found.items():
        metric = next(e.metric for e in experiments.EXPERIMENTS if e.name == name)
        unigram, wall = res.get("arm_baselines") or {}, f"{res['wall_seconds'] / 60:.1f} min"
        for arm in [a for a in res["arms"] if a["loss"]["n"]]:  # the control has no MLM figures
            worst = max(arm["loss"]["values"])
            ratio = f"{math.exp(worst - unigram[arm['arm']]):.2f}x" if arm["arm"] in unigram else "-"
            tokens = [r["tokens_seen"] for r in res["runs"] if r["arm"] == arm["arm"] and r.get("tokens_seen")]
            tokens = f"{statistics.fmean(tokens) / 1e6:.3f}M" if tokens else "-"
            figure = fmt(arm[metric], 3) + METRICS[metric][3]
            lines.append(f"| `{name}` | {arm['arm']} | {figure} | {ratio} | {tokens} | {wall} |")
            wall = ""
    return lines


def p_text(p):
    return "-" if p is None else f"{p:.2g}"


def plot(exp, results, path):
    """Held-out loss curves, each arm's mean over seeds; only when matplotlib is installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in exp.arms:
        curves = [r["curve"] for r in results["runs"] if r["arm"] == arm.name and r.get("curve")]
        if curves:
            n = min(len(c) for c in curves)
            ax.plot([c[1] for c in curves[0][:n]], [statistics.fmean(c[k][2] for c in curves) for k in range(n)],
                    label=arm.name, marker=".")
    ax.set(xlabel="tokens seen (sequences x length)", ylabel="held-out loss (the run's own masking)",
           title=f"{exp.name}: training curves")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


