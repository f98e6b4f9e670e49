"""experiments.py's command line (experiments.py holds the declarations and hands over to main here): one
experiment at a time, its data prepared, its runs planned and executed, its claims judged, its report written.
"""
import argparse
import dataclasses
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

import experiments
from machinery.basics import cli, files, lock
from machinery.commands import corpora
from machinery.lab import datasets, reports, runner
from machinery.formats.prepared import read_meta


# ---------------------------------------------------------------------------------------- one experiment
def run_experiment(exp, args):
    """One experiment: its data prepared, its runs trained (--jobs side by side), its claims judged, OUT/<name>/."""
    scale = experiments.SCALES["quick" if args.quick else args.scale]
    if scale.train.get("device") == "cuda" and not args.device and not torch.cuda.is_available():
        raise ValueError("--scale gpu needs a CUDA GPU (none is available here); use --scale classroom, or "
                         "--device cpu to run the gpu scale's settings slowly")
    t0 = time.time()
    chosen = runner.chosen_arms(exp, args.arms)
    args.code = runner.code_hash()
    runner.say(f"[{exp.name}] {exp.question}\n[{exp.name}] preparing the data ({scale.name} scale)")
    args.finetune_on = downstream_folder(exp, args, scale)  # SST-2's folder, or None: the MLM part only
    prepared = datasets.prepare(scale, args, {a.data or exp.data for a in chosen} | {exp.heldout}, chosen, exp.arms)
    planned = runner.plan(exp, scale, args, prepared)
    runs = [] if args.report_only else [r for r in planned if r.arm in chosen]  # --report-only: runs on disk only
    runner.check_conflicts(runs, args.overwrite)
    with ThreadPoolExecutor(args.jobs) as pool:  # --jobs runs side by side (each train.py is its own process)
        records = list(pool.map(lambda i: runner.do_run(runs[i], i + 1, len(runs), exp, scale, args), range(len(runs))))
    skipped_now = sum(bool(r.pop("skipped", False)) for r in records)
    trained_now = sum(r.get("status") == "finished" for r in records) - skipped_now
    failed_now = sum(r.get("status") == "failed" for r in records)
    records, runs = with_earlier_runs(exp, planned, [] if args.report_only else chosen, records, runs)
    results = collect(exp, scale, args, prepared, planned, records, failed_now, t0)
    folder = os.path.join(args.out, exp.name)  # results.json, report.md and loss.png (when matplotlib is installed)
    os.makedirs(folder, exist_ok=True)
    files.write_atomic(os.path.join(folder, "results.json"), files.json_text(results, indent=2))
    noted = dataclasses.replace(exp, note=f"{exp.note} {results['downstream_off']}".strip())  # why no SST-2 here
    report = os.path.join(folder, "report.md")
    files.write_atomic(report, reports.report(noted, results, runs, runner.base_options(exp, scale, args.steps_factor)))
    png = reports.plot(exp, results, os.path.join(folder, "loss.png"))
    runner.say(f"[{exp.name}] {trained_now} run(s) trained, {skipped_now} skipped (finished before), {failed_now} "
               f"failed in {runner.duration(results['wall_seconds'])}; verdict: {results['verdict']}; report: {report}"
               + (f", {png}" if png else ""))
    return results


def downstream_folder(exp, args, scale):
    """The GLUE folder whose SST-2 finetunes every checkpoint: --glue, else (an experiment scored downstream, at a
    scale where SST-2 is on by default) the download cache's; None (the MLM part only) without it, or --mlm-only."""
    if args.mlm_only or not (args.glue or (exp.downstream and scale.downstream)):
        return None
    folder = args.glue or os.path.join(corpora.DEFAULT_CACHE, experiments.GLUE_DOWNLOAD)
    if os.path.isfile(os.path.join(folder, "SST-2", "train.tsv")):
        return folder
    runner.say(f"[{exp.name}] SST-2 is not here, so the downstream score is left out: `python data.py download "
               f"{experiments.GLUE_DOWNLOAD}` fetches it (or pass --glue DIR); running the MLM part only")
    return None


def with_earlier_runs(exp, planned, chosen, records, runs):
    """This invocation's runs and records, and the earlier ones of the arms not run now, by arm, then seed."""
    earlier = [(r, runner.earlier_record(r)) for r in planned if r.arm not in chosen]
    pairs = list(zip(runs, records)) + [(r, record) for r, record in earlier if record]
    order = {a.name: i for i, a in enumerate(exp.arms)}
    pairs.sort(key=lambda pair: (order[pair[0].arm.name], pair[0].seed))
    return [record for _, record in pairs], [run for run, _ in pairs]


