"""Faults of identity and malformed files: a run folder whose tokenizer was swapped, a resume with changed settings
or of the wrong kind of run, SQuAD answers that are not where they say, crafted Hugging Face and checkpoint files,
and pickles. Each is refused (or counted and reported) in one line that names the file, never a traceback."""
import argparse
import json
import os
import shutil
import struct
from dataclasses import asdict

import pytest
import torch

import bpe
import evaluate
import finetune
import roberta
from conftest import ROOT, shared_path
from test_train import train_here
from machinery.basics import lock
from machinery.commands import evaluate_cli, roberta_cli, train_cli
from machinery.commands import char_bpe
from machinery.formats import checkpoints, run_folder, task_files
from machinery.datafolder import preparation
from machinery.formats import prepared

HF_MLM = os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "mlm")  # made by tests/make_model_fixture.py
WORDS = ("the a cat dog sat ran on under mat tree quickly slowly red blue big small house garden river bird "
         "sings walks over near").split()

def lines(n, seed):
    """n short sentences of WORDS, a blank line (a document break) every 10."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        idx = torch.randint(0, len(WORDS), (int(torch.randint(4, 12, (1,), generator=g)),), generator=g)
        out.append(" ".join(WORDS[j] for j in idx.tolist()).capitalize() + ".")
        if i % 10 == 9:
            out.append("")
    return out

def one_line(fn, *args, kind=ValueError, **kwargs):
    """The message of the one-line error `fn` raises."""
    with pytest.raises(kind) as e:
        fn(*args, **kwargs)
    message = str(e.value)
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    return message

def forge(path, edit):
    """Change a checkpoint.pt as a forger would: `edit` its dict, then recompute its checksum (so that it passes)."""
    ckpt = checkpoints.read_checkpoint(path)
    edit(ckpt)
    ckpt.pop("checksum", None)
    torch.save({**ckpt, "checksum": checkpoints.checksum(ckpt)}, path)

def tiny_folder(d, tok, seed=0, **record):
    """A train.py-like run folder: checkpoint.pt (recording `record`, e.g. its tokenizer's fingerprint) + tokenizer."""
    torch.manual_seed(seed)
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=len(tok), max_positions=32))
    os.makedirs(d, exist_ok=True)
    checkpoints.save(os.path.join(d, "checkpoint.pt"), {"model": model.state_dict(), "config": asdict(model.cfg),
                                                        "class": "RobertaForMaskedLM", **record})
    tok.save(d)
    return model

@pytest.fixture(scope="module")
def toks():
    """Two byte-level tokenizers of the same size, trained on different text."""
    a = bpe.Tokenizer.train(lines(200, 1), 300, min_frequency=1)
    b = bpe.Tokenizer.train(lines(200, 2)[::-1] + ["zebra quartz"] * 5, 300, min_frequency=1)
    assert len(a) == len(b) == 300 and prepared.tokenizer_hash(a) != prepared.tokenizer_hash(b)
    return a, b

# ---------------------------------------------------------------- a run folder's tokenizer swapped
def test_a_swapped_tokenizer_of_the_same_size_is_refused_naming_the_files_and_both_hashes(toks, tmp_path, capsys):
    a, b = toks
    run = tmp_path / "run"
    tiny_folder(run, a, tokenizer_sha256=prepared.tokenizer_hash(a))
    assert len(evaluate.load_checkpoint(run, verbose=False)[1]) == 300  # its own tokenizer loads
    b.save(run)  # another tokenizer, same size: the vocabulary-size check alone let it through
    message = one_line(evaluate.load_checkpoint, run)
    assert message.startswith(f"{run / 'vocab.json'} + merges.txt: tokenizer {prepared.tokenizer_hash(b)[:12]}, ")
    assert f"trained with tokenizer {prepared.tokenizer_hash(a)[:12]}" in message
    # evaluate.py fill-mask: one line and a failing exit, not a confident list of nonsense
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["fill-mask", "--checkpoint", str(run), "The <mask> sat."])
    out = capsys.readouterr()
    assert e.value.code == f"error: {message}" and out.out == "", out

