#!/usr/bin/env python3
"""Writes tests/data/llamacpp/: a tiny LLaMA as llama.cpp itself stores, reads
and runs it, for the tests in tests/unit/test_llamacpp_fixtures.cpp.

- The source (not kept) is an f32 GGUF written by gguf-py: random weights
  whose values are exact in f16, 1 layer, hidden 256, ffn 256, 4 heads of 64
  with 2 kv heads, an untied head, and an embedded SentencePiece vocabulary
  (byte fallback, 341 tokens).  Every matrix row is 256 long, so every K-quant
  applies as it is.
- `tiny-<type>.gguf` is that file as llama.cpp's own quantizer writes it
  (`llama_model_quantize`, pure: every matrix in the one type), for each type
  runnel reads.  `tiny-f16.gguf` holds the source's values exactly, so
  `runnel quantize` from it can be compared with llama.cpp's files.
- `manifest.json` holds, per file:
  - each tensor's ggml type, shape and an FNV-1a 64 hash of its values as
    ggml's own `to_float` dequantizes them (through ctypes), checked against
    gguf-py's independent numpy dequantizer;
  - llama.cpp's logits for a fixed prompt (every position) and for a greedy
    continuation decoded one token at a time, in `<type>.logits.f32`
    (little-endian float32, prompt rows then decode rows), and the greedy ids;
    once with llama.cpp's defaults for a CPU (f16 KV cache, no flash attention);
  - llama.cpp's tokenization of a few texts with the embedded vocabulary.

Setup and run (pinned in requirements-llamacpp.txt):
    bash tools/reference/setup-llamacpp.sh
    tools/reference/.venv-llamacpp/bin/python tools/reference/make_llamacpp_fixtures.py

The logits depend on the CPU llama.cpp was built for (AVX-512 here); the
manifest records the build's system info.
"""
import ctypes
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import gguf
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "llamacpp")

H, F, L, NH, NKV, CTX = 256, 256, 1, 4, 2, 64
SEED = 20261204
PROMPT = [1, 300, 17, 280, 5, 299, 263, 301, 42, 270, 288, 3]
N_DECODE = 12
TEXTS = ["Hello world", "the cat sat on the mat", "  two leading spaces",
         "caf\u00e9 \u00fcber \U0001F600", "line one\nline two"]

# (name as runnel's dtype table spells it, llama.cpp ftype, ggml type id)
TYPES = [
    ("f16", "LLAMA_FTYPE_MOSTLY_F16", 1),
    ("bf16", "LLAMA_FTYPE_MOSTLY_BF16", 30),
    ("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", 8),
    ("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", 2),
    ("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1", 3),
    ("q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0", 6),
    ("q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1", 7),
    ("q4_k", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 12),  # pure: every matrix Q4_K
    ("q5_k", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 13),  # pure: every matrix Q5_K
    ("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", 14),
]


