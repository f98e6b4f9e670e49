"""Generate tests/fixtures/mnli_permuted/: a tiny MNLI classifier made by transformers whose id2label is
not the task's order, a few MNLI-format dev examples, and transformers' own predictions on them.

How it was made (once, by hand; transformers is not needed to run the tests):

    python -m venv --system-site-packages ../refenv
    ../refenv/bin/pip install transformers==5.24.0
    ../refenv/bin/python tests/make_glue_fixture.py

MNLI/ holds dev_matched.tsv and dev_mismatched.tsv in GLUE's MNLI layout: invented sentence pairs. model/
holds a byte-level BPE of 300 tokens (bpe.Tokenizer.train on those sentences: vocab.json, merges.txt) and
a tiny RobertaForSequenceClassification (2 layers, hidden 32, 64 positions) with random weights (the
first seed from 0 whose predictions use all three labels, none near a tie), written by transformers' own
save_pretrained. Its id2label is PERMUTED against the task's order
(contradiction, neutral, entailment), and in capitals as roberta-large-mnli's: 0 NEUTRAL, 1 ENTAILMENT,
2 CONTRADICTION, so that reading its outputs in any order but its id2label's gives other labels.

transformers then predicts every dev example: RobertaTokenizer's input ids of the pair, the argmax of the
classifier's logits, that index's name in config.id2label, lower-cased to the label as MNLI's files
write it. The gold labels are those predictions on three examples in four and another label on the fourth
(the sentences are invented: their labels are whatever makes the check sharp), so the official score,
accuracy, is 75% here and far from it in any other reading. expected.json records the input ids, the
predictions and their accuracy per dev set, which tests/test_evaluate.py compares with what
`python evaluate.py glue --task mnli --checkpoint` predicts and scores.
"""
import json
import os
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
import bpe  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "mnli_permuted")
ID2LABEL = {0: "NEUTRAL", 1: "ENTAILMENT", 2: "CONTRADICTION"}
TASK_LABELS = ["contradiction", "neutral", "entailment"]  # evaluate.GLUE["mnli"].labels, as MNLI writes them
HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
          "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")
PAIRS = {
    "dev_matched": [
        ("A man is playing a guitar on the stage.", "A man plays music."),
        ("The children are running in the park.", "Nobody is outside."),
        ("She bought three apples at the market.", "She went shopping for fruit."),
        ("The train left the station at noon.", "The train was late by an hour."),
        ("Two dogs are chasing a red ball.", "Animals are playing."),
        ("The old house at the end of the street is empty.", "Someone lives in the old house."),
        ("He wrote a letter to his sister in Paris.", "His sister lives in France."),
        ("The museum opens every day except Monday.", "The museum is closed on Mondays."),
        ("A woman is reading a book under a tree.", "A woman is asleep in her bed."),
        ("The committee will meet again next week.", "The committee has finished its work."),
        ("Rain fell all night over the quiet town.", "The streets were wet in the morning."),
        ("The chef tasted the soup and added salt.", "The soup needed more salt."),
    ],
    "dev_mismatched": [
        ("The report was published in the spring of 1998.", "The report came out in 1998."),
        ("Our phone lines are open from nine to five.", "You can call us at midnight."),
        ("Most of the letters were never answered.", "Some letters got a reply."),
        ("The river floods the valley every few years.", "The valley is always dry."),
        ("Students may borrow up to ten books at a time.", "There is a limit on books."),
        ("The festival draws visitors from many countries.", "The festival is popular abroad."),
        ("He has worked at the bank for twenty years.", "He started at the bank last month."),
        ("The bridge was closed for repairs in July.", "The bridge needed work."),
    ],
}


def randomize(model, seed=0):
    """Weights large enough (std 0.3, LayerNorms around 1) that the predicted label depends on the input and
    the logits are far from ties."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def predict(model, hf_tok, pairs):
    """transformers' input ids and predicted labels (id2label's name, lower-cased) for each pair, and the
    smallest gap between the top two logits."""
    ids, pred, margin = [], [], float("inf")
    for a, b in pairs:
        x = hf_tok(a, b)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([x])).logits[0]
        top = logits.topk(2).values
        margin = min(margin, float(top[0] - top[1]))
        ids.append(x)
        pred.append(model.config.id2label[int(logits.argmax())].lower())
    return ids, pred, margin


def rows(pairs, labels):
    return HEADER + "".join(f"{i}\t{i}\t{i}n\tfiction\t(a)\t(b)\t(A)\t(B)\t{a}\t{b}\t{lab}\t{lab}\n"
                            for i, ((a, b), lab) in enumerate(zip(pairs, labels)))


def main():
    import transformers
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer
    model_dir, data_dir = os.path.join(OUT, "model"), os.path.join(OUT, "MNLI")
    os.makedirs(data_dir, exist_ok=True)
    tok = bpe.Tokenizer.train([s for pairs in PAIRS.values() for pair in pairs for s in pair], 300, min_frequency=1)
    tok.save(model_dir)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5, id2label=ID2LABEL,
                           label2id={v: k for k, v in ID2LABEL.items()})
    model = RobertaForSequenceClassification(config).eval()
    hf_tok = RobertaTokenizer(os.path.join(model_dir, "vocab.json"), os.path.join(model_dir, "merges.txt"))
    for seed in range(100):
        randomize(model, seed)
        predicted = {name: predict(model, hf_tok, pairs) for name, pairs in PAIRS.items()}
        if all(margin > 1e-3 for _, _, margin in predicted.values()) and \
                all(len(set(pred)) >= 2 for _, pred, _ in predicted.values()) and \
                len({p for _, pred, _ in predicted.values() for p in pred}) == 3:
            break
    else:
        raise SystemExit("no seed below 100 gives predictions of all three labels, none near a tie")
    model.save_pretrained(model_dir)
    expected = {"transformers": transformers.__version__, "seed": seed, "id2label": ID2LABEL, "dev": {}}
    for name, pairs in PAIRS.items():
        ids, pred, _ = predicted[name]
        gold = [p if i % 4 != 3 else TASK_LABELS[(TASK_LABELS.index(p) + 1) % 3] for i, p in enumerate(pred)]
        with open(os.path.join(data_dir, f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write(rows(pairs, gold))
        accuracy = 100.0 * sum(p == g for p, g in zip(pred, gold)) / len(gold)  # MNLI's official metric
        expected["dev"][name] = {"input_ids": ids, "predictions": pred, "accuracy": accuracy}
        print(name, pred, accuracy)
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
