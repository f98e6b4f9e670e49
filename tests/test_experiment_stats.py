"""The experiments' statistics (machinery/lab/stats.py, reports.judge): Holm over every test of an experiment,
intervals at the level tested, equivalence by TOST, no verdict from zero spread, the learning gate, SST-2
only past a random-init control, every per-seed value in the report, and no verdict words from --quick.
Pure Python on made-up seeds' values: no training."""
import json
import math
import os
import re

import pytest

from conftest import ROOT
import experiments
from experiments import Arm, Claim, Experiment
from machinery.lab import reports, runner, stats

SIGNIFICANT = ("reproduced", "not reproduced at this scale")


def arm(name, loss=(), sst2=(), seeds=None):
    """An arm's summary as reports.arm_summary makes it: loss (and SST-2 accuracy) per seed."""
    out = {"arm": name, "loss": reports.stat(list(zip(seeds or range(len(loss)), loss)))}
    if sst2:
        out["sst2"] = reports.stat(list(zip(seeds or range(len(sst2)), sst2)))
    return out


# ---------------------------------------------------------------- Holm
def test_holm_adjusted_p_and_levels_by_hand():
    """m = 4: sorted 0.005, 0.01, 0.03, 0.04 are held to 5%/4, 5%/3, 5%/2, 5%/1; 0.03 fails its 0.025, so it and
    0.04 fail (0.04 < 5% alone). Adjusted: 4 x 0.005, 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)."""
    p = [0.01, 0.04, 0.03, 0.005]
    out = stats.holm(p, 0.05)
    assert [o["rank"] for o in out] == [2, 4, 3, 1]
    assert [o["adjusted"] for o in out] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [o["level"] for o in out] == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])
    for pi, o in zip(p, out):  # rejected exactly when the adjusted p is below 5%, and when p is below its level
        assert (o["adjusted"] < 0.05) == (pi < o["level"])
    assert [o["adjusted"] < 0.05 for o in out] == [True, False, False, True]
    assert stats.holm([0.9, 0.001], 0.05)[0]["adjusted"] == 0.9 and stats.holm([], 0.05) == []


def test_holm_runs_across_every_claim_of_an_experiment():
    """Three claims, one metric each: one family of 3. a-c's p = 0.034 is below 5% on its own but fails
    Holm's 2.5% at rank 2, and its interval, printed at 97.5%, holds 0 (the 95% one would not)."""
    exp = Experiment("three", "?", arms=[Arm(n) for n in "abcd"],
                     claims=[Claim("a", "b", "."), Claim("a", "c", "."), Claim("a", "d", ".")])
    values = {"a": [4.00, 4.03, 3.98], "b": [4.06, 4.08, 4.05], "c": [4.05, 4.06, 4.04], "d": [4.02, 4.03, 4.03]}
    verdicts = reports.judge(exp, [arm(n, v) for n, v in values.items()])
    raw = [stats.compare(values["a"], values[w], paired_runs=True)["p"] for w in "bcd"]
    assert raw[0] < raw[1] < 0.05 < raw[2]
    tests = [v["tests"][0] for v in verdicts]
    assert [t["p"] for t in tests] == pytest.approx(raw)
    assert [t["adjusted_p"] for t in tests] == pytest.approx([3 * raw[0], 2 * raw[1], max(2 * raw[1], raw[2])])
    assert [t["alpha"] for t in tests] == pytest.approx([0.05 / 3, 0.025, 0.025])
    assert {t["family"] for t in tests} == {3}
    assert [v["verdict"] for v in verdicts] == ["reproduced", "not significant", "not significant"]
    assert tests[1]["low"] < 0 < stats.compare(values["a"], values["c"], paired_runs=True)["low"]


