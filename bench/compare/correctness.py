"""runnel against llama.cpp (llama-cpp-python) on one GGUF model.

1. Greedy generation: 5 fixed prompts, tokenized once by llama.cpp, 64 new
   tokens each from both engines (runnel: `runnel generate --prompt-ids ...
   --temp 0 --print-ids`); reports the first position where the ids differ.
2. Logits: runnel's logits at every generated position (dumped as
   result_output .npy by `--dump-layers`) against llama.cpp's (logits_all) at
   the same positions, while both contexts are still the same: max |d|,
   max |d| / max |llama.cpp|, and top-1 agreement.
3. Perplexity on a text over fixed windows, the same token ids for both:
   runnel via `runnel perplexity --ids-file` (required), llama.cpp via its logits (the
   same windowing rule: window i scores the positions the previous window did
   not).  Pass: relative difference under 0.5%.

  bench/compare/.venv/bin/python bench/compare/correctness.py \
      -m models/SmolLM2-135M-Instruct.Q4_1.gguf --runnel build/gguf/bin/runnel
"""
import argparse
import glob
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>user\nWhat is 17 * 23? Explain step by step.<|im_end|>\n<|im_start|>assistant\n",
    "The three laws of thermodynamics are",
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({r.returncode}):\n{r.stderr.strip()}")
    return r


def read_npy_rows(path):
    a = np.load(path)
    return a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)


def runnel_greedy(runnel, model, ids, n, threads, dump_dir, extra=()):
    cmd = [runnel, "generate", "-m", model, "--prompt-ids", ",".join(map(str, ids)),
           "--temp", "0", "-n", str(n), "--ignore-eos", "--print-ids", "-t", str(threads),
           "--dump-layers", dump_dir, *extra]
    out = run(cmd).stdout
    gen = [int(x) for x in out.split()]
    # One result_output per forward call: the prompt's last row, then one row per decode.
    files = glob.glob(os.path.join(dump_dir, "*result_output*.npy"))

    def call_no(p):
        m = re.match(r"(\d+)", os.path.basename(p))
        return int(m.group(1)) if m else 0

    rows = [read_npy_rows(p)[-1] for p in sorted(files, key=call_no)]
    return gen, np.stack(rows) if rows else None


def llama_greedy(llm, ids, n):
    llm.reset()
    llm.eval(ids)
    gen, rows = [], []
    for _ in range(n):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        rows.append(logits)
        tok = int(np.argmax(logits))
        gen.append(tok)
        llm.eval([tok])
    return gen, np.stack(rows)


def windows(n, ctx, stride):
    """(begin, end, first scored) as runnel perplexity defines them."""
    out, prev_end, begin = [], 0, 0
    while True:
        end = min(begin + ctx, n)
        out.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end >= n:
            return out
        begin += stride


def llama_perplexity(llm, ids, ctx, stride):
    nll, scored = 0.0, 0
    for begin, end, first in windows(len(ids), ctx, stride):
        llm.reset()
        llm.eval(ids[begin:end])
        logits = np.array(llm.scores[: end - begin], dtype=np.float64)
        for pos in range(first, end):
            row = logits[pos - 1 - begin]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            nll += lse - row[ids[pos]]
            scored += 1
    return nll / scored, scored