def test_a_checkpoint_swapped_in_from_another_run_is_refused(toks, tmp_path):
    """The other way round: the tokenizer files stay, checkpoint.pt comes from a run with another tokenizer."""
    a, b = toks
    tiny_folder(tmp_path / "a", a, tokenizer_sha256=prepared.tokenizer_hash(a))
    tiny_folder(tmp_path / "b", b, seed=1, tokenizer_sha256=prepared.tokenizer_hash(b))
    shutil.copy(tmp_path / "b" / "checkpoint.pt", tmp_path / "a" / "checkpoint.pt")
    message = one_line(evaluate.load_checkpoint, tmp_path / "a")
    assert f"tokenizer {prepared.tokenizer_hash(a)[:12]}, but checkpoint.pt was trained with tokenizer " \
           f"{prepared.tokenizer_hash(b)[:12]}" in message

def test_two_merges_swapped_are_refused_by_every_loader(toks, tmp_path, capsys):
    a, _ = toks
    run = tmp_path / "run"
    tiny_folder(run, a, tokenizer_sha256=prepared.tokenizer_hash(a))
    merges = (run / "merges.txt").read_text().split("\n")
    merges[1], merges[2] = merges[2], merges[1]  # the same merges, two ranks exchanged
    (run / "merges.txt").write_text("\n".join(merges))
    assert len(bpe.Tokenizer.load(run)) == len(a)
    assert "merges.txt: tokenizer" in one_line(evaluate.load_checkpoint, run, roberta.RobertaForSequenceClassification,
                                               verbose=False)  # finetune.py's --checkpoint
    with pytest.raises(SystemExit) as e:  # roberta.py export copies the tokenizer files: not these
        roberta_cli.main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "hf")])
    assert "merges.txt: tokenizer" in str(e.value.code) and not (tmp_path / "hf" / "vocab.json").exists()
    capsys.readouterr()

def test_a_finetuned_folder_records_its_tokenizer_and_is_checked(toks, tmp_path):
    a, b = toks
    torch.manual_seed(0)
    cfg = roberta.RobertaConfig.preset("tiny", vocab_size=len(a), max_positions=32)
    model = roberta.RobertaForSequenceClassification(cfg, 2)
    args = argparse.Namespace(out=str(tmp_path / "ft"), task="sst2")
    os.makedirs(args.out)
    finetune.save_best(args, model, a, {})
    assert checkpoints.recorded(args.out)["tokenizer_sha256"] == prepared.tokenizer_hash(a)
    assert evaluate.load_checkpoint(args.out, roberta.RobertaForSequenceClassification, verbose=False)[0].num_labels == 2
    b.save(args.out)
    assert "trained with tokenizer" in one_line(evaluate.load_checkpoint, args.out, roberta.RobertaForSequenceClassification)

# ---------------------------------------------------------------- --resume: changed settings, the wrong run
TINY = ["--config", "tiny", "--seq-len", "32", "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "2",
        "--log-interval", "1", "--eval-interval", "100", "--eval-sequences", "8", "--device", "cpu", "--dropout", "0",
        "--prefetch", "0"]

@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, toks):
    """A prepared data folder and a train.py run on it, stopped at step 6."""
    d = tmp_path_factory.mktemp("resume")
    (d / "corpus.txt").write_text("\n".join(lines(400, 3)) + "\n")
    toks[0].save(d / "tok")
    preparation.prepare([str(d / "corpus.txt")], str(d / "tok"), str(d / "data"), valid_fraction=0.05, workers=1,
                 verbose=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_cli.main(["--data", str(d / "data"), "--out", str(d / "run"), "--max-steps", "6", *TINY])
    finally:
        torch.set_num_threads(threads)
        lock.release(str(d / "run"))
        lock.release(str(d / "data"))
    return d / "data", d / "run"

def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if name != ".lock"}

def copy_run(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"

def test_resume_past_max_steps_is_refused_and_at_it_reads_back_changing_nothing(pretrained, tmp_path, capsys):
    prepared, run = pretrained
    run = copy_run(run, tmp_path)
    before = snapshot(run)
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 3, *TINY, "--resume")
    assert code not in (0, None) and len(err.strip().splitlines()) == 1, err
    assert "the run is at step 6, already past --max-steps 3; nothing was changed" in err
    assert snapshot(run) == before  # train_config.json says max_steps 6 still
    # at its --max-steps the run is finished: read back (the demo's second run does this), nothing written, even
    # with another --lr (no update is made with it)
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 6, *TINY[:6], "--lr", "5e-4",
                           *TINY[8:], "--resume")
    notes = [line for line in err.splitlines() if line.startswith(("note", "error", "warning"))]
    assert code == 0 and notes == [f"note: {run / 'checkpoint.pt'}: the run is finished (step 6, its --max-steps): "
                                   f"read back, nothing trained or written"], err
    assert snapshot(run) == before

