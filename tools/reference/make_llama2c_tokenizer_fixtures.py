#!/usr/bin/env python3
"""Writes tests/data/llama2c/<name>.json: llama2.c's own encode() output for
the tokenizer.bin files in ../shared/testdata, for
tests/unit/test_tokenizer_llama2c.cpp.

llama2.c's run.c is compiled from a checkout (its `encode`, unchanged) with
tools/reference/llama2c_encode.c as the driver; nothing else is needed.

    python3 tools/reference/make_llama2c_tokenizer_fixtures.py LLAMA2C_DIR [SHARED_DIR]

run.c maps a byte with no piece to id byte + 3 and then reads that id's
piece: with a vocabulary of fewer than 259 pieces that read is out of
bounds.  Texts that would need such a byte are left out for that vocabulary
(the test checks runnel's own rule for them separately).
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "llama2c")

FILES = [("tok512", "stories260K/tok512.bin", 512), ("tok105", "babyllama-tok105/tok105.bin", 105)]
# Whole texts from ../shared/testdata, encoded too: only their ids are stored.
SHARED_TEXTS = {"tok512": ["stories260K/greedy-there-was-a-big-256.txt", "stories260K/greedy-no-prompt-256.txt"],
                "tok105": ["babyllama-tok105/greedy-no-prompt-256.txt"]}

TEXTS = ["", "Once upon a time", "There was a big", "Lily and Tom went to the park. They saw a dog!",
         "  leading and  double  spaces ", "new\nlines\n\n",
         "caf\u00e9 \u65e5\u672c \U0001F999".encode(), "digits 1234567890",
         b"\xff\xfe invalid \xe6\x97"]


def texts():
    out = [t if isinstance(t, bytes) else t.encode() for t in TEXTS]
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABC.,!?'\n\t0123456789"
    for _ in range(40):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(60))).encode())
    return out


def pieces(path, vocab_size):
    """The pieces of a tokenizer.bin (for the out-of-bounds check only)."""
    data = open(path, "rb").read()
    off, out = 4, []
    for _ in range(vocab_size):
        _, n = struct.unpack_from("<fi", data, off)
        off += 8
        out.append(data[off:off + n])
        off += n
    return out


def needs_missing_byte(text, vocab):
    """True when run.c would emit a byte id >= the vocabulary size."""
    have = set(vocab)
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and (text[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        if text[i:j] not in have and any(b + 3 >= len(vocab) for b in text[i:j]):
            return True
        i = j
    return False


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    llama2c = sys.argv[1]
    shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "..", "shared")
    commit = subprocess.run(["git", "-C", llama2c, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "llama2c_encode")
        subprocess.run(["cc", "-O1", "-w", "-I", llama2c,
                        os.path.join(ROOT, "tools", "reference", "llama2c_encode.c"), "-lm", "-o", exe],
                       check=True)
        for name, rel, vocab_size in FILES:
            path = os.path.join(shared, "testdata", rel)
            vocab = pieces(path, vocab_size)
            kept = [t for t in texts() if not needs_missing_byte(t, vocab)]
            shared_files = SHARED_TEXTS[name]
            shared_texts = [open(os.path.join(shared, "testdata", f), "rb").read() for f in shared_files]
            assert not any(needs_missing_byte(t, vocab) for t in shared_texts)
            kept_all = kept + shared_texts
            records = b"".join(struct.pack("<I", len(t)) + t for t in kept_all)
            out = subprocess.run([exe, path, str(vocab_size)], input=records, capture_output=True,
                                 check=True).stdout.decode().split("\n")
            cases = []
            for k, t in enumerate(kept):
                with_bos = [int(x) for x in out[2 * k].split()]
                without = [int(x) for x in out[2 * k + 1].split()]
                cases.append({"text_hex": t.hex(), "text": t.decode("utf-8", "replace"),
                              "bos": with_bos, "no_bos": without})
            shared_cases = []
            for k, f in enumerate(shared_files):
                r = len(kept) + k
                shared_cases.append({"file": f, "bytes": len(shared_texts[k]),
                                     "bos": [int(x) for x in out[2 * r].split()]})
            doc = {"generator": "tools/reference/make_llama2c_tokenizer_fixtures.py",
                   "llama2c_commit": commit, "tokenizer": rel, "vocab_size": vocab_size,
                   "left_out": len(texts()) - len(kept), "shared_texts": shared_cases, "cases": cases}
            head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, ensure_ascii=False)
            lines = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
            with open(os.path.join(OUT, f"{name}.json"), "w") as f:
                f.write(head[:-1] + ', "cases": [\n' + lines + "\n]}\n")
            print(f"{name}: {len(cases)} texts ({doc['left_out']} left out)", file=sys.stderr)


if __name__ == "__main__":
    main()