# ---------------------------------------------------------------- intervals at the level tested
def test_every_interval_is_at_the_level_its_test_was_held_to():
    exp = Experiment("two", "?", arms=[Arm("a"), Arm("b"), Arm("c")],
                     claims=[Claim("a", "b", "."), Claim("b", "c", "."), Claim("a", "c", ".")])
    arms = [arm("a", [4.00, 4.03, 3.98, 4.01], [81.0, 82.5, 80.0, 81.2]),
            arm("b", [4.04, 4.08, 4.01, 4.03], [80.0, 81.0, 80.5, 79.9]),
            arm("c", [4.30, 4.35, 4.28, 4.33], [70.0, 72.0, 71.0, 69.0])]
    tests = [t for v in reports.judge(exp, arms) for t in v["tests"]]
    assert len(tests) == 6 and {t["family"] for t in tests} == {6}
    for t in tests:
        assert t["level"] == pytest.approx(1 - t["alpha"])
        assert t["high"] - t["difference"] == pytest.approx(stats.t_quantile(t["df"], t["alpha"]) * t["se"])
        significant = t["verdict"] in SIGNIFICANT
        assert (t["low"] > 0 or t["high"] < 0) == significant == (t["adjusted_p"] < 0.05) == (t["p"] < t["alpha"])
    assert any(t["verdict"] in SIGNIFICANT for t in tests) and any(t["verdict"] not in SIGNIFICANT for t in tests)


def test_interval_level_matches_a_textbook_quantile():
    """A family of one at 5%: the 95% interval, t(0.975, 2 df) = 4.3027."""
    v = reports.verdict(arm("a", [4.00, 4.02, 3.99]), arm("b", [4.10, 4.11, 4.09]))
    assert v["alpha"] == 0.05 and v["level"] == 0.95
    assert v["high"] - v["difference"] == pytest.approx(4.302653 * v["se"], rel=1e-6)


# ---------------------------------------------------------------- equivalence (TOST)
def test_tost_against_a_known_case():
    """Difference 0, se 1, 4 df: the one-sided 5% point of t(4) is 2.131847, so a margin of 2.131847 gives
    TOST p = 0.05; a difference of 0.5 with margin 2.631847 leaves the upper one-sided test at that point."""
    assert stats.tost({"difference": 0.0, "se": 1.0, "df": 4}, 2.131847) == pytest.approx(0.05, abs=1e-6)
    assert stats.tost({"difference": 0.5, "se": 1.0, "df": 4}, 2.631847) == pytest.approx(0.05, abs=1e-6)
    assert stats.tost({"difference": 0.5, "se": 1.0, "df": 4}, 0.1) > 0.5  # outside the margin: no equivalence
    assert stats.t_one_sided_p(2.131847, 4) == pytest.approx(0.05, abs=1e-6)
    assert stats.t_one_sided_p(-2.131847, 4) == pytest.approx(0.95, abs=1e-6)


def test_tost_against_scipy():
    t_dist = pytest.importorskip("scipy.stats").t
    for d, se, df, margin in ((0.003, 0.002, 4, 0.01), (-0.02, 0.01, 2.7, 0.05), (0.0, 0.5, 9, 0.4)):
        expected = max(t_dist.sf((d + margin) / se, df), t_dist.cdf((d - margin) / se, df))
        assert stats.tost({"difference": d, "se": se, "df": df}, margin) == pytest.approx(expected, rel=1e-9)