def collect(exp, scale, args, prepared, planned, records, failed_now, t0):
    """results.json: every number and command of the experiment, its arms' summaries and the verdicts."""
    ran = {r["arm"] for r in records}  # arms with a run (now or before): the report shows only these
    arms = [reports.arm_summary(records, arm) for arm in exp.arms if arm.name in ran]
    unigram = datasets.arm_baselines([r for r in planned if r.arm.name in ran])  # the learning gate's reference
    verdicts = reports.judge(exp, arms, unigram, quick=scale.name == "quick")
    own = {a.name for a in exp.arms if a.tokenizer or a.options.get("format", "full-sentences") != "full-sentences"}
    scored = [r for r in records if r.get("status") == "finished" and r.get("heldout")]  # (not a random-init control)
    shared = [r for r in scored if r["arm"] not in own] or scored  # the runs scored on the shared masks, else the first
    wall = round(time.time() - t0, 1) if not args.report_only else \
        (files.read_json(os.path.join(args.out, exp.name, "results.json"), missing=True) or {}).get("wall_seconds", 0.0)
    return {"experiment": exp.name, "question": exp.question, "scale": scale.name,
            "seeds": args.seeds or exp.seeds or scale.seeds, "train_args": args.train_args,
            "paper": exp.paper and dataclasses.asdict(exp.paper), "preparation": prepared.commands,
            "data": {k: read_meta(v)["train"] for k, v in prepared.folders.items()
                     if os.path.isfile(os.path.join(v, "meta.json"))},
            "heldout_targets": shared[0]["heldout"]["targets"] if shared else 0, "invocation": invocation(exp, args),
            "variant": bool(args.arms or args.train_args or os.path.normpath(args.out) != experiments.DEFAULT_OUT),
            "codes": sorted({r.get("code") or "not recorded" for r in records}), "code": args.code,
            "data_codes": sorted(set(prepared.codes.values())),
            "baselines": datasets.heldout_baselines(prepared, planned[0].options["seq_len"]), "arm_baselines": unigram,
            "not_run": [a.name for a in exp.arms if a.name not in ran and (args.finetune_on or not a.finetune)],
            "glue": args.finetune_on, "downstream_off": downstream_off(exp, scale, args.finetune_on), "runs": records,
            "arms": arms, "verdicts": verdicts, "verdict": reports.overall(verdicts), "failed_now": failed_now,
            "wall_seconds": wall, "run_seconds": round(sum(r.get("seconds", 0) for r in records), 1)}


def downstream_off(exp, scale, glue):
    """Why an experiment scored downstream has no SST-2 here: a sentence from the scale's measured probe."""
    if glue or not exp.downstream or scale.downstream or not scale.probe:
        return ""
    p = scale.probe
    return (f"SST-2 is off by default at the {scale.name} scale (--glue DIR adds it): in the runs that chose this, "
            f"the random-init control stayed at {p['control']:g}% in every seed while pretrained arms reached "
            f"{p['pretrained'][0]}-{p['pretrained'][1]}%, SST-2 counted in {p['counted']} of {p['verdicts']} "
            f"verdicts, and each finetuning took {p['seconds'][0]}-{p['seconds'][1]} s, {p['share']} of an "
            f"experiment's wall time: those seconds pay for more seeds.")


def invocation(exp, args):
    """This experiment's command as typed: its name and every option that differs from the default."""
    defaults = dict(scale=args.scale if args.quick else "classroom", seeds=None, glue=None, out=experiments.DEFAULT_OUT,
                    corpus=None, vocab_size=None, train_args=None, device=None, arms=None, steps_factor=1.0, jobs=1)
    options = {k: getattr(args, k) for k, v in defaults.items() if getattr(args, k) != v}
    flags = [f"--{f.replace('_', '-')}" for f in ("quick", "mlm_only", "overwrite", "report_only") if getattr(args, f)]
    return shlex.join(["python", "experiments.py", exp.name] + runner.option_words(options) + flags)


