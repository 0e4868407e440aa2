"""Token ids of the default model's embedded tokenizer, from Hugging Face
`tokenizers` set up as SmolLM2's tokenizer.json describes it (BPE over the
GGUF's tokens and merges; pre-tokenizer Sequence[Digits(individual_digits),
ByteLevel(add_prefix_space=False, use_regex=True)]; control tokens as special
added tokens), compared with `runnel tokenize` and, when llama-cpp-python is
importable, with llama.cpp's tokenizer.

  tools/reference/.venv-tok/bin/python bench/compare/check_tokenizer.py \
      models/SmolLM2-135M-Instruct.Q4_1.gguf --runnel build/gguf/bin/runnel
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_meta  # noqa: E402

TEXTS = [
    "Hello world",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "  leading spaces,   runs of   spaces\tand tabs\n\nnew lines ",
    "Unicode: café, naïve, Ελληνικά, 日本語のテキスト, emoji 🤗🚀",
    "def f(x):\n    return x**2 + 10_000  # comment",
    "I'm sure they'll say it's 1,234,567.89 dollars",
    "<|im_start|>user\nWhat is 12+34?<|im_end|>\n",
    "١٢٣ Arabic-Indic digits and ½ fractions, ²superscripts",
]


def hf_tokenizer(meta):
    from tokenizers import Tokenizer, AddedToken, decoders, models, pre_tokenizers
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


def runnel_ids(runnel, model, text):
    out = subprocess.run([runnel, "tokenize", "-m", model, "--no-bos", "-f", "-"],
                         input=text, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return [int(x) for x in out.stdout.replace(",", " ").split()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--runnel", default="build/gguf/bin/runnel")
    ap.add_argument("--json", action="store_true", help="print {text: ids} for the test")
    a = ap.parse_args()
    meta, _ = gguf_meta.read(a.model)
    tok = hf_tokenizer(meta)
    llm = None
    try:
        import llama_cpp
        llm = llama_cpp.Llama(a.model, vocab_only=True, verbose=False)
    except Exception:
        pass
    table = {}
    bad = 0
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        table[text] = ids
        r = runnel_ids(a.runnel, a.model, text) if a.runnel else None
        ll = llm.tokenize(text.encode(), add_bos=False, special=True) if llm else None
        ok = (r is None or r == ids) and (ll is None or ll == ids)
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {text!r}\n    hf:     {ids}")
        if r is not None and r != ids:
            print(f"    runnel: {r}")
        if ll is not None and ll != ids:
            print(f"    llama:  {ll}")
    if a.json:
        print(json.dumps(table, ensure_ascii=False))
    print(f"{len(TEXTS) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