def test_equivalent_only_when_tost_rejects_at_the_level():
    """Two arms within a tenth of the loss margin M, seed by seed: not different, and the interval lies inside
    ±M (TOST rejects at half the level): equivalent. The same mean gap with a wide spread: only not
    significant, never comparable. A metric declared without a margin (non-English text) has no TOST."""
    m = reports.METRICS["loss"][2]
    base = [4.000, 4.010, 4.020, 3.990, 4.005]
    close = reports.verdict(arm("a", base), arm("b", [x + m * e for x, e in zip(base, [0.1, -0.1, 0.2, 0, -0.2])]))
    assert close["verdict"] == f"equivalent within ±{m:g} nats" and close["p"] >= 0.05
    assert close["tost_p"] < 0.025 and -m < close["low"] and close["high"] < m
    wide = reports.verdict(arm("a", base), arm("b", [x + m * e for x, e in zip(base, [3, -3, 2, -2, 0])]))
    assert wide["verdict"] == "not significant" and wide["tost_p"] >= 0.025 and wide["low"] < -m
    assert reports.combined([close, close]) == f"equivalent within ±{m:g} nats"
    assert reports.combined([close, wide]) == "not significant"
    a, b = ({"arm": n, "bpb_non_english": reports.stat(list(enumerate(v)))} for n, v in
            (("a", [9.0, 9.1, 9.2]), ("b", [9.0, 9.1, 9.2 + 1e-4])))
    none = reports.verdict(a, b, "bpb_non_english")
    assert reports.METRICS["bpb_non_english"][2] is None and none["tost_p"] is None
    assert none["verdict"] == "not significant"  # never "equivalent" without a declared margin


# ---------------------------------------------------------------- zero spread
def test_zero_spread_gives_no_verdict():
    """Every paired difference the same (+0.1, up to rounding), or every run of both arms the same: no t-test,
    no p, never reproduced; the claim says why, and its test leaves the Holm family."""
    same = reports.verdict(arm("a", [4.00, 4.01, 3.99]), arm("b", [4.10, 4.11, 4.09]))
    assert same["verdict"] == "no verdict: zero spread" and same["p"] is None and same["test"] == "paired t-test"
    flat = reports.verdict(arm("a", [50.0, 50.0], seeds=[0, 1], sst2=[50.0, 50.0]),
                           arm("b", [49.0, 49.0], seeds=[5, 6], sst2=[49.0, 49.0]), "sst2")
    assert flat["verdict"] == "no verdict: zero spread" and flat["test"] == "Welch's t-test"
    one_flat = reports.verdict(arm("a", [4.0, 4.0, 4.0]), arm("b", [4.1, 4.2, 4.15], seeds=[4, 5, 6]))
    assert one_flat["p"] is not None  # one arm's spread is still a spread: Welch's test runs
    exp = Experiment("z", "?", arms=[Arm("a"), Arm("b"), Arm("c")], claims=[Claim("a", "b", "."), Claim("a", "c", ".")])
    v_ab, v_ac = reports.judge(exp, [arm("a", [4.00, 4.01, 3.99]), arm("b", [4.10, 4.11, 4.09]),
                                     arm("c", [4.10, 4.13, 4.08])])
    assert v_ab["verdict"] == "no verdict: zero spread"
    assert v_ac["tests"][0]["family"] == 1 and v_ac["tests"][0]["alpha"] == 0.05


# ---------------------------------------------------------------- the learning gate
def test_an_arm_that_did_not_learn_makes_its_claims_inconclusive():
    """Unigram loss 4.3 on both arms' masks: a at 4.0 (ppl 0.74 x the unigram's) learned, b at 4.1 (0.82 x)
    did not. The claim is inconclusive, however significant; without the unigram figures the gate is unchecked."""
    exp = Experiment("g", "?", arms=[Arm("a"), Arm("b")], claims=[Claim("a", "b", "."), Claim("b", "a", ".")])
    arms = [arm("a", [4.00, 4.02, 3.99]), arm("b", [4.10, 4.13, 4.09])]
    gated = reports.judge(exp, arms, unigram={"a": 4.3, "b": 4.3})
    assert [v["verdict"] for v in gated] == ["inconclusive: b did not learn (seed 0: 0.82x the unigram ppl; seed 1: "
                                             "0.84x the unigram ppl; seed 2: 0.81x the unigram ppl)"] * 2
    ratios = gated[0]["ratios"]
    assert ratios["a"] == pytest.approx(math.exp(4.003333 - 4.3)) and ratios["a"] < 0.8 < ratios["b"]
    assert gated[0]["tests"][0]["verdict"] == ""  # no metric's word outlives the gate
    assert gated[0]["tests"][0]["p"] < 0.05 and gated[0]["tests"][0]["family"] == 2  # still tested, still counted
    assert [v["verdict"] for v in reports.judge(exp, arms)] == ["reproduced", "not reproduced at this scale"]
    both = reports.judge(exp, arms, unigram={"a": 4.1, "b": 4.1})
    assert both[0]["verdict"].startswith("inconclusive: a did not learn (seed 0: 0.90x") and " and b did not" in \
        both[0]["verdict"]


