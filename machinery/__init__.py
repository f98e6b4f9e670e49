"""The machinery: what a real run needs beside the paper's ideas, kept out of the six core modules.

The core (bpe.py, roberta.py, data.py, train.py, finetune.py, evaluate.py) holds the paper and reads top to
bottom. The machinery lies in two layers around it, and imports flow one way (tests/test_layers.py checks it):

  below the core: leaves, which import nothing of the core; the core calls them at marked lines (`# machinery: ...`)
    basics/      atomic writes and text readers (files), one writer per folder (lock), one-line errors and option
                 checks (cli), MFU, thread counts and the compiled step (speed), the batch thread (batches), the
                 unigram baselines (baselines)
    fast/        numpy twins of two plain loops in the core, tested equal: BPE merges of long words (fast_bpe), an
                 epoch's order and batches (orders)
    formats/     the files the project writes and others share: checkpoints, Hugging Face names, config.json and
                 safetensors (hf), vocabulary files (vocab_files), a data folder read and checked (prepared),
                 train.py's run folder (run_folder), GLUE/SQuAD/RACE files (task_files)
  above the core: they import it, never the reverse (a core module's `__main__` hands over to its command line)
    datafolder/  writing a data folder (preparation), the examples index kept beside it (index), the input formats
                 in numpy, tested equal to data.py's (fast_formats)
    commands/    each core module's command line (*_cli), the demo, the built-in corpus and downloads (corpora), the
                 character-level BPE's training (char_bpe), bench.py's tools (bench_tools, bench_device)
    lab/         experiments.py's runner: one experiment (command), its runs (runner), data (datasets), statistics
                 (stats), reports (reports), bits-per-byte figures (text_figures, heldout_text/)

Between sub-packages: basics <- fast <- formats <- (the core) <- datafolder <- commands <- lab.
"""
