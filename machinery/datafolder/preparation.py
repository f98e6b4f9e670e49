"""`python data.py`'s work (prepare): data.py's reading, splitting and encoding of a corpus, with the checks
before anything is written, the worker processes that encode the lines, and the .bin/.idx files of both
splits, written whole or not at all.

One writer at a time: prepare holds --out's lock from its checks of --out on, so a second data.py, or a train.py
reading the folder, is refused. The files are written into a temporary folder of --out's own (files.temp_name)
and moved into place by renames alone, only when complete (install: meta.json goes first and comes back last).
A full disk stops it before anything of --out is replaced, in one line; so do Ctrl-C and SIGTERM, whose workers
end without a traceback. A failure leaves no folder made for the run, and a folder that is not data.py's is not
written over without --overwrite."""
import contextlib
import os
import shutil
import signal
import sys
import threading
from collections import deque
from multiprocessing import active_children, get_all_start_methods, get_context

import numpy as np

import bpe
import data
from machinery.basics import files, lock
from machinery.formats import prepared
from machinery.datafolder import index


def prepare(inputs, tokenizer_dir, out_dir, valid_fraction=0.01, workers=None, overwrite=False,
            errors="strict", chunk_lines=2000, verbose=True):
    """`python data.py`: encode `inputs` into out_dir's train/valid files: read as documents, whole ones held out
    (data.split_documents), every line encoded (data.encode_lines), then the tokenizer and meta.json beside them."""
    tok = bpe.Tokenizer.load(tokenizer_dir)
    digest = check(tok, tokenizer_dir, inputs, valid_fraction, errors)
    mine = not lock.held(out_dir, exclusive=True)  # a lock its caller holds stays the caller's
    with lock.writing(out_dir, "data.py") if mine else contextlib.nullcontext():  # a failure: what it made goes
        check_out(out_dir, tok, digest, overwrite)
        chunks = data.split_documents(data.read_documents(inputs, errors), valid_fraction, chunk_lines)
        encoded = encoded_chunks(chunks, tok, tokenizer_dir, workers or os.cpu_count() or 1)
        counts = write_splits(out_dir, prepared.token_dtype(len(tok)), encoded, inputs, verbose)
        return finish(out_dir, tok, digest, inputs, valid_fraction, counts)  # meta.json last


_worker_tok = None


def _init_worker(tokenizer_dir):
    """A worker, with a tokenizer of its own, stops without a traceback: Ctrl-C is its parent's to handle (which
    then ends the pool), SIGTERM (the pool's end) ends it at once, and so do a result pipe its parent closed and
    (Linux) its parent's death."""
    global _worker_tok  # one per worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # its parent gone midway: no BrokenPipeError, an end
    if sys.platform.startswith("linux"):
        import ctypes
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    _worker_tok = bpe.Tokenizer.load(tokenizer_dir)


@contextlib.contextmanager
def stopped_by_sigterm():
    """SIGTERM (a scheduler, `kill`) stops data.prepare as Ctrl-C does: as a KeyboardInterrupt, so that the
    workers are ended, the temporary folder removed and --out left as it was (its refusal is one line)."""
    def interrupt(*_):
        raise KeyboardInterrupt
    try:
        before = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _encode(lines):
    return data.encode_lines(lines, _worker_tok)


def encoded_chunks(chunks, tok, tokenizer_dir, workers):
    """(split, (tokens, lengths)) for each chunk, in order; with workers > 1, encoded in worker processes
    with at most 2 chunks per worker in flight (bounded memory)."""
    if workers <= 1:
        for split, lines in chunks:
            yield split, data.encode_lines(lines, tok)
        return
    method = "fork" if "fork" in get_all_start_methods() else "spawn"  # fork: workers start at once
    before = set(active_children())
    pool = get_context(method).Pool(workers, _init_worker, (tokenizer_dir,))
    procs = [p for p in active_children() if p not in before]
    try:
        pending = deque()
        for split, lines in chunks:
            pending.append((split, pool.apply_async(_encode, (lines,))))
            if len(pending) >= 2 * workers:
                split, result = pending.popleft()
                yield split, result.get()
        while pending:
            split, result = pending.popleft()
            yield split, result.get()
    except BaseException:  # Ctrl-C, SIGTERM, a failed write, the consumer gone (GeneratorExit)
        stop(pool, procs)
        raise
    pool.terminate()  # every result read: the workers wait for work, and go


def stop(pool, procs):
    """End a pool midway, at once: its workers killed, then Pool.terminate given a second in a thread of its own
    (alone, it can wait forever for a worker blocked writing a result no one reads, which holds the queue's lock)."""
    for p in procs:
        p.kill()
    with contextlib.suppress(RuntimeError):  # the interpreter is ending: no new thread; the workers are gone already
        ender = threading.Thread(target=pool.terminate, daemon=True)
        ender.start()
        ender.join(1)


def check(tok, tokenizer_dir, inputs, valid_fraction, errors):
    """Before --out is touched: a tokenizer with <s>, </s> and <mask>, a valid fraction in [0, 1), inputs that are
    text files. Returns the tokenizer's fingerprint (prepared.tokenizer_hash)."""
    if tok.eos_id is None or tok.bos_id is None or tok.mask_id is None:
        raise ValueError(f"{tokenizer_dir}: the tokenizer has no <s>, </s> or <mask> token")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    for path in inputs:  # a missing or binary file fails before anything is written
        if not files.is_pipe(path):  # (what is read from a pipe here would be lost)
            next(data.read_documents([path], errors), None)
    return prepared.tokenizer_hash(tok)