def test_the_gate_holds_every_seed_not_the_mean():
    """b learns on average (mean ppl 0.74x the unigram's) but not in seed 2 (0.82x): the claim is inconclusive
    and names that seed; the mean alone would have passed it."""
    exp = Experiment("g", "?", arms=[Arm("a"), Arm("b")], claims=[Claim("a", "b", ".")])
    arms = [arm("a", [3.90, 3.92, 3.91]), arm("b", [3.95, 3.96, 4.10])]
    v = reports.judge(exp, arms, unigram={"a": 4.3, "b": 4.3})[0]
    assert v["ratios"]["b"] < 0.8 and v["verdict"] == "inconclusive: b did not learn (seed 2: 0.82x the unigram ppl)"


def test_a_text_gate_against_a_uniform_guess():
    """On non-English text each run is held to a uniform guess over its vocabulary on the same targets: an arm
    at or above it in any seed makes the claim inconclusive, though both arms learned English."""
    exp = Experiment("t", "?", arms=[Arm("a"), Arm("b")], claims=[Claim("a", "b", ".", metric="bpb_non_english")])

    def text_arm(name, bpb, uniform):
        return {**arm(name, [3.9, 3.91, 3.92]), "bpb_non_english": reports.stat(list(enumerate(bpb))),
                "bpb_non_english_uniform": reports.stat(list(enumerate(uniform)))}
    arms = [text_arm("a", [9.0, 9.2, 9.1], [12.0] * 3), text_arm("b", [11.0, 12.5, 11.2], [12.0] * 3)]
    v = reports.judge(exp, arms, unigram={"a": 4.3, "b": 4.3})[0]
    assert v["verdict"] == "inconclusive: b did not learn (seed 1: 12.50 bits/byte, a uniform guess 12.00)"
    arms[1] = text_arm("b", [11.0, 11.5, 11.2], [12.0] * 3)
    assert reports.judge(exp, arms, unigram={"a": 4.3, "b": 4.3})[0]["verdict"] == "reproduced"


def test_the_mask_rate_claims_are_declared_beyond_the_paper():
    mask_rate = next(e for e in experiments.EXPERIMENTS if e.name == "mask-rate")
    assert mask_rate.claims and all(c.source.startswith("Wettig et al.") for c in mask_rate.claims)


# ---------------------------------------------------------------- the downstream metric and its control
DOWN = Experiment("d", "?", arms=[Arm("a"), Arm("b"), Arm("random-init")], claims=[Claim("a", "b", ".")],
                  downstream=True)
LOSS = {"a": [4.00, 4.02, 3.99], "b": [4.10, 4.13, 4.09]}     # a beats b on the MLM figure


def test_sst2_unchecked_without_a_random_init_control():
    """No control ran: SST-2 is shown, not counted; the verdict rests on the MLM proxy and says so."""
    (v,) = reports.judge(DOWN, [arm("a", LOSS["a"], [70.0, 60.0, 65.0]), arm("b", LOSS["b"], [80.0, 81.0, 79.0])])
    assert v["verdict"] == "reproduced (MLM proxy)" and v["downstream"] == "unchecked: no random-init control ran"
    loss, sst2 = v["tests"]
    assert loss["counted"] and not sst2["counted"] and sst2["verdict"] == "not reproduced at this scale"
    assert reports.measured(sst2, "a", "b").endswith("[not counted]") and "not counted" not in \
        reports.measured(loss, "a", "b")
    (mlm_only,) = reports.judge(DOWN, [arm("a", LOSS["a"]), arm("b", LOSS["b"])])  # no SST-2 measured at all
    assert mlm_only["verdict"] == "reproduced (MLM proxy)"