def runnel_perplexity(runnel, model, ids, ctx, stride, threads, extra=()):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(",".join(map(str, ids)))
        path = f.name
    try:
        r = subprocess.run([runnel, "perplexity", "-m", model, "--ids-file", path, "--ctx",
                            str(ctx), "--stride", str(stride), "-t", str(threads), "--json", *extra],
                           capture_output=True, text=True)
        if r.returncode == 0:
            j = json.loads(r.stdout)
            return j["mean_nll"], j["scored_tokens"], "runnel perplexity"
        # `generate --dump-layers` dumps only the rows it samples from, so it
        # cannot stand in for teacher-forced scoring of a whole window.
        raise RuntimeError("runnel perplexity failed: " + r.stderr.strip()[:400])
    finally:
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--runnel", default="build/gguf/bin/runnel")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--stride", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=0, help="score at most this many tokens")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--runnel-args", default="",
                    help="extra arguments for `runnel generate` and `runnel perplexity`, "
                         "one string split on spaces (e.g. \"--kv-dtype f16\")")
    ap.add_argument("--flash-attn", action="store_true",
                    help="llama.cpp with flash attention (llama-cpp-python's default: off)")
    ap.add_argument("--kv-type", choices=["f16", "f32"], default="f16",
                    help="llama.cpp's KV cache type (its default: f16)")
    ap.add_argument("--no-perplexity", action="store_true", help="only the greedy comparison")
    a = ap.parse_args()

    import llama_cpp
    kv_type = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[a.kv_type]
    llm = llama_cpp.Llama(a.model, n_ctx=max(a.ctx, 1024), n_batch=512, n_threads=a.threads,
                          n_threads_batch=a.threads, logits_all=True, verbose=False,
                          flash_attn=a.flash_attn, type_k=kv_type, type_v=kv_type)
    extra = a.runnel_args.split()
    results = {"model": a.model, "llama_cpp_python": llama_cpp.__version__, "prompts": [],
               "runnel_args": extra, "llama_cpp_flash_attn": a.flash_attn,
               "llama_cpp_kv_type": a.kv_type}

    print(f"## Greedy {a.n} tokens, {os.path.basename(a.model)}\n")
    print("| prompt | tokens | first mismatch | max abs diff | max rel diff | top-1 agree |")
    print("| --- | --- | --- | --- | --- | --- |")
    all_ok = True
    for p in PROMPTS:
        ids = llm.tokenize(p.encode(), add_bos=False, special=True)
        with tempfile.TemporaryDirectory() as d:
            r_gen, r_rows = runnel_greedy(a.runnel, a.model, ids, a.n, a.threads, d, extra)
        l_gen, l_rows = llama_greedy(llm, ids, a.n)
        mismatch = next((i for i, (x, y) in enumerate(zip(r_gen, l_gen)) if x != y), None)
        if mismatch is None and len(r_gen) != len(l_gen):
            mismatch = min(len(r_gen), len(l_gen))
        # Positions with the same context: up to and including the first mismatch.
        k = len(l_gen) if mismatch is None else mismatch + 1
        k = min(k, 0 if r_rows is None else len(r_rows))
        if k:
            d = np.abs(r_rows[:k] - l_rows[:k])
            max_abs = float(d.max())
            max_rel = float((d.max(axis=1) / np.abs(l_rows[:k]).max(axis=1)).max())
            agree = float(np.mean(r_rows[:k].argmax(1) == l_rows[:k].argmax(1)))
        else:
            max_abs = max_rel = agree = float("nan")
        all_ok = all_ok and mismatch is None
        short = p.replace("\n", "\\n")[:40]
        print(f"| `{short}` | {len(ids)} | {'none' if mismatch is None else mismatch} | "
              f"{max_abs:.4g} | {max_rel:.4g} | {agree:.3f} |")
        results["prompts"].append({"prompt": p, "ids": ids, "runnel": r_gen, "llama_cpp": l_gen,
                                   "first_mismatch": mismatch, "positions_compared": k,
                                   "max_abs_diff": max_abs, "max_rel_diff": max_rel,
                                   "top1_agreement": agree})

    if a.no_perplexity:
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
        return 0 if all_ok else 1

    text = open(a.text, encoding="utf-8").read()
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    if a.max_tokens:
        ids = ids[: a.max_tokens]
    t0 = time.time()
    l_nll, l_n = llama_perplexity(llm, ids, a.ctx, a.stride)
    t1 = time.time()
    r_nll, r_n, how = runnel_perplexity(a.runnel, a.model, ids, a.ctx, a.stride, a.threads, extra)
    t2 = time.time()
    rel = abs(math.exp(r_nll) - math.exp(l_nll)) / math.exp(l_nll)
    print(f"\n## Perplexity, {a.text} ({len(ids)} tokens, ctx {a.ctx}, stride {a.stride})\n")
    print("| engine | scored | mean NLL | perplexity | seconds |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| llama.cpp | {l_n} | {l_nll:.5f} | {math.exp(l_nll):.4f} | {t1 - t0:.1f} |")
    print(f"| runnel ({how}) | {r_n} | {r_nll:.5f} | {math.exp(r_nll):.4f} | {t2 - t1:.1f} |")
    print(f"\nperplexity relative difference: {100 * rel:.3f}% ({'ok' if rel < 0.005 else 'FAIL'}: < 0.5%)")
    results["perplexity"] = {"text": a.text, "tokens": len(ids), "ctx": a.ctx, "stride": a.stride,
                             "llama_cpp_mean_nll": l_nll, "runnel_mean_nll": r_nll,
                             "llama_cpp_scored": l_n, "runnel_scored": r_n,
                             "relative_difference": rel, "runnel_method": how}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if rel < 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