# ---------------------------------------------------------------------------------------- command line
def run_seconds(exp, scale):
    """{a run's settings: its seconds} at this scale: steps x (update cost + tokens / speed) + overhead (+ SST-2)."""
    base, out = runner.base_options(exp, scale), {}
    downstream = exp.downstream and scale.downstream
    for arm in exp.arms:
        if arm.finetune and not downstream:
            continue  # the control runs only with SST-2
        o = runner.apply(base, arm.options)
        each = o["max_steps"] * (scale.update_s + o["batch_size"] * o["seq_len"] / scale.tokens_per_s) + \
            scale.overhead_s + (scale.finetune_s if downstream else 0)
        words = runner.option_words({k: v for k, v in o.items() if k != "max_steps" or not arm.finetune})
        for seed in range(exp.seeds or scale.seeds):
            out[(arm.data or exp.data, arm.tokenizer, arm.vocab, arm.finetune, *words, seed)] = each
    return out


def list_experiments():
    """Each experiment, its arms and its wall time at --jobs 2 from scratch per scale; then `all`'s."""
    for exp in experiments.EXPERIMENTS:
        source = exp.paper.source if exp.paper else "beyond the paper"
        times = ", ".join(f"{name} ~{sum(run_seconds(exp, s).values()) / 2 / 60:.0f} min"
                          + ("" if s.measured else " (assumed speed)")
                          for name, s in experiments.SCALES.items() if name != "quick")
        print(f"{exp.name:<15} {source}: {exp.question}\n{'':15} {len(exp.arms)} arms: "
              f"{', '.join(a.name for a in exp.arms)}; {exp.seeds or experiments.SCALES['classroom'].seeds} seeds each"
              + ("; + SST-2 finetuning (classroom: with --glue)" if exp.downstream else "")
              + f"; {times} with --jobs 2; --quick: seconds")
    for name, scale in experiments.SCALES.items():
        if name != "quick":  # a run two experiments declare counts once
            shared = {k: s for exp in experiments.EXPERIMENTS if exp.claims for k, s in run_seconds(exp, scale).items()}
            print(f"all, {name} scale: ~{sum(shared.values()) / 2 / 60:.0f} min with --jobs 2 (each shared run once; "
                  f"batch-size-grid, which `all` leaves out, adds its own)")


def experiment_name(text):
    names = ["list", "all", "summary"] + [e.name for e in experiments.EXPERIMENTS]
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown experiment {text!r}: choose one of {', '.join(names)}")
    return text


def text_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def glue_folder(text):
    missing = [f"{folder}/{f}" for _, folder, required in experiments.GLUE_TASKS if required
               for f in ("train.tsv", "dev.tsv") if not os.path.isfile(os.path.join(text, folder, f))]
    if missing:
        raise argparse.ArgumentTypeError(f"{text}: no {' or '.join(missing)} there (a GLUE folder holds one "
                                         f"folder per task: SST-2/, RTE/, ...)")
    return text


def parser():
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", type=experiment_name, help="list, all, summary, or one experiment (list names them)")
    p.add_argument("--scale", choices=["classroom", "gpu"], default="classroom",
                   help="classroom: <= 25 min per experiment on a 2-core CPU (--jobs 2); gpu: ~1 hour on one GPU")
    p.add_argument("--quick", action="store_true", help="seconds per experiment, for the tests (tiny everything)")
    p.add_argument("--seeds", type=cli.number(int, 1), help="seeds per arm (default: the scale's, classroom 5)")
    p.add_argument("--glue", type=glue_folder, help="a GLUE folder with SST-2/: each checkpoint finetuned, its SST-2 "
                   f"dev accuracy tested (default at the gpu scale: `data.py download {experiments.GLUE_DOWNLOAD}`'s)")
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
    p.add_argument("--jobs", type=cli.number(int, 1), default=1, help="runs side by side, each a train.py (default: 1)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.experiment == "list":
        return list_experiments()
    if args.experiment == "summary":  # every verdict of OUT/*/results.json, as one markdown table
        return print(reports.summary([e.name for e in experiments.EXPERIMENTS], args.out))
    chosen = [e for e in experiments.EXPERIMENTS if args.experiment == e.name or (args.experiment == "all" and e.claims)]
    failed = cli.run(lambda: run_all(chosen, args))  # bad input: one line, `error: ...`
    if failed:
        sys.exit(f"error: {failed} run(s) failed; the report marks them and names the command to rerun")


def run_all(chosen, args):
    """The chosen experiments one after the other, in one writer's lock of --out; the runs that failed now."""
    runner.parse_train_args(args.train_args)  # its quoting, checked before any work
    try:
        with lock.writing(args.out, "experiments.py"):  # one writer: a second experiments.py is refused
            return sum(run_experiment(exp, args)["failed_now"] for exp in chosen)
    except KeyboardInterrupt:
        sys.exit("interrupted: rerun the same command to resume")