def test_sst2_excluded_when_an_arm_does_not_beat_the_control():
    """b's SST-2 is no better than a model finetuned from random weights: SST-2 is excluded (MLM proxy)."""
    arms = [arm("a", LOSS["a"], [80.0, 82.0, 81.0]), arm("b", LOSS["b"], [71.0, 69.0, 70.5]),
            arm("random-init", sst2=[70.0, 70.5, 69.0])]
    (v,) = reports.judge(DOWN, arms)
    assert v["verdict"] == "reproduced (MLM proxy)" and not v["tests"][1]["counted"]
    assert v["downstream"].startswith("excluded: b does not beat")
    controls = {c["arm"]: c for c in v["controls"]}
    assert controls["a"]["verdict"] == "reproduced" and controls["b"]["verdict"] != "reproduced"
    assert {t["family"] for t in v["tests"] + v["controls"]} == {4}  # loss, SST-2, a vs control, b vs control


def test_sst2_counts_once_both_arms_beat_the_control():
    """Both arms beat random-init: SST-2 counts, and here it disagrees with the MLM figure (mixed)."""
    arms = [arm("a", LOSS["a"], [70.0, 71.0, 70.5]), arm("b", LOSS["b"], [80.0, 81.0, 80.2]),
            arm("random-init", sst2=[50.0, 50.9, 50.4])]
    (v,) = reports.judge(DOWN, arms)
    assert v["downstream"] == "counted" and all(t["counted"] for t in v["tests"])
    assert v["verdict"] == "mixed: the metrics disagree"
    random_init = reports.arm_summary([{"arm": "random-init", "seed": 0, "status": "finished",
                                        "glue": {"sst2": {"accuracy": 50.0}}}], Arm("random-init"))
    assert random_init["loss"]["n"] == 0 and random_init["sst2"]["values"] == [50.0]  # no MLM figures needed


# ---------------------------------------------------------------- the report: every value, no quick verdicts
def render(exp, losses, sst2=None, unigram=None, scale="classroom"):
    """report.md of made-up finished runs (loss per arm and seed, SST-2 when given; an arm without losses is
    a random-init control: SST-2 only), as command.collect makes it; (text, results)."""
    records = []
    for name, accuracies in (sst2 or {}).items():
        if name not in losses:
            records += [{"arm": name, "seed": seed, "status": "finished", "command": f"python finetune.py {name}",
                         "glue": {"sst2": {"accuracy": x}}} for seed, x in enumerate(accuracies)]
    for name, values in losses.items():
        for seed, loss in enumerate(values):
            record = {"arm": name, "seed": seed, "status": "finished", "command": f"python train.py {name} {seed}",
                      "epochs": 1, "seconds": 2.0,
                      "heldout": {"loss": loss, "loss_se": 0.04, "ppl": math.exp(loss), "accuracy": 12.3456,
                                  "accuracy_se": 0.5, "bits_per_byte": loss / 2.7, "targets": 1000,
                                  "format": "full-sentences"}}
            if sst2:
                record["glue"] = {"sst2": {"accuracy": sst2[name][seed]}}
            records.append(record)
    arms = [reports.arm_summary(records, a) for a in exp.arms]
    verdicts = reports.judge(exp, arms, unigram, quick=scale == "quick")
    results = {"experiment": exp.name, "scale": scale, "seeds": 3, "train_args": None, "data": {},
               "heldout_targets": 1000, "invocation": f"python experiments.py {exp.name}", "variant": False,
               "codes": ["c0"], "code": "c0", "not_run": [], "glue": "glue" if sst2 else None,
               "runs": records, "arms": arms, "verdicts": verdicts,
               "verdict": reports.overall(verdicts), "failed_now": 0, "wall_seconds": 60, "run_seconds": 60,
               "preparation": ["python bpe.py train"], "arm_baselines": unigram,
               "baselines": {"unigram_loss": 4.3, "most_frequent": ".", "most_frequent_accuracy": 3.0}}
    runs = [runner.Run(a, 0, "f", {}, "d", "d") for a in exp.arms]
    return reports.report(exp, results, runs, {"max_steps": 10}), results


