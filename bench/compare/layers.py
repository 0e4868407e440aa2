"""Layer-by-layer comparison of runnel and llama.cpp on one prompt.

llama.cpp's named intermediates (attn_norm-0, Qcur-0, ..., l_out-29,
result_norm, result_output) are read through the scheduler's eval callback
while it processes the prompt; runnel's come from `runnel generate
--dump-layers` (call 0000: the prompt; --step N: greedy step N).  For every
name both have, prints max |d| / max |llama.cpp| and the relative RMS
difference; --save writes both sets (and llama.cpp's other tensors, e.g.
Qcur-L#2, the query after RoPE) to an .npz for a closer look.

  bench/compare/.venv/bin/python bench/compare/layers.py \\
      -m models/SmolLM2-135M-Instruct.Q4_1.gguf --runnel build/gguf/bin/runnel \\
      --prompt "The capital of France is" [--runnel-args "--kv-dtype f16"]
"""
import argparse
import ctypes
import glob
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

GGML_MAX_DIMS, GGML_MAX_OP_PARAMS, GGML_MAX_SRC, GGML_MAX_NAME = 4, 64, 10, 64


class GgmlTensor(ctypes.Structure):
    # struct ggml_tensor of the ggml.h that llama-cpp-python ships (include/ggml.h).
    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


def tensor_to_numpy(t):
    """A copy of an f32 tensor as [ne3, ne2, ne1, ne0], honouring its strides."""
    if t.type != 0 or not t.data:
        return None
    ne = [t.ne[i] for i in range(4)]
    nb = [t.nb[i] for i in range(4)]
    span = sum((ne[i] - 1) * nb[i] for i in range(4)) + 4
    buf = (ctypes.c_char * span).from_address(t.data)
    a = np.ndarray(shape=tuple(reversed(ne)), dtype=np.float32, buffer=buf,
                   strides=tuple(reversed(nb)))
    return np.array(a)


def llama_layers(model, ids, threads, wanted, flash_attn, kv_type, step=0):
    import llama_cpp
    got = {}

    @llama_cpp.ggml_backend_sched_eval_callback
    def cb(tp, ask, _ud):
        t = ctypes.cast(tp, ctypes.POINTER(GgmlTensor)).contents
        name = t.name.decode(errors="replace")
        base = re.sub(r"-\d+$", "", name)
        if ask:
            return base in wanted
        if base in wanted:
            a = tensor_to_numpy(t)
            if a is not None:
                # A name can be given to several nodes (Qcur before and after
                # RoPE): the later ones are kept as name#1, name#2, ...
                key, i = name, 0
                while key in got:
                    i += 1
                    key = f"{name}#{i}"
                got[key] = a
        return True

    kv = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[kv_type]
    # Llama() reads the callback from the context parameters it starts from.
    import llama_cpp.llama as llama_mod
    default_params = llama_mod.llama_cpp.llama_context_default_params

    def params_with_cb():
        p = default_params()
        p.cb_eval = cb
        return p

    llama_mod.llama_cpp.llama_context_default_params = params_with_cb
    try:
        llm = llama_cpp.Llama(model, n_ctx=1024, n_batch=512, n_threads=threads,
                              n_threads_batch=threads, logits_all=True, verbose=False,
                              flash_attn=flash_attn, type_k=kv, type_v=kv)
    finally:
        llama_mod.llama_cpp.llama_context_default_params = default_params
    llm._layers_cb = cb  # keep the callback alive with the context
    llm.reset()
    llm.eval(ids)
    for _ in range(step):  # greedy decode steps; keep only the last one's tensors
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        got.clear()
        llm.eval([tok])
    return got, llm


def runnel_layers(runnel, model, ids, threads, extra, step=0):
    d = tempfile.mkdtemp()
    cmd = [runnel, "generate", "-m", model, "--prompt-ids", ",".join(map(str, ids)), "--temp", "0",
           "-n", str(step + 1), "--ignore-eos", "-t", str(threads), "--dump-layers", d, *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    out = {}
    for p in glob.glob(os.path.join(d, f"{step:04d}-*.npy")):
        out[os.path.basename(p)[5:-4]] = np.load(p)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--runnel", default="build/gguf/bin/runnel")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--runnel-args", default="")
    ap.add_argument("--flash-attn", action="store_true")
    ap.add_argument("--kv-type", choices=["f16", "f32"], default="f16")
    ap.add_argument("--names", default="inp_embd,attn_norm,Qcur,Kcur,Vcur,kqv_out,attn_out,ffn_inp,"
                    "ffn_norm,ffn_out,l_out,result_norm,result_output")
    ap.add_argument("--step", type=int, default=0,
                    help="compare the forward call of greedy step N (0: the prompt)")
    ap.add_argument("--save", help="save both sets of tensors to this .npz")
    a = ap.parse_args()

    wanted = set(a.names.split(","))
    import llama_cpp  # noqa: F401
    tmp = llama_cpp.Llama(a.model, n_ctx=64, verbose=False, vocab_only=True)
    ids = tmp.tokenize(a.prompt.encode(), add_bos=False, special=True)
    del tmp
    ll, _ = llama_layers(a.model, ids, a.threads, wanted, a.flash_attn, a.kv_type, a.step)
    rn = runnel_layers(a.runnel, a.model, ids, a.threads, a.runnel_args.split(), a.step)
    print(f"prompt ids: {ids}")
    print(f"{'name':<20} {'shape':<16} {'max|d|/max|l|':>14} {'rms(d)/rms(l)':>14}")

    def key(n):
        m = re.match(r"(.*?)-(\d+)$", n)
        order = a.names.split(",")
        b = m.group(1) if m else n
        return (int(m.group(2)) if m else (-1 if n == "inp_embd" else 99),
                order.index(b) if b in order else 99)

    saved = {}
    for name in sorted(set(ll) & set(rn), key=key):
        rows = len(ids) if a.step == 0 else 1
        L = ll[name].reshape(rows, -1) if ll[name].size % rows == 0 else ll[name]
        R = rn[name].reshape(-1, L.shape[-1]) if rn[name].size % L.shape[-1] == 0 else None
        if R is not None and R.shape[0] < L.shape[0]:
            L = L[-R.shape[0]:]  # runnel's head runs on the rows it samples from
        if R is not None and R.shape != L.shape:
            R = None
        if R is None:
            print(f"{name:<20} size {ll[name].shape} vs {rn[name].shape}")
            continue
        d = np.abs(R - L)
        print(f"{name:<20} {str(L.shape):<16} {d.max() / np.abs(L).max():14.3e} "
              f"{np.sqrt((d ** 2).mean() / (L ** 2).mean()):14.3e}")
        saved["llama/" + name], saved["runnel/" + name] = L, R
    only = sorted(set(ll) - set(rn), key=key)
    if only:
        print(f"llama.cpp only: {len(only)} tensors ({' '.join(only[:6])} ...)")
    if a.save:
        for name in only:
            saved["llama/" + name] = ll[name]
        np.savez(a.save, **saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