def test_resume_with_changed_update_settings_says_so_in_one_line(pretrained, tmp_path, capsys):
    prepared, run = pretrained
    run = copy_run(run, tmp_path)
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 7, *TINY[:6], "--lr", "5e-4",
                           *TINY[8:], "--resume")
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert code == 0 and len(notes) == 1, err
    assert "resumed at step 6 with --lr 0.001 -> 0.0005, --max-steps 6 -> 7" in notes[0]
    assert json.loads((run / "train_config.json").read_text())["train"]["lr"] == 5e-4
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 8, *TINY[:6], "--lr", "5e-4",
                           *TINY[8:], "--resume")  # the same settings again: only the longer run is said
    assert code == 0 and "--max-steps 7 -> 8" in err and "--lr" not in err, err
    forge(run / "checkpoint.pt", lambda c: c["train"].update(label_smoothing=0.1))  # a field a student added since
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 9, *TINY[:6], "--lr", "5e-4",
                           *TINY[8:], "--resume")  # every setting is compared, not a chosen few
    assert code == 0 and "--label-smoothing 0.1 -> None" in err and "--max-steps 8 -> 9" in err, err

def test_resume_of_a_finetuned_folder_says_it_is_one(pretrained, toks, tmp_path, capsys):
    prepared, _ = pretrained
    model = roberta.RobertaForSequenceClassification(
        roberta.RobertaConfig.preset("tiny", vocab_size=len(toks[0]), max_positions=32), 2)
    args = argparse.Namespace(out=str(tmp_path / "ft"), task="rte")
    os.makedirs(args.out)
    finetune.save_best(args, model, toks[0], {})
    code, err = train_here(capsys, "--data", prepared, "--out", args.out, "--max-steps", 9, *TINY, "--resume")
    assert code not in (0, None) and len(err.strip().splitlines()) == 1, err
    assert "a finetuned model (finetune.py's, rte), not a pretraining run" in err and "tokenizer" not in err

def test_resume_of_a_forged_checkpoint_is_refused(pretrained, tmp_path, capsys):
    """An old-format checkpoint (no record of its data), its checksum recomputed: --resume cannot check what it
    trained on, so it is refused; a forged tokenizer fingerprint is named beside the data's."""
    prepared, run = pretrained
    run = copy_run(run, tmp_path)
    forge(run / "checkpoint.pt", lambda c: c.pop("data_fingerprint"))
    before = snapshot(run)
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 9, *TINY, "--resume")
    assert code not in (0, None) and len(err.strip().splitlines()) == 1, err
    assert "saved by an older train.py" in err and "start a new run" in err and snapshot(run) == before
    forge(run / "checkpoint.pt", lambda c: c.update(data_fingerprint={}, tokenizer_sha256="0123456789abcdef"))
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 9, *TINY, "--resume")
    assert code not in (0, None) and len(err.strip().splitlines()) == 1, err
    digest = json.loads((prepared / "meta.json").read_text())["tokenizer_sha256"]
    assert f"trained with tokenizer 0123456789ab, but --data {prepared} was prepared with tokenizer {digest[:12]}" \
        in err

def test_a_run_folder_whose_tokenizer_was_swapped_after_training_is_refused(pretrained, toks, tmp_path):
    _, run = pretrained
    run = copy_run(run, tmp_path)
    assert evaluate.load_checkpoint(run, verbose=False)[1].merges == toks[0].merges  # train.py's own record fits
    toks[1].save(run)
    assert "trained with tokenizer" in one_line(evaluate.load_checkpoint, run)

# ---------------------------------------------------------------- SQuAD answers against their context
def squad_file(path, qas, context="The cat sat on the mat by the river."):
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return path

def qa(qid, text, start):
    return {"id": qid, "question": "Where?", "answers": [{"text": text, "answer_start": start}]}

