#!/usr/bin/env python3
"""Times HF tokenizers (single thread) on the text bench/bench_tokenizer.cpp encodes.

    RAYON_NUM_THREADS=1 tools/reference/.venv-tok/bin/python tools/reference/bench_tokenizers.py

Prints milliseconds per encode of the ~1 MB text and the token count for each tokenizer, in the
order of the C++ benchmark, so the two can be put side by side.
"""
import json
import os
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer, processors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "tokenizers"
SHARED = ROOT.parent / "shared" / "testdata"


def bench_text():
    corpus = json.loads((DATA / "corpus.json").read_text(encoding="utf-8"))
    unit = "".join(e["text"] + "\n" for e in corpus if "text" in e)
    unit_bytes = len(unit.encode())
    return unit * (1_000_000 // unit_bytes)


def load(name):
    if name == "llama3":
        return Tokenizer.from_file(str(DATA / "llama3" / "tokenizer.json"))
    if name == "bloom":
        return Tokenizer.from_file(str(DATA / "bloom" / "tokenizer.json"))
    if name == "opt":
        from transformers import GPT2TokenizerFast
        # OPT's special tokens, as in make_tokenizer_fixtures.py ("</s>" inside text is one token).
        return GPT2TokenizerFast(vocab_file=str(SHARED / "opt-bpe" / "vocab.json"),
                                 merges_file=str(SHARED / "opt-bpe" / "merges.txt"), bos_token="</s>",
                                 eos_token="</s>", unk_token="<unk>", pad_token="<pad>").backend_tokenizer
    if name == "llama-spm":
        from transformers import LlamaTokenizerFast
        return LlamaTokenizerFast(vocab_file=str(SHARED / "llama-spm" / "tokenizer.model"), legacy=True,
                                  from_slow=True, add_prefix_space=True).backend_tokenizer
    raise ValueError(name)


def main():
    text = bench_text()
    print(f"text: {len(text.encode())} bytes")
    for name in ["llama3", "bloom", "opt", "llama-spm"]:
        tok = load(name)
        tok.encode(text, add_special_tokens=False)  # warm-up (fills HF's word cache as the C++ run's first pass does)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            enc = tok.encode(text, add_special_tokens=False)
            times.append(time.perf_counter() - t0)
        print(f"{name:10s} {min(times) * 1e3:8.1f} ms (best of 5)  {len(enc.ids)} tokens  "
              f"{len(text.encode()) / min(times) / 1e6:6.1f} MB/s  [one 1 MB string]")
        # The same text as one batch of lines (HF's usual use; RAYON_NUM_THREADS=1 keeps it single-threaded).
        lines = text.split("\n")
        t0 = time.perf_counter()
        n = sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
        dt = time.perf_counter() - t0
        print(f"{name:10s} {dt * 1e3:8.1f} ms            {n} tokens  {len(text.encode()) / dt / 1e6:6.1f} MB/s  "
              f"[encode_batch of {len(lines)} lines]")


if __name__ == "__main__":
    main()
