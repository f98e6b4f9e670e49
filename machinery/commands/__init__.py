"""Each core module's command line (python bpe.py, data.py, train.py, finetune.py, evaluate.py and roberta.py
hand over here), the demo, and the built-in corpus and downloads."""
