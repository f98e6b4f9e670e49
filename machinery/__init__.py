"""The machinery: what a real run needs beside the paper's ideas, kept out of the six core modules.

The core (bpe.py, roberta.py, data.py, train.py, finetune.py, evaluate.py) holds the paper and reads top to
bottom. Everything here serves it: file formats and atomic writes, argument tables and their checks, the
kept examples index and the fast (vectorised) forms of what the core writes plainly, the background batch
thread, speed measurement, Hugging Face interop, the demo's corpus and report.

Imports flow one way: modules here import the core; the core calls in here only at a few marked lines,
each with a comment `# machinery: ...` saying what it hides.
"""
