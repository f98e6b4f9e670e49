"""The command line of roberta.py: export a checkpoint as a Hugging Face RoBERTa folder.

    python roberta.py export --checkpoint out/ --out hf/   # transformers loads hf/ as it loads roberta-base
"""
import roberta
from machinery.basics import cli
from machinery.interop import hf


def export_command(args):
    model = hf.export(args.checkpoint, args.out, args.overwrite)
    print(f"{args.out}: {type(model).__name__}, {roberta.num_parameters(model):,} parameters")


def parser():
    p = cli.ArgumentParser(prog="roberta.py",
                           description="Export a checkpoint (train.py / finetune.py output) to the Hugging Face "
                                       "layout: config.json + model.safetensors + tokenizer files.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write a Hugging Face RoBERTa folder",
                       description="Write a checkpoint as a Hugging Face RoBERTa folder that transformers' "
                                   "Auto* classes and pipeline('fill-mask') load as they load roberta-base.")
    e.set_defaults(run=export_command)
    e.add_argument("--checkpoint", required=True,
                   help="a folder with checkpoint.pt (train.py/finetune.py output) or a Hugging Face RoBERTa folder; "
                        "its vocab.json and merges.txt are exported too")
    e.add_argument("--out", required=True, help="the folder to write (created if needed)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an exported model already in --out (default: refuse)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    cli.run(lambda: args.run(args))