def run_table(text):
    """{(arm, seed): {column: cell}} from the report's ## Runs table."""
    lines = text.split("## Runs")[1].split("## Commands")[0].strip().splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    head, body = rows[0], rows[2:]
    return {(r[0], int(r[1])): dict(zip(head, r)) for r in body}


def test_every_verdict_recomputes_from_the_report_alone():
    """The run table holds every per-seed value a verdict tests (MLM loss, SST-2, the control's SST-2) and
    each run's ppl over the unigram's: the paired tests and Holm, recomputed from the table alone, give the
    report's p's and adjusted p's."""
    exp = Experiment("r", "?", arms=[Arm("a"), Arm("b"), Arm("random-init")], claims=[Claim("a", "b", ".")])
    losses = {"a": [4.012345, 4.031234, 3.987654], "b": [4.101234, 4.143211, 4.080123]}
    sst2 = {"a": [80.275229, 81.995413, 79.701835], "b": [78.211009, 79.931193, 80.045872],
            "random-init": [50.917431, 51.720183, 49.885321]}
    text, results = render(exp, losses, sst2, unigram={"a": 4.3, "b": 4.3})
    table = run_table(text)
    loss = {n: [float(table[(n, k)]["held-out loss [se]"].split()[0]) for k in range(3)] for n in ("a", "b")}
    acc = {n: [float(table[(n, k)]["SST2 acc. %"]) for k in range(3)] for n in ("a", "b", "random-init")}
    assert table[("a", 0)]["ppl ÷ unigram ppl"] == f"{math.exp(losses['a'][0] - 4.3):.3f}"
    assert table[("random-init", 1)]["held-out loss [se]"] == "-"
    raw = [stats.compare(loss["a"], loss["b"], paired_runs=True)["p"],  # the claim's two tests, the two controls
           stats.compare(acc["b"], acc["a"], paired_runs=True)["p"],
           stats.compare(acc["random-init"], acc["a"], paired_runs=True)["p"],
           stats.compare(acc["random-init"], acc["b"], paired_runs=True)["p"]]
    (v,) = results["verdicts"]
    made = [*v["tests"], *v["controls"]]
    assert [t["p"] for t in made] == pytest.approx(raw, rel=1e-3)  # the values as printed: p to ~3 digits
    assert [t["adjusted_p"] for t in made] == pytest.approx([h["adjusted"] for h in stats.holm(raw)], rel=1e-3)
    for t in made:  # and the report prints them
        assert f"p = {t['p']:.2g}, Holm p = {t['adjusted_p']:.2g}" in text


def test_the_report_is_the_arms_then_one_line_per_verdict_then_the_runs():
    """The table of arms first, then one line per claim in the direction measured (whichever arm won), then
    the runs; the method and the legend are linked, stated once in docs/experiments/README.md."""
    exp = Experiment("r", "?", arms=[Arm("a"), Arm("b")], claims=[Claim("a", "b", "a beats b"),
                                                                  Claim("b", "a", "b beats a")])
    text, results = render(exp, {"a": [4.00, 4.02, 3.99], "b": [4.10, 4.13, 4.09]}, unigram={"a": 4.3, "b": 4.3})
    assert text.index("| Arm |") < text.index("## Verdicts") < text.index("## Runs")
    assert "**inconclusive: b did not learn (seed 0: 0.82x" in text and "| 0.82 (did not learn) |" in text
    lines = [line for line in text.splitlines() if line.startswith("- *")]
    assert len(lines) == 2 and all(re.search(r"held-out MLM loss: a better by 0\.\d{4} nats \(9[0-9.]+% CI \+0\.\d{4} "
                                             r"to \+0\.\d{4}; paired t-test, p = .+, Holm p = ", line) for line in lines)
    assert "Holm's step-down" not in text and f"]({reports.METHOD})" in text
    with open(os.path.normpath(os.path.join(ROOT, "docs", "experiments", reports.METHOD)), encoding="utf-8") as f:
        assert "## How to read a report" in f.read()  # the link works from docs/experiments/ and OUT/<name>/


