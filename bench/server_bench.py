#!/usr/bin/env python3
"""Throughput and time to first token through `runnel serve`, against
`runnel bench` on the same model and threads, measured in one run.

    bench/server_bench.py RUNNEL MODEL [--threads 2] [--n-gen 128]
                          [--streams 1,64] [--prompt-tokens 1] [--rounds 4]
                          [--reps 3]

One `runnel serve` runs throughout.  Each round runs `runnel bench -p 0 -n N
--parallel S...` (decode only, -r 3) and, for each S, sends S streaming
/v1/completions at once --reps times (a prompt of --prompt-tokens token ids,
temperature 0, ignore_eos, N tokens each; the median rep counts); bench
first in even rounds, the server first in odd ones.  The prompt is one token
by default because bench's tg starts from one: the KV lengths, and so the
attention work of each step, are then the same on both sides.  Per S it
prints:

  bench tg        tokens/s of `runnel bench` at --parallel S
  serve decode    generated tokens / (last token - first token), summed over
                  the streams in the window where all S are decoding (the
                  like-for-like figure: bench tg times decode steps only)
  serve wall      all generated tokens / (last token - request sent): what a
                  client sees, prompt processing and HTTP included
  TTFT            time from sending to the first text chunk (median, max)

and the ratios serve/bench of that round.  Only the standard library is used.
"""
import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time


def bench(binary, model, threads, n_gen, streams):
    out = subprocess.run([binary, "bench", "-m", model, "-p", "0", "-n", str(n_gen), "-t", str(threads),
                          "--parallel", ",".join(map(str, streams)), "-r", "3", "-o", "jsonl"],
                         check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    res = {}
    for r in rows:
        res[int(r["batch"])] = float(r["avg_ts"])
    return res


def start_server(binary, model, threads, parallel, ctx):
    p = subprocess.Popen([binary, "serve", "-m", model, "--port", "0", "-t", str(threads), "--parallel",
                          str(parallel), "--max-queue", str(parallel), "-c", str(ctx)],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            raise RuntimeError("runnel serve exited with %s" % p.wait())
        m = re.search(r"ready on http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1))
    p.kill()
    raise RuntimeError("runnel serve did not become ready")


def post(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError("%s: %d %s" % (path, r.status, data[:200]))
    return json.loads(data)


def one_stream(port, prompt, n_gen, out, i, barrier):
    """Streams one completion; records (t_sent, [arrival time of each text
    chunk], completion_tokens)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"prompt": prompt, "max_tokens": n_gen, "temperature": 0, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}})
    barrier.wait()
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("stream %d: HTTP %d %s" % (i, r.status, r.read()[:200]))
    times, tokens, done = [], 0, False
    for line in r:
        if not line.startswith(b"data: "):
            continue
        payload = line[6:].strip()
        if payload == b"[DONE]":
            done = True
            break
        ev = json.loads(payload)
        if ev.get("usage"):
            tokens = ev["usage"]["completion_tokens"]
        if ev.get("choices") and ev["choices"][0].get("text"):
            times.append(time.perf_counter())
    c.close()
    if not done or tokens != n_gen:
        raise RuntimeError("stream %d: done=%s, %d tokens of %d" % (i, done, tokens, n_gen))
    out[i] = (t0, times, tokens)


def serve_round(port, prompt, n_gen, s):
    out = [None] * s
    barrier = threading.Barrier(s)
    ts = [threading.Thread(target=one_stream, args=(port, prompt, n_gen, out, i, barrier)) for i in range(s)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if any(o is None for o in out):
        raise RuntimeError("a stream failed")
    t_sent = min(o[0] for o in out)
    last = max(o[1][-1] for o in out)
    # The window where every stream is decoding: from the last first token to
    # the first last token.  Chunks of text are counted as tokens there: with
    # ignore_eos and the default model one chunk is one token, save where a
    # chunk waits for the rest of a UTF-8 character (rare, and it only lowers
    # the figure).
    w0 = max(o[1][0] for o in out)
    w1 = min(o[1][-1] for o in out)
    in_window = sum(sum(1 for t in o[1] if w0 < t <= w1) for o in out)
    decode = in_window / (w1 - w0) if w1 > w0 else float("nan")
    wall = sum(o[2] for o in out) / (last - t_sent)
    ttft = sorted(o[1][0] - o[0] for o in out)
    return decode, wall, statistics.median(ttft), ttft[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runnel")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--streams", default="1,64")
    ap.add_argument("--prompt-tokens", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    streams = [int(x) for x in a.streams.split(",")]
    rows = {s: [] for s in streams}
    # A KV pool that holds every stream whole (as bench sizes its own), so no
    # sequence is preempted; the run checks that none was.
    ctx = max(streams) * (a.prompt_tokens + a.n_gen + 32)
    proc, port = start_server(a.runnel, a.model, a.threads, max(streams), ctx)
    try:
        ids = post(port, "/tokenize", {"content": "Once upon a time, in a land far away, " * 8})["tokens"]
        prompt = ids[:a.prompt_tokens]
        serve_round(port, prompt, 8, 1)  # warm-up
        for rnd in range(a.rounds):
            # bench then serve in even rounds, serve then bench in odd ones, so
            # that drift over the run falls on both sides.
            res = {}
            for part in (("bench", "serve") if rnd % 2 == 0 else ("serve", "bench")):
                if part == "bench":
                    res["bench"] = bench(a.runnel, a.model, a.threads, a.n_gen, streams)
                else:
                    res["serve"] = {s: sorted((serve_round(port, prompt, a.n_gen, s) for _ in range(a.reps)),
                                              key=lambda x: x[0])[a.reps // 2] for s in streams}
            for s in streams:
                b = res["bench"][s]
                decode, wall, ttft_med, ttft_max = res["serve"][s]
                rows[s].append((b, decode, wall, ttft_med, ttft_max))
                print("round %d, %2d streams: bench tg %.2f tok/s; serve decode %.2f (%.3f), wall %.2f (%.3f); "
                      "TTFT median %.1f ms, max %.1f ms" % (rnd + 1, s, b, decode, decode / b, wall, wall / b,
                                                           1e3 * ttft_med, 1e3 * ttft_max), flush=True)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/metrics")
        m = dict(line.split(" ") for line in c.getresponse().read().decode().splitlines()
                 if line and not line.startswith("#"))
        c.close()
        print("server: -c %d, %s preemptions, %s scheduler steps" % (ctx, m.get("runnel_preemptions_total"),
                                                                   m.get("runnel_scheduler_steps_total")))
        if float(m.get("runnel_preemptions_total", "0")) != 0:
            raise RuntimeError("sequences were preempted: the figures would include recomputation")
    finally:
        proc.terminate()
        proc.wait(30)
    print("\n| streams | bench tg tok/s | serve decode tok/s | decode / bench | serve wall tok/s | wall / bench "
          "| TTFT median ms | TTFT max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for s in streams:
        r = rows[s]
        med = lambda k: statistics.median(x[k] for x in r)  # noqa: E731
        ratio = lambda k: statistics.median(x[k] / x[0] for x in r)  # noqa: E731
        print("| %d | %.2f | %.2f | %.3f | %.2f | %.3f | %.1f | %.1f |"
              % (s, med(0), med(1), ratio(1), med(2), ratio(2), 1e3 * med(3), 1e3 * med(4)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