def check_out(out_dir, tok, digest, overwrite):
    """With --out's lock held: it holds no data of another tokenizer, nor files of the user's (unless overwrite)."""
    if os.path.isfile(os.path.join(out_dir, "meta.json")) and not overwrite:
        if prepared.read_meta(out_dir).get("tokenizer_sha256") != digest:
            raise ValueError(f"{out_dir} holds data from another tokenizer: pass --overwrite to replace it")
    elif not overwrite:
        prepared.check_not_users(out_dir, split_files(), "meta.json", "data.py's data", tok)


def split_files():
    return [f"{s}.{k}" for s in data.SPLITS for k in ("bin", "idx")]


def temp_folder(out_dir):
    """This process's folder of unfinished files inside --out (files.sweep removes it once the process is gone)."""
    return files.temp_name(os.path.join(out_dir, "prepare"))


class SplitWriter:
    """The .bin/.idx files of both splits, written in a folder of their own (the temporary folder)."""

    def __init__(self, out_dir, dtype):
        self.dtype = dtype
        os.makedirs(out_dir, exist_ok=True)
        self.files = {name: open(os.path.join(out_dir, name), "wb") for name in split_files()}
        self.counts = {s: {"tokens": 0, "lines": 0, "documents": 0, "max_id": -1} for s in data.SPLITS}

    def write(self, split, tokens, lengths):
        c = self.counts[split]
        self.files[f"{split}.bin"].write(tokens.astype(self.dtype).tobytes())
        self.files[f"{split}.idx"].write((np.cumsum(lengths) + c["tokens"]).tobytes())
        c["tokens"] += int(tokens.size)
        c["lines"] += int(lengths.size)
        c["documents"] += int(np.sum(lengths == 1) if lengths.size else 0)  # a lone </s> ends a document
        c["max_id"] = max(c["max_id"], int(tokens.max()) if tokens.size else -1)  # training checks it, at no cost

    def close(self):
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()


def give_up(out_dir, err):
    """After a failure: the temporary folder removed (prepare's lock.writing gives back what the lock made).
    Returns what to raise: `err`, or a full disk as one line, --out and what is intact (all is written in the
    temporary folder, which goes: the data there before stays whole)."""
    shutil.rmtree(temp_folder(out_dir), ignore_errors=True)
    if not isinstance(err, OSError) or err.errno not in files.FULL:
        return err
    intact = (f"the data already in {out_dir} is intact" if os.path.isfile(os.path.join(out_dir, "meta.json"))
              else "nothing was kept")
    return files.write_failed(err, out_dir, "the prepared data", intact)


def write_splits(out_dir, dtype, encoded, inputs, verbose=True):
    """Write (split, (tokens, lengths)) parts into the .bin/.idx files of out_dir's temporary folder, kept only
    when all went well and the train split is not empty. Returns the counts of each split."""
    from tqdm import tqdm
    writer = None
    try:
        writer = SplitWriter(temp_folder(out_dir), dtype)
        with tqdm(unit="tok", unit_scale=True, desc="encoding", disable=not verbose) as bar:
            for split, (tokens, lengths) in encoded:
                writer.write(split, tokens, lengths)
                bar.update(tokens.size)
        writer.close()
        if writer.counts["train"]["tokens"] == 0:
            raise ValueError(f"no text in {', '.join(inputs)}: the input is empty")
    except BaseException as e:
        if hasattr(encoded, "close"):  # a generator of worker processes: they end now, not when it is collected
            encoded.close()
        if writer is not None:
            for f in writer.files.values():
                with contextlib.suppress(OSError):  # a full disk: the close's flush fails again
                    f.close()
        raise give_up(out_dir, e) from None
    return writer.counts


def install(out_dir):
    """Move the finished files of the temporary folder into out_dir, renames alone (no disk space needed):
    meta.json removed first and moved in last (a folder without it reads as incomplete), and the kept examples
    index of the old data removed."""
    tmp = temp_folder(out_dir)
    if os.path.isfile(os.path.join(out_dir, "meta.json")):
        os.remove(os.path.join(out_dir, "meta.json"))
    index.remove(out_dir)  # built from the old data: it no longer fits
    tokenizer_files = [n for n in prepared.TOKENIZER_FILES if os.path.isfile(os.path.join(tmp, n))]
    for name in split_files() + tokenizer_files + ["meta.json"]:
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    shutil.rmtree(tmp)


def finish(out_dir, tok, digest, inputs, valid_fraction, counts):
    """The tokenizer and meta.json (last: its presence means a complete folder) beside the data, moved into
    out_dir; a warning when the valid split is empty. Returns the meta."""
    meta = {"tokenizer_sha256": digest, "vocab_size": len(tok), "dtype": np.dtype(prepared.token_dtype(len(tok))).name,
            "bos_id": tok.bos_id, "pad_id": tok.pad_id, "eos_id": tok.eos_id, "mask_id": tok.mask_id,
            "inputs": [os.path.abspath(p) for p in inputs], "valid_fraction": valid_fraction, **counts}
    try:
        tok.save(temp_folder(out_dir))
        files.write_atomic(os.path.join(temp_folder(out_dir), "meta.json"), files.json_text(meta, indent=2))
        install(out_dir)
    except BaseException as e:
        raise give_up(out_dir, e) from None
    if valid_fraction > 0 and meta["valid"]["tokens"] == 0:
        print(f"warning: {out_dir}: the valid split is empty ({meta['train']['documents']} document(s) in all, "
              f"--valid-fraction {valid_fraction}): training will not evaluate; add documents (blank-line "
              f"separated) or raise --valid-fraction", file=sys.stderr)
    return meta
