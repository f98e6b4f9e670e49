"""Files other tools share: Hugging Face folders, checkpoints, vocabulary files, task files, run folders."""