def test_squad_answers_not_at_answer_start_are_skipped_counted_and_named(tmp_path, capsys):
    folder = tmp_path / "squad"
    folder.mkdir()
    train_file = squad_file(folder / "train-v1.1.json", [
        qa("good", "the mat", 15), qa("shifted", "the mat", 14), qa("outside", "mat", 400), qa("past", "river.", 33),
        qa("shifted2", "cat", 0), {"id": "none", "question": "Where?", "answers": []}])
    squad_file(folder / "dev-v1.1.json", [qa("dev", "the mat", 3)])  # dev: scored by text, its offset not read
    train_set, dev = task_files.read_task("squad", evaluate.SQUAD["squad1"], str(folder))
    warning = capsys.readouterr().err.strip().splitlines()
    assert [e["id"] for e in train_set] == ["good"] and [e["id"] for e in dev["dev"]] == ["dev"]
    assert len(warning) == 1 and warning[0].startswith(f"warning: {train_file}: 5 of 6 questions skipped: "), warning
    assert "2 text not at answer_start (first: id shifted)" in warning[0]
    assert "2 the answer runs past the context's end (answer_start too large) (first: id outside)" in warning[0]
    assert "1 no answer, and not marked impossible (first: id none)" in warning[0]
    # the span finetune.py trains on is the answer's
    tok = bpe.Tokenizer.train(["The cat sat on the mat by the river."] * 3, 270, min_frequency=1)
    ids, offsets = tok.encode_with_offsets(train_set[0]["context"])
    first, last = finetune.answer_span(train_set[0], offsets)
    assert train_set[0]["context"][offsets[first][0]:offsets[last][1]].strip() == "the mat"

def test_squad_ids_used_twice_are_refused(tmp_path):
    path = squad_file(tmp_path / "dev.json", [qa("q1", "the mat", 15), qa("q1", "cat", 4)])
    assert one_line(task_files.read_squad, str(path)) == f"{path}: question id 'q1' is used twice"

def test_real_squad_answers_are_all_where_they_say(capsys):
    """SQuAD 1.1 dev: every answer's text is at its answer_start; none is skipped, nothing is said."""
    path = shared_path("squad", "dev-v1.1.json")
    examples = task_files.read_squad(path)
    assert len(task_files.squad_training(examples, path)) == len(examples) == 10570
    assert capsys.readouterr().err == ""

def test_task_files_are_checked_against_the_task(tmp_path, capsys):
    """STS-B's gold scores lie in 0..5 (a prediction may not); SQuAD 1.1 has no impossible questions; a context is
    never empty; a SQuAD 2.0 question marked impossible has no answers. Each counted, in one line with the first."""
    sts = tmp_path / "sts.tsv"
    sts.write_text("index\tsentence1\tsentence2\tscore\n0\ta\tb\t4.5\n1\ta\tb\t7.0\n2\ta\tb\t-1\n3\ta\tb\t0\n")
    assert one_line(task_files.read_glue, evaluate.GLUE["stsb"], str(sts)) == \
        f"{sts}:3: score '7.0' is outside STS-B's 0 to 5 (and 1 more of its 4 rows)"
    (tmp_path / "pred.tsv").write_text("index\tprediction\n0\t5.3\n1\t-0.2\n")  # a regressor's outputs: fine
    assert task_files.read_glue_predictions(str(tmp_path / "pred.tsv"), evaluate.GLUE["stsb"], 2) == ["5.3", "-0.2"]
    impossible = {"id": "imp", "question": "Where?", "answers": [], "is_impossible": True}
    both = {**qa("both", "the mat", 15), "is_impossible": True}
    v1 = tmp_path / "v1"
    v1.mkdir()
    squad_file(v1 / "train-v1.1.json", [qa("good", "the mat", 15), impossible])
    squad_file(v1 / "dev-v1.1.json", [qa("dev", "the mat", 15)])
    assert one_line(task_files.read_task, "squad", evaluate.SQUAD["squad1"], str(v1)) == (
        f"{v1 / 'train-v1.1.json'}: 1 of its 2 questions have is_impossible true (first: id imp): SQuAD 1.1 has no "
        f"such questions (a SQuAD 2.0 file? --task squad2)")
    v2 = tmp_path / "v2"
    v2.mkdir()
    squad_file(v2 / "train-v2.0.json", [qa("good", "the mat", 15), impossible, both])
    squad_file(v2 / "dev-v2.0.json", [qa("dev", "the mat", 15)])
    train_set, _ = task_files.read_task("squad", evaluate.SQUAD["squad2"], str(v2))
    assert [e["id"] for e in train_set] == ["good", "imp"]
    assert "1 of 3 questions skipped: 1 answers, yet marked impossible (first: id both)" in capsys.readouterr().err
    squad_file(v2 / "dev-v2.0.json", [qa("dev", "the mat", 15)], context=" ")
    assert one_line(task_files.read_task, "squad", evaluate.SQUAD["squad2"], str(v2)) == \
        f"{v2 / 'dev-v2.0.json'}: 1 of its 1 questions have an empty context (first: id dev)"

