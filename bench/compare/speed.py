"""Prompt processing (pp) and generation (tg) speed, runnel against llama.cpp
(llama-cpp-python built from source for this machine), on the same GGUF
files, the same machine and the same number of threads.

runnel is measured with `runnel bench -m M -p 512 -n 128 -t T -r R --json`
(llama-bench's flags); when this runnel has no `bench` command, with
`runnel generate` on 512 random prompt ids and 128 new tokens, reading the
prompt and generation rates it prints on stderr.

llama.cpp: pp = one llama_decode of 512 tokens (batch 512) from an empty
cache; tg = 128 single-token decodes after that prompt, each followed by
reading the last logits, as generation does.  One warm-up, then R runs; the
mean is reported (and the spread).

  bench/compare/.venv/bin/python bench/compare/speed.py \
      --runnel build/gguf/bin/runnel models/bench/*.gguf
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def runnel_has_bench(runnel):
    r = subprocess.run([runnel, "bench", "--help"], capture_output=True, text=True)
    return r.returncode == 0


def runnel_bench(runnel, model, pp, tg, threads, reps, extra=()):
    """tokens/s for pp and tg: lists over the repetitions (or means)."""
    if runnel_has_bench(runnel):
        r = subprocess.run([runnel, "bench", "-m", model, "-p", str(pp), "-n", str(tg), "-t",
                            str(threads), "-r", str(reps), "--json", *extra], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"runnel bench failed: {r.stderr.strip()}")
        # JSON Lines (one object per test), or one JSON document.
        text = r.stdout.strip()
        try:
            data = json.loads(text)
            rows = data if isinstance(data, list) else data.get("results", [data])
        except json.JSONDecodeError:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        out = {}
        for row in rows:
            n_p, n_g = row.get("n_prompt", 0), row.get("n_gen", 0)
            key = "pp" if n_p and not n_g else "tg" if n_g and not n_p else None
            if key:
                out[key] = [float(x) for x in row.get("samples_ts", [row["avg_ts"]])]
        if "pp" in out and "tg" in out:
            return out["pp"], out["tg"], "runnel bench"
        raise RuntimeError(f"runnel bench --json: unexpected output: {r.stdout[:300]}")
    rng = np.random.default_rng(0)
    ids = ",".join(str(int(x)) for x in rng.integers(100, 10000, size=pp))
    pps, tgs = [], []
    for i in range(reps + 1):  # the first run warms up
        r = subprocess.run([runnel, "generate", "-m", model, "--prompt-ids", ids, "-n", str(tg),
                            "--ignore-eos", "--print-ids", "--temp", "0", "-t", str(threads)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"runnel generate failed: {r.stderr.strip()}")
        m = re.search(r"prompt: (\d+) tokens, ([\d.]+) tokens/s \| generated: (\d+) tokens, "
                      r"([\d.]+) tokens/s", r.stderr)
        if not m:
            raise RuntimeError(f"cannot read rates from runnel generate: {r.stderr.strip()}")
        if i:
            pps.append(float(m.group(2)))
            tgs.append(float(m.group(4)))
    return pps, tgs, "runnel generate (stderr rates)"


def llama_bench(model, pp, tg, threads, reps):
    import llama_cpp
    llm = llama_cpp.Llama(model, n_ctx=pp + tg + 16, n_batch=pp, n_ubatch=pp, n_threads=threads,
                          n_threads_batch=threads, logits_all=False, verbose=False)
    rng = np.random.default_rng(0)
    prompt = [int(x) for x in rng.integers(100, 10000, size=pp)]
    n_vocab = llm.n_vocab()

    def last_logits():  # without logits_all, llama-cpp-python keeps no copy in scores
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))

    pps, tgs = [], []
    for i in range(reps + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        tok = int(np.argmax(last_logits()))
        t2 = time.perf_counter()
        for _ in range(tg):
            llm.eval([tok])
            tok = int(np.argmax(last_logits()))
        t3 = time.perf_counter()
        if i:
            pps.append(pp / (t1 - t0))
            tgs.append(tg / (t3 - t2))
    del llm
    return pps, tgs


def fmt_rate(xs):
    if len(xs) > 1:
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"
    return f"{xs[0]:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="GGUF files")
    ap.add_argument("--runnel", default="build/gguf/bin/runnel")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--runnel-args", default="",
                    help="more arguments for `runnel bench`, e.g. --runnel-args=--llama-cpp-order")
    ap.add_argument("--runnel-only", action="store_true",
                    help="measure runnel alone (no llama-cpp-python needed)")
    ap.add_argument("--json", help="also write the raw numbers here")
    a = ap.parse_args()

    if a.runnel_only:
        print(f"threads {a.threads}, {a.reps} runs; tokens/s (mean ± sd)\n")
        print("| model | MiB | runnel pp t/s | runnel tg t/s | method |")
        print("| --- | --- | --- | --- | --- |")
        for m in a.models:
            r_pp, r_tg, how = runnel_bench(a.runnel, m, a.p, a.n, a.threads, a.reps, a.runnel_args.split())
            print(f"| {os.path.basename(m)} | {os.path.getsize(m) / 2**20:.0f} | pp{a.p} "
                  f"{fmt_rate(r_pp)} | tg{a.n} {fmt_rate(r_tg)} | {how} |", flush=True)
        return 0

    import llama_cpp
    rows = []
    for m in a.models:
        log(f"== {m}")
        l_pp, l_tg = llama_bench(m, a.p, a.n, a.threads, a.reps)
        log(f"   llama.cpp pp{a.p} {fmt_rate(l_pp)}  tg{a.n} {fmt_rate(l_tg)}")
        r_pp, r_tg, how = runnel_bench(a.runnel, m, a.p, a.n, a.threads, a.reps, a.runnel_args.split())
        log(f"   runnel    pp{a.p} {fmt_rate(r_pp)}  tg{a.n} {fmt_rate(r_tg)}  ({how})")
        rows.append({"model": m, "size_mib": os.path.getsize(m) / 2**20,
                     "llama_pp": l_pp, "llama_tg": l_tg, "runnel_pp": r_pp, "runnel_tg": r_tg,
                     "runnel_method": how})

    print(f"threads {a.threads}, {a.reps} runs after a warm-up; tokens/s (mean ± sd); "
          f"llama-cpp-python {llama_cpp.__version__}\n")
    print(f"| model | MiB | test | llama.cpp t/s | runnel t/s | runnel ÷ llama.cpp |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        name = os.path.basename(r["model"])
        for test, lk, rk in ((f"pp{a.p}", "llama_pp", "runnel_pp"), (f"tg{a.n}", "llama_tg", "runnel_tg")):
            ratio = statistics.mean(r[rk]) / statistics.mean(r[lk])
            print(f"| {name} | {r['size_mib']:.0f} | {test} | {fmt_rate(r[lk])} | {fmt_rate(r[rk])} | "
                  f"{ratio:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "p": a.p, "n": a.n, "reps": a.reps, "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
