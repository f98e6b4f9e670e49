"""The machinery: what a real run needs beside the paper's ideas, kept out of the six core modules.

The core (bpe.py, roberta.py, data.py, train.py, finetune.py, evaluate.py) holds the paper and reads top to
bottom. Everything here serves it. Imports flow one way: modules here import the core; the core calls in here
only at a few marked lines, each with a comment `# machinery: ...` saying what it hides.

    files, cli, lock          atomic writes and text readers; one-line errors; one writer per folder
    *_cli                     each core module's command line: its options, their checks
    vocab_files               bpe.py's vocab.json + merges.txt, found, read and checked
    hf, checkpoints           Hugging Face names, config.json, safetensors, export; run folders, checksummed
    preparation, prepared     data.py's worker processes and folder written whole; meta.json and its checks
    fast_formats, index       the four formats in numpy at the paper's scale (tested equal to data.py's loops);
                              the examples index kept beside the data, computed epoch orders (Shuffle, Ragged)
    batches, runs, speed      the batch thread; a run's folder, resume checks and log; MFU, the compile probe
    demo, corpora, baselines  `python train.py`'s demo and report; the built-in corpus and downloads; baselines
    task_files                GLUE, SQuAD and RACE files and prediction files, read and checked
    char_bpe                  Section 4.4's other arm: a character-level BPE with <unk> (bpe.py train --characters)
    experiment_*, stats       experiments.py's runs, data, report and text figures (bits per byte with the <unk>
                              cost; heldout_text/); Student's t, Welch's and the paired t-test
"""