def test_a_claim_beyond_the_paper_is_consistent_with_its_source_never_reproduced():
    exp = Experiment("w", "?", arms=[Arm("a"), Arm("b")], claims=[Claim("a", "b", ".", source="Wettig et al."),
                                                                  Claim("b", "a", ".", source="Wettig et al.")])
    arms = [arm("a", [4.00, 4.02, 3.99]), arm("b", [4.10, 4.13, 4.09])]
    assert [v["verdict"] for v in reports.judge(exp, arms)] == ["consistent with Wettig et al.",
                                                                "contrary to Wettig et al."]
    down = Experiment("w", "?", arms=exp.arms, claims=exp.claims[:1], downstream=True)
    assert reports.judge(down, arms)[0]["verdict"] == "consistent with Wettig et al. (MLM proxy)"


def test_a_quick_report_says_so_at_the_top_and_gives_no_verdict_words():
    exp = Experiment("q", "?", arms=[Arm("a"), Arm("b")], claims=[Claim("a", "b", "a beats b")])
    text, results = render(exp, {"a": [4.00, 4.02, 3.99], "b": [4.10, 4.13, 4.09]}, scale="quick")
    title, notice = text.splitlines()[0], text.splitlines()[2]
    assert title.startswith("# q") and notice.startswith("**A --quick run: it cannot answer the question.**")
    assert results["verdicts"][0]["verdict"] == reports.QUICK and results["verdict"] == reports.QUICK
    for word in ("reproduced", "not significant", "equivalent within", "mixed", "inconclusive"):
        assert word not in text, word
    assert "held-out MLM loss: a better by 0.1" in text  # the numbers stay


def test_the_summary_adds_holm_over_the_suite_and_counts_a_shared_model_once(tmp_path):
    """Two experiments of the same runs (as full-sentences, byte-level and rate-15 are one model): the suite's
    family holds each distinct test once, so its Holm p is each experiment's own, and the control count is over
    2 distinct models, not 4. Another model of `a` (other figures) in the second experiment adds its tests."""
    exp = Experiment("r", "?", arms=[Arm("a"), Arm("b"), Arm("random-init")], claims=[Claim("a", "b", ".")])
    _, results = render(exp, {"a": [4.01, 4.03, 3.98], "b": [4.10, 4.14, 4.08]},
                        {"a": [80.3, 82.0, 79.7], "b": [78.2, 79.9, 80.0], "random-init": [50.9, 51.7, 49.9]})

    def summary(second):
        for name, res in (("masking", results), ("formats", second)):
            os.makedirs(tmp_path / name, exist_ok=True)
            (tmp_path / name / "results.json").write_text(json.dumps(res))
        text = reports.summary(["masking", "formats", "mask-rate"], str(tmp_path))
        return [line.split(" | ") for line in text.splitlines() if line.startswith("| `") and " beats " in line], text

    rows, text = summary(results)
    assert len(rows) == 2 and rows[0][2:] == rows[1][2:] and rows[0][4] == rows[0][5]  # Holm: experiment = suite
    assert "of 2 distinct pretrained models" in text and "over the suite's 4 distinct tests" in text
    other = json.loads(json.dumps(results))
    for r in other["runs"]:
        if r["arm"] == "a":
            r["heldout"]["loss"] += 0.001
    rows, text = summary(other)
    assert "of 3 distinct pretrained models" in text and "over the suite's 7 distinct tests" in text
    assert rows[0][4] != rows[0][5]  # more tests in the suite's family: a larger Holm p