def vocab():
    """<unk> <s> </s>, the 256 byte tokens, then pieces with scores."""
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["\u2581" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["\u2581the", "\u2581cat", "at", "on", "in", "he", "er", "an", "re", "\u2581wor",
               "ld", "\u2581Hel", "lo", "\u2581sat", "\u2581mat", "ne", "\u2581li", "wo",
               "\u2581\u2581", "\u00e9", "\u00fc", "ber", "ca", "sp", "ac", "es", "ing", "\u2581two"]
    for i, p in enumerate(pieces):
        toks.append(p)
        scores.append(-1.0 - 0.01 * i - (0.5 * len(p) if len(p) == 1 else 0.0))
        types.append(1)
    assert len(set(toks)) == len(toks)
    return toks, scores, types


def weights(n_vocab):
    rng = np.random.default_rng(SEED)
    out = {}

    def mat(rows, cols):
        x = rng.standard_normal((rows, cols)) / np.sqrt(cols)
        return x.astype(np.float16).astype(np.float32)  # exact in f16

    out["token_embd.weight"] = mat(n_vocab, H)
    for l in range(L):
        b = f"blk.{l}."
        out[b + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
        out[b + "attn_q.weight"] = mat(H, H)
        out[b + "attn_k.weight"] = mat(NKV * H // NH, H)
        out[b + "attn_v.weight"] = mat(NKV * H // NH, H)
        out[b + "attn_output.weight"] = mat(H, H)
        out[b + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
        out[b + "ffn_gate.weight"] = mat(F, H)
        out[b + "ffn_up.weight"] = mat(F, H)
        out[b + "ffn_down.weight"] = mat(H, F)
    out["output_norm.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
    out["output.weight"] = mat(n_vocab, H)  # untied: a tied head greedily repeats its input
    return out


def write_source(path, dtype):
    toks, scores, types = vocab()
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("runnel-llamacpp-fixture")
    w.add_context_length(CTX)
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(H // NH)
    w.add_file_type(1 if dtype == np.float16 else 0)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    for name, x in weights(len(toks)).items():
        w.add_tensor(name, x.astype(dtype) if x.ndim == 2 else x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src, dst, ftype_name):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, ftype_name)
    p.nthread = 2
    p.pure = True
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {dst}: {rc}")


class GgmlTraits(ctypes.Structure):
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


def ggml_lib():
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_get_type_traits.restype = ctypes.POINTER(GgmlTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return lib


TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


def ggml_dequantize(lib, type_id, raw, n):
    """ggml's own to_float over a whole tensor (rows are whole blocks)."""
    if type_id == 0:
        return np.frombuffer(raw, dtype=np.float32).copy()
    t = lib.ggml_get_type_traits(type_id).contents
    assert t.to_float, type_id
    fn = TO_FLOAT(t.to_float)
    src = np.frombuffer(raw, dtype=np.uint8).copy()
    dst = np.empty(n, dtype=np.float32)
    fn(src.ctypes.data, dst.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n)
    return dst


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:  # slow in Python but the tensors are small
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def fnv1a64_np(arr):
    return fnv1a64(arr.astype("<f4").tobytes())


def tensors_of(lib, path):
    r = gguf.GGUFReader(path)
    out = []
    for t in r.tensors:
        shape = [int(s) for s in t.shape]  # ggml order: ne0 (row length) first
        n = int(np.prod(shape))
        raw = bytes(t.data.tobytes())
        ours = ggml_dequantize(lib, int(t.tensor_type), raw, n)
        theirs = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), t.tensor_type)
        theirs = np.asarray(theirs, dtype=np.float32).reshape(-1)
        if not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
            raise RuntimeError(f"{path} {t.name}: ggml and gguf-py dequantize differently")
        out.append({"name": t.name, "ggml_type": int(t.tensor_type), "ne": shape,
                    "fnv1a64_f32": fnv1a64_np(ours)})
    return out


def run_llama(path):
    llm = llama_cpp.Llama(path, n_ctx=CTX, n_batch=CTX, n_ubatch=CTX, n_threads=2,
                          n_threads_batch=2, logits_all=True, verbose=False, flash_attn=False,
                          type_k=1, type_v=1, seed=0)
    llm.reset()
    llm.eval(PROMPT)
    rows = [np.array(llm.scores[i], dtype=np.float32) for i in range(len(PROMPT))]
    ids = []
    for _ in range(N_DECODE):
        nxt = int(np.argmax(rows[-1]))  # ties: the lowest id, as runnel's argmax
        ids.append(nxt)
        llm.eval([nxt])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    toks = {t: llm.tokenize(t.encode(), add_bos=True, special=False) for t in TEXTS}
    return np.stack(rows), ids, toks


def main():
    os.makedirs(OUT, exist_ok=True)
    lib = ggml_lib()
    manifest = {
        "generator": "tools/reference/make_llamacpp_fixtures.py",
        "llama_cpp_python": llama_cpp.__version__,
        "gguf_py": getattr(gguf, "__version__", "see requirements-llamacpp.txt"),
        "system_info": llama_cpp.llama_print_system_info().decode(),
        "model": {"hidden": H, "ffn": F, "layers": L, "heads": NH, "kv_heads": NKV,
                  "tied_head": False, "seed": SEED},
        "prompt": PROMPT, "n_decode": N_DECODE,
        "kv_cache": "f16", "flash_attn": False,
        "files": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        src32 = os.path.join(tmp, "tiny-f32.gguf")
        write_source(src32, np.float32)
        for name, ftype, type_id in TYPES:
            dst = os.path.join(OUT, f"tiny-{name}.gguf")
            quantize(src32, dst, ftype)
            tensors = tensors_of(lib, dst)
            for t in tensors:
                want = type_id if len(t["ne"]) == 2 else 0
                if t["ggml_type"] != want:
                    raise RuntimeError(f"{dst} {t['name']}: type {t['ggml_type']}, want {want}")
            logits, ids, toks = run_llama(dst)
            logits.astype("<f4").tofile(os.path.join(OUT, f"tiny-{name}.logits.f32"))
            manifest["files"][name] = {
                "file": f"tiny-{name}.gguf",
                "made_by": "llama_model_quantize, pure, from an f32 file of values exact in f16",
                "ggml_type": type_id,
                "sha256": hashlib.sha256(open(dst, "rb").read()).hexdigest(),
                "tensors": tensors,
                "logits": f"tiny-{name}.logits.f32",
                "logits_rows": int(logits.shape[0]),
                "n_vocab": int(logits.shape[1]),
                "greedy": ids,
                "tokenize": [{"text": t, "ids": v} for t, v in toks.items()],
            }
            print(f"{name}: {os.path.getsize(dst)} bytes, greedy {ids}", file=sys.stderr)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")


DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_PROMPTS = ["The capital of France is", "Once upon a time,", "def fibonacci(n):"]
DEFAULT_STEPS = 32


def default_model_greedy():
    """llama.cpp's greedy ids on the default model (scripts/fetch-default-model.sh)."""
    llm = llama_cpp.Llama(DEFAULT_MODEL, n_ctx=256, n_batch=256, n_threads=2, n_threads_batch=2,
                          logits_all=True, verbose=False, flash_attn=False, type_k=1, type_v=1)
    cases = []
    for text in DEFAULT_PROMPTS:
        prompt = llm.tokenize(text.encode(), add_bos=True, special=False)
        llm.reset()
        llm.eval(prompt)
        ids = []
        for _ in range(DEFAULT_STEPS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            nxt = int(np.argmax(logits))
            ids.append(nxt)
            llm.eval([nxt])
        cases.append({"text": text, "prompt": prompt, "greedy": ids,
                      "greedy_text": llm.detokenize(ids).decode("utf-8", "replace")})
    out = {"generator": "tools/reference/make_llamacpp_fixtures.py",
           "llama_cpp_python": llama_cpp.__version__,
           "system_info": llama_cpp.llama_print_system_info().decode(),
           "model": os.path.basename(DEFAULT_MODEL),
           "sha256": hashlib.sha256(open(DEFAULT_MODEL, "rb").read()).hexdigest(),
           "kv_cache": "f16", "flash_attn": False, "cases": cases}
    with open(os.path.join(OUT, "default-model-greedy.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for c in cases:
        print(repr(c["text"]), "->", repr(c["greedy_text"]), file=sys.stderr)


if __name__ == "__main__":
    main()
    if os.path.exists(DEFAULT_MODEL):
        default_model_greedy()
    else:
        print(f"{DEFAULT_MODEL} not found (scripts/fetch-default-model.sh): "
              "default-model-greedy.json not rewritten", file=sys.stderr)
