"""Generate tests/fixtures/bpe_reference.json: reference token ids from other BPE implementations.

How it was made (once, by hand; none of these packages is needed to run the tests):

    python -m venv --system-site-packages ../refenv
    ../refenv/bin/pip install tiktoken==0.14.0 tokenizers==0.23.3 transformers==5.23.0
    ../refenv/bin/python tests/make_bpe_fixture.py ../shared/data

It records, for a few hundred diverse strings:
  - "gpt2":    tiktoken's GPT-2 encoding (built from GPT-2's encoder.json + vocab.bpe), encode_ordinary;
  - "roberta": transformers' RobertaTokenizer on RoBERTa's vocab.json + merges.txt, no special tokens;
  - "trained": Hugging Face `tokenizers` ByteLevelBPETokenizer loading the vocab.json + merges.txt that
               *our* trainer wrote (from `trained_corpus`, vocab 400), so the test proves that files
               saved here are read the same way by another implementation.
"""
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bpe  # noqa: E402

HAND = [
    "Hello world!", "Hello world", " Hello world", "hello  world", "Hello\tworld\n", "",
    " ", "  ", "\n", "\n\n\n", " \n ", "\t\t x", "a  b   c    d", "trailing spaces   ",
    "I'm can't won't they're we've he'll she'd it's", "I'M CAN'T", "'s's's", "don''t",
    "The quick brown fox jumps over the lazy dog.", "1234567890 3.14159 1,000,000 -42",
    "naïve café résumé coöperate", "Straße groß", "Ελληνικά κείμενο", "Русский текст",
    "中文文本测试", "日本語のテキスト", "한국어 텍스트", "العربية نص", "עברית", "हिन्दी पाठ",
    "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷", "e\u0301 a\u0300 n\u0303 combining", "zero\u200bwidth\u200djoiner",
    "\x00\x01\x02 control \x7f\x1b[31mred\x1b[0m", "def f(x):\n    return x ** 2  # square\n",
    "<html><body class=\"x\">Tag</body></html>", "https://example.com/path?q=1&r=2#frag",
    "user@example.com", "C:\\Windows\\System32", "$100.00 €50 £20 ¥1000", "a\r\nb\rc",
    "!!!???...,,,;;;", "----====____", "~`@#$%^&*()[]{}|\\/<>", "   leading", "x" * 300,
    "supercalifragilisticexpialidocious", "ＦＵＬＬ　ｗｉｄｔｈ", "\u00a0non\u00a0breaking\u00a0space",
    "tab\tseparated\tvalues\t1\t2", "mixed123abc456def", "CamelCaseIdentifierName", "snake_case_name",
    " ?!", "'", "''", " 's", "s'", "a'b'c", "2023-10-05T12:34:56Z", "0x1F 0b1010 1e-5 1E+10",
]
WORDS = ("the of and to in is was for on that with as by at from his her it an were are which this "
         "be or has had not but what all when there can been one who more new some would time could "
         "RoBERTa BERT pretraining masked language model tokenizer byte-level BPE dynamic masking").split()
CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-()\n\t") + \
    list("éèêëàâäôöûüçñßæøåÆØÅ€£¥©®°±µ¶·¿¡") + ["😀", "🎉", "中", "文", "д", "ж", "λ", "Ω", "\u0301", "  "]


def generated(seed=0, n=300):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:  # word salad with punctuation and contractions
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 20))]
            text = " ".join(w + rng.choice(["", "", ",", ".", "'s", "'t", "!", " "]) for w in words)
        elif i % 3 == 1:  # random characters, whitespace runs included
            text = "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 60)))
        else:  # random code points from several Unicode blocks
            blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x4e00, 0x4fff),
                      (0x1f300, 0x1f64f), (0x2000, 0x206f), (0x0, 0x1f)]
            text = "".join(chr(rng.randint(*rng.choice(blocks))) for _ in range(rng.randint(1, 30)))
        out.append(text)
    return out


def trained_corpus():
    """The text our trainer learns from for the 'trained' section (deterministic, no files needed)."""
    return generated(seed=1, n=400) + HAND


def main(shared):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    strings = HAND + generated()
    specials = ("<s>", "</s>", "<pad>", "<unk>", "<mask>", "<|endoftext|>")
    assert not any(s in t for t in strings for s in specials)  # plain text only

    ranks = data_gym_to_mergeable_bpe_ranks(f"{shared}/gpt2/vocab.bpe", f"{shared}/gpt2/encoder.json")
    gpt2 = tiktoken.Encoding("gpt2", pat_str=bpe.GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})
    roberta = RobertaTokenizer(f"{shared}/roberta/vocab.json", f"{shared}/roberta/merges.txt")
    with tempfile.TemporaryDirectory() as d:
        bpe.Tokenizer.train(trained_corpus(), vocab_size=400, min_frequency=2).save(d)
        hf = ByteLevelBPETokenizer(f"{d}/vocab.json", f"{d}/merges.txt")
        trained = [hf.encode(s).ids for s in strings]
    fixture = {
        "strings": strings,
        "gpt2": [gpt2.encode_ordinary(s) for s in strings],
        "roberta": [roberta.encode(s, add_special_tokens=False) for s in strings],
        "trained": trained,
    }
    path = os.path.join(os.path.dirname(__file__), "fixtures", "bpe_reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True)
    print(f"wrote {path}: {len(strings)} strings")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../shared/data"))