@pytest.mark.parametrize("question, options, answer, why", [
    (7, ["a", "b", "c", "d"], "A", "its question is not a text"),
    ("Why?", ["a", "b", "c"], "A", 'its options are ["a", "b", "c"], not 4 texts'),
    ("Why?", ["a", "b", "c", "d"], "E", 'its answer is "E", not one of A, B, C, D')])
def test_race_says_which_part_of_a_question_is_wrong(tmp_path, question, options, answer, why):
    (tmp_path / "middle").mkdir()
    path = tmp_path / "middle" / "1.txt"
    path.write_text(json.dumps({"id": "1.txt", "article": "A text.", "questions": ["Fine?", question],
                                "options": [["a", "b", "c", "d"], options], "answers": ["B", answer]}))
    assert one_line(task_files.read_race, str(tmp_path)) == f"{path}: question 1: {why}"

# ---------------------------------------------------------------- malformed Hugging Face files
def hf_copy(tmp_path, config=None, weights=None):
    """A copy of the tiny Hugging Face MLM with config.json and/or model.safetensors replaced (bytes or an object)."""
    d = tmp_path / "hf"
    shutil.copytree(HF_MLM, d)
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    if weights is not None:
        (d / "model.safetensors").write_bytes(weights)
    return d

def hf_config():
    with open(os.path.join(HF_MLM, "config.json")) as f:
        return json.load(f)

def safetensors_parts():
    """(header dict, the tensors' bytes) of the fixture's model.safetensors."""
    with open(os.path.join(HF_MLM, "model.safetensors"), "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]

def safetensors_bytes(header, blob):
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + blob

def edited_header(edit):
    header, blob = safetensors_parts()
    name = next(k for k in header if k.endswith("word_embeddings.weight"))
    edit(header[name], header)
    return safetensors_bytes(header, blob), name

@pytest.mark.parametrize("config, words", [
    ([1, 2], "expected a JSON object (a model's configuration), got a list"),
    ("drop vocab_size", "no vocab_size (a RoBERTa config.json gives vocab_size, "),
    ({"vocab_size": "100"}, "vocab_size is a string (\"100\"), expected a whole number"),
    ({"hidden_size": 32.0}, "hidden_size is a number (32.0), expected a whole number"),
    ({"pad_token_id": None}, "pad_token_id is null (null), expected a whole number"),
    ({"layer_norm_eps": "tiny"}, "layer_norm_eps is a string (\"tiny\"), expected a number"),
    ({"architectures": "RobertaForMaskedLM"}, "architectures is a string, expected a list of class names"),
    ({"id2label": ["a", "b"]}, "id2label is a list, expected an object"),
    ({"num_attention_heads": 5}, "hidden size 32 is not a multiple of 5 heads"),
    ({"num_hidden_layers": 0}, "num_layers is 0: not a value a RoBERTa config can have"),
    ({"max_position_embeddings": 2}, "max_positions is 0: not a value a RoBERTa config can have"),
    ({"vocab_size": 10 ** 9}, "describes a model of at least 32,000,"),  # refused before a 128 GB allocation
])
def test_a_malformed_config_json_is_one_line_naming_it(tmp_path, config, words):
    if config == "drop vocab_size":
        config = {k: v for k, v in hf_config().items() if k != "vocab_size"}
    elif isinstance(config, dict):
        config = {**hf_config(), **config}
    d = hf_copy(tmp_path, config=config)
    message = one_line(roberta.load_pretrained, str(d))
    assert message.startswith(f"{d / 'config.json'}: ") and words in message, message

@pytest.mark.parametrize("case", ["unknown dtype", "past the end", "shape and offsets", "offsets", "shape",
                                  "entry", "header a list", "cut in the tensors", "cut in the header", "7 bytes"])
def test_a_malformed_safetensors_is_one_line_naming_it(tmp_path, case):
    header, blob = safetensors_parts()
    words, weights = {
        "unknown dtype": ("dtype \"F8_E4M3\" is not one this reader knows", lambda: edited_header(
            lambda e, h: e.update(dtype="F8_E4M3"))[0]),
        "past the end": ("run past the end of the file", lambda: edited_header(
            lambda e, h: e.update(data_offsets=[len(blob), len(blob) + 12800]))[0]),
        "shape and offsets": ("takes 12,800 bytes, its data_offsets 12,796", lambda: edited_header(
            lambda e, h: e.update(data_offsets=[e["data_offsets"][0], e["data_offsets"][1] - 4]))[0]),
        "offsets": ("data_offsets [5, 1] are not [start, end]", lambda: edited_header(
            lambda e, h: e.update(data_offsets=[5, 1]))[0]),
        "shape": ("shape [-100, 32] is not a list of sizes", lambda: edited_header(
            lambda e, h: e.update(shape=[-100, 32]))[0]),
        "entry": ("its header entry has no dtype, shape and data_offsets", lambda: edited_header(
            lambda e, h: e.pop("dtype"))[0]),
        "header a list": ("its header is a list, not an object", lambda: safetensors_bytes([1], blob)),
        "cut in the tensors": ("a truncated or damaged file", lambda: safetensors_bytes(header, blob)[:-100]),
        "cut in the header": ("its header's length", lambda: safetensors_bytes(header, blob)[:200]),
        "7 bytes": ("not a safetensors file, or a truncated one (7 bytes)", lambda: b"\x01" * 7),
    }[case]
    d = hf_copy(tmp_path, weights=weights())
    message = one_line(roberta.load_pretrained, str(d))
    assert message.startswith(f"{d / 'model.safetensors'}: ") and words in message, message

def test_safetensors_whose_query_has_no_key_is_one_line(tmp_path):
    header, blob = safetensors_parts()
    del header[next(k for k in header if k.endswith("layer.0.attention.self.key.weight"))]
    d = hf_copy(tmp_path, weights=safetensors_bytes(header, blob))
    message = one_line(roberta.load_pretrained, str(d))
    assert message.startswith(f"{d}: ") and "has no" in message and "key.weight" in message, message

def test_a_malformed_hf_folder_is_one_line_from_the_command_line(tmp_path, capsys, toks):
    d = hf_copy(tmp_path, config=[1, 2])
    toks[0].save(d)
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["fill-mask", "--checkpoint", str(d), "a <mask>"])
    assert e.value.code == f"error: {d / 'config.json'}: expected a JSON object (a model's configuration), got a list"
    assert "Traceback" not in capsys.readouterr().err

