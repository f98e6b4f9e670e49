"""The machinery: what a real run needs beside the paper's ideas, kept out of the six core modules.

The core (bpe.py, roberta.py, data.py, train.py, finetune.py, evaluate.py) holds the paper and reads top to
bottom. Imports flow one way. The core calls in here only at marked lines (`# machinery: ...`, saying what
each hides), and only into leaves: modules that import nothing of the core. Everything that wraps the core
(command lines, the experiment runner) imports it, never the reverse; a core module's `__main__` block hands
over to its command line in one marked line.

    basics/    leaves: atomic writes and text readers (files), one writer per folder (lock), one-line
               errors and option checks (cli), MFU and thread counts (speed), the batch thread (batches),
               the unigram baselines (baselines)
    interop/   files other tools share: Hugging Face names, config.json and safetensors (hf), checkpoints
               (checkpoints), vocabulary files (vocab_files), GLUE/SQuAD/RACE files (task_files), train.py's
               run folder (run_folder), the character-level BPE's training (char_bpe)
    scale/     the paper's scale, each a twin of a plain loop in the core, tested equal: BPE merges of long
               words (fast_bpe), the input formats in numpy (fast_formats), an epoch's order and batches
               (orders), the examples index (index); writing and reading a data folder (preparation, prepared)
    commands/  each core module's command line (*_cli), the demo, the built-in corpus and downloads (corpora)
    lab/       experiments.py's runner: one experiment (command), its runs (runner), data (datasets),
               statistics (stats), reports (reports), bits-per-byte figures (text_figures, heldout_text/)
"""