# ---------------------------------------------------------------- pickles, and crafted checkpoint.pt files
class Payload:
    """A pickle that would run a command on load (os.system), were it unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)

def test_a_pickle_payload_is_refused_for_safety_naming_the_file(tmp_path, toks):
    run = tmp_path / "run"
    tiny_folder(run, toks[0])
    marker = tmp_path / "ran"
    torch.save({"model": {}, "config": {}, "x": Payload(marker)}, run / "checkpoint.pt")
    message = one_line(evaluate.load_checkpoint, run)
    assert message == (f"{run / 'checkpoint.pt'}: refused for safety: it holds a Python object (posix.system) besides "
                       f"tensors and plain values, and reading it could run code from the file; only weights are read")
    assert "weights_only" not in message and not marker.exists()
    torch.save({"model": {}, "config": {}, "x": argparse.Namespace()}, run / "checkpoint.pt")
    assert "refused for safety: it holds a Python object (argparse.Namespace)" in one_line(evaluate.load_checkpoint, run)
    hf_dir = tmp_path / "hf"  # a Hugging Face pytorch_model.bin
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "mlm_bin"), hf_dir)
    torch.save({"w": Payload(marker)}, hf_dir / "pytorch_model.bin")
    assert one_line(roberta.load_pretrained, str(hf_dir)).startswith(f"{hf_dir / 'pytorch_model.bin'}: refused for "
                                                                     f"safety")
    torch.save({"w": [1, 2]}, hf_dir / "pytorch_model.bin")
    assert "not a state dict (names to tensors)" in one_line(roberta.load_pretrained, str(hf_dir))
    assert not marker.exists()

def test_garbage_is_unreadable_not_a_safety_refusal(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    message = one_line(checkpoints.read_checkpoint, str(tmp_path / "checkpoint.pt"))
    assert "not a readable checkpoint (UnpicklingError: Unsupported operand" in message, message
    assert "weights_only" not in message

@pytest.mark.parametrize("edit, words", [
    (lambda c: c.update(model=[1, 2]), "its model is not a state dict (names to tensors)"),
    (lambda c: c["model"].update(extra="x"), "its model is not a state dict (names to tensors)"),
    (lambda c: c.update(num_labels="two"), "its config, class or num_labels is not of its kind"),
    (lambda c: c.update(config=[1]), "its config, class or num_labels is not of its kind"),
    (lambda c: c["config"].update(num_heads=3), "hidden size 128 is not a multiple of 3 heads"),
    (lambda c: c["config"].update(hidden_size=-128), "hidden_size is -128: not a value a RoBERTa config can have"),
    (lambda c: c["config"].update(dropout="0.1"), "dropout is '0.1': not a value a RoBERTa config can have"),
    (lambda c: c["config"].update(pad_id=300), "pad id 300 is outside the vocabulary of 300"),
    (lambda c: c["config"].update(vocab_size=10 ** 9), "describes a model of at least 128,"),
])
def test_a_crafted_checkpoint_with_its_checksum_recomputed_is_one_line(toks, tmp_path, edit, words):
    run = tmp_path / "run"
    tiny_folder(run, toks[0])
    forge(run / "checkpoint.pt", edit)
    message = one_line(evaluate.load_checkpoint, run)
    assert message.startswith(f"{run / 'checkpoint.pt'}: ") and words in message, message

def garbage_rng(c):
    c["rng"][0]["cpu"] = torch.randint(0, 256, c["rng"][0]["cpu"].shape, dtype=torch.uint8)


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["state"].update(step="6"), "its training state's step is '6', not a step count"),
    (lambda c: c["state"].update(epoch=7), "its training state's epoch is 7, not a count in 0..6"),
    (lambda c: c["state"].update(position=-1), "its training state's position is -1, not a count"),
    (lambda c: c["state"].update(offset="3"), "its training state's offset is '3', not a count"),
    (lambda c: c["state"].update(offset=10 ** 9), "its training state's offset 1000000000 (at position"),
    (lambda c: c["state"].update(skipped=1.5), "its training state's skipped is 1.5, not a count in 0..6"),
    (lambda c: c["state"].update(tokens_seen=-5), "its training state's tokens_seen is -5"),
    (lambda c: c.update(rng=[]), "its rng is not every process's random states"),
    (lambda c: c.update(rng=[{"cpu": torch.zeros(3)}]), "its rng is not every process's random states"),
    (garbage_rng, "its rng is not every process's random states"),
    (lambda c: c.update(data_fingerprint={1: 2}), "its data_fingerprint is not a record of its data"),
    (lambda c: c.update(config=[1]), "its config is not a dict of the model's settings"),
    (lambda c: c["model"].pop("lm_head.bias"), "its model is not this model's weights (lm_head.bias:"),
    (lambda c: c["model"].update({"lm_head.bias": torch.zeros(3)}), "its model is not this model's weights (lm_head"),
    (lambda c: c["optimizer"].update(param_groups=[]), "its optimizer is not AdamW's state for this model"),
    (lambda c: c["optimizer"]["param_groups"][0].update(betas=(2.0, 0.9)), "its optimizer is not AdamW's state"),
    (lambda c: c["optimizer"]["param_groups"][0].update(eps="small"), "its optimizer is not AdamW's state"),
    (lambda c: c["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)), "its optimizer state of parameter 0 is not"),
    (lambda c: c["optimizer"]["state"].update({10 ** 6: {}}), "its optimizer state of parameter 1000000 is not"),
])
def test_a_crafted_training_state_is_refused_on_resume_in_one_line(pretrained, tmp_path, capsys, edit, words):
    """Issue 32: every field --resume restores is checked for its type and range, and refused in one line naming
    the file and the field (an empty rng was an IndexError, an offset past its epoch 'negative dimensions')."""
    prepared, run = pretrained
    run = copy_run(run, tmp_path)
    forge(run / "checkpoint.pt", edit)
    before = snapshot(run)
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 9, *TINY, "--resume")
    assert code not in (0, None) and len(err.strip().splitlines()) == 1, err
    assert f"{run / 'checkpoint.pt'}: " in err and words in err, err
    assert snapshot(run) == before

def test_a_crafted_loss_scaler_state_is_one_line():
    """fp16's loss scaler (a GPU's; a CPU one here): its state's numbers checked like AdamW's settings."""
    model = torch.nn.Linear(2, 2)
    opt, scaler = torch.optim.AdamW(model.parameters()), torch.amp.GradScaler("cpu")
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict()}
    run_folder.check_restorable(ckpt, model, opt, scaler, "run/checkpoint.pt")  # its own state passes
    for bad in ({"scale": float("nan")}, {"growth_interval": "2000"}, {"backoff_factor": -0.5}):
        message = one_line(run_folder.check_restorable, {**ckpt, "scaler": {**ckpt["scaler"], **bad}}, model, opt,
                           scaler, "run/checkpoint.pt")
        assert message == "run/checkpoint.pt: its scaler is not a loss scaler's state (a damaged or crafted file)"

@pytest.mark.parametrize("options, words", [
    (["--mask-rate", "0.2"], "--mask-rate was 0.15, now 0.2: the run would not continue the same data"),
    (["--masking", "static"], "--masking was dynamic, now static"),
    (["--max-positions", "256"], "--max-positions was 512, now 256: the run would not continue the same model (its "
                                 "position table)"),
    (["--dropout", "0.1"], "its model differs from this run's --config tiny (dropout 0.0 then, 0.1 now; "),
    (["--config", "small"], "hidden_size 128 then, 256 now"),
])
def test_resume_with_changed_settings_names_the_option_in_one_line(pretrained, tmp_path, capsys, options, words):
    """Refused before the note on changed update settings (--config small changes the lr too): one line, the option
    the user typed and both values."""
    prepared, run = pretrained
    run = copy_run(run, tmp_path)
    before = snapshot(run)
    code, err = train_here(capsys, "--data", prepared, "--out", run, "--max-steps", 9, *TINY, *options, "--resume")
    assert code not in (0, None) and len(err.strip().splitlines()) == 1 and words in err, err
    assert snapshot(run) == before

# ---------------------------------------------------------------- crafted tokenizer files
def test_crafted_tokenizer_files_are_one_line(toks, tmp_path):
    a, _ = toks
    a.save(tmp_path / "dup")  # a merge listed twice: two ranks for one merge
    merges = (tmp_path / "dup" / "merges.txt").read_text().split("\n")
    (tmp_path / "dup" / "merges.txt").write_text("\n".join(merges[:3] + [merges[1]] + merges[3:]))
    assert one_line(bpe.Tokenizer.load, tmp_path / "dup") == \
        f"{tmp_path / 'dup' / 'merges.txt'}:4: merge {merges[1].split()[0]!r} {merges[1].split()[1]!r} a second time"
    char = char_bpe.train(["hello world"] * 3, 20, min_frequency=1)
    char.save(tmp_path / "char")
    spec = json.loads((tmp_path / "char" / "char_bpe.json").read_text())
    for bad, words in (({**spec, "tokens": spec["tokens"][::-1]}, "the tokens must begin with <s>, <pad>"),
                       ({**spec, "tokens": [1, 2, 3]}, "not a character-level BPE file"),
                       ("[" * 100000, "not valid JSON")):
        (tmp_path / "char" / "char_bpe.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
        message = one_line(bpe.Tokenizer.load, tmp_path / "char")
        assert message.startswith(f"{tmp_path / 'char' / 'char_bpe.json'}: ") and words in message, message

def test_a_hf_folder_whose_tokenizer_lacks_mask_or_pads_otherwise_is_one_line(toks, tmp_path, capsys):
    """A Hugging Face folder records no tokenizer fingerprint: its special tokens are checked (fill-mask would
    otherwise end in a traceback), and <pad> must be the id the model pads with."""
    a, _ = toks
    d = tmp_path / "hf"
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset(
        "tiny", vocab_size=len(a), max_positions=32)), d)
    a.save(d)
    vocab = json.loads((d / "vocab.json").read_text())
    vocab["<mask>"], vocab["<pad>"] = vocab["<pad>"], vocab["<mask>"]
    (d / "vocab.json").write_text(json.dumps(vocab))
    assert one_line(evaluate.load_checkpoint, d, verbose=False) == \
        f"{d / 'vocab.json'} + merges.txt: <pad> is id {vocab['<pad>']}, but the model pads with id 1"
    vocab["renamed"] = vocab.pop("<mask>")
    (d / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["fill-mask", "--checkpoint", str(d), "a <mask>"])
    assert e.value.code == f"error: {d / 'vocab.json'} + merges.txt: no <mask> token (RoBERTa's tokenizer has <s>, " \
                           f"<pad>, </s>, <unk>, <mask>)"
    assert "Traceback" not in capsys.readouterr().err

def test_crafted_label_names_and_deep_json_are_one_line(toks, tmp_path):
    run = tmp_path / "run"
    tiny_folder(run, toks[0], id2label=7)
    assert one_line(checkpoints.id2label, run) == f"{run / 'checkpoint.pt'}: id2label is not a list of label names"
    d = hf_copy(tmp_path)
    (d / "config.json").write_text("[" * 100000)
    assert one_line(roberta.load_pretrained, str(d)).startswith(f"{d / 'config.json'}: not valid JSON")
