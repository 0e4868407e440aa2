"""Makes the GGUF files speed.py compares, under models/bench/ (git-ignored).

smollm2: the default model (scripts/fetch-default-model.sh, Q4_1) written as
    F16 by `runnel quantize` (its Q4_1 values, exactly), then quantized from
    that F16 by both tools to Q8_0, Q4_0 and Q4_1 (and F16 by llama.cpp).
tinyllama: a TinyLlama-1.1B-shaped LLaMA (hidden 2048, 22 layers, 32 heads /
    4 kv, ffn 5632) with SmolLM2's 49152-token vocabulary (GGUF files need one
    for llama.cpp to load them) and random N(0, 0.02) weights, written as an
    f16 Hugging Face folder with numpy, converted to F16 GGUF by runnel, then
    quantized by both tools.

llama.cpp quantizes with `pure` set (every matrix in the one type; by default
it would write the output / tied embeddings as Q6_K for Q4_0 and Q4_1), so
both tools' files hold the same types.  The exception is Q4_K_M (llama.cpp
only, from its own F16 file): its default mix of Q4_K and Q6_K (and whatever
else llama.cpp picks per tensor), the file a user downloads.  SmolLM2's
rows of 576 are no multiple of 256, so llama.cpp writes most matrices of
that file as Q5_0 / Q8_0 and only ffn_down (rows of 1536) as Q4_K / Q6_K;
runnel has no Q5_0, so smollm2-q4_k_m-q8_0.mixed.gguf is the same file with
each Q5_0 tensor replaced by the tensor of llama.cpp's Q8_0 file.

  bench/compare/.venv/bin/python bench/compare/prepare.py --runnel build/gguf/bin/runnel [smollm2] [tinyllama]
"""
import argparse
import ctypes
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "models", "bench")
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
TYPES = ["q8_0", "q4_0", "q4_1"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def runnel_quantize(runnel, src, dst, typ, tokenizer=None):
    if os.path.exists(dst):
        return
    cmd = [runnel, "quantize", "-m", src, "-o", dst, "--type", typ]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    t0 = time.time()
    subprocess.run(cmd, check=True)
    log(f"runnel quantize {typ}: {time.time() - t0:.1f} s -> {dst}")


def llama_quantize(src, dst, typ, threads, pure=True):
    if os.path.exists(dst):
        return
    import llama_cpp
    ftype = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
             "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1,
             "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[typ]
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = threads
    p.pure = pure
    t0 = time.time()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {dst}, {typ}) returned {rc}")
    log(f"llama.cpp quantize {typ}: {time.time() - t0:.1f} s -> {dst}")


def replace_tensors(src, donor, dst, types):
    """Copies GGUF `src` to `dst` with each tensor of a ggml type id in `types`
    taken (type and bytes) from GGUF `donor`; metadata bytes unchanged."""
    if os.path.exists(dst):
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import compare_quantized
    import gguf_meta

    def header(path):
        with open(path, "rb") as f:
            r = gguf_meta._Reader(f)
            assert f.read(4) == b"GGUF", path
            version, n_tensors, n_kv = r.unpack("<I"), r.unpack("<Q"), r.unpack("<Q")
            kv_begin = f.tell()
            align = 32
            for _ in range(n_kv):
                k = r.string()
                v = r.value(r.unpack("<I"))
                if k == "general.alignment":
                    align = v
            kv_end = f.tell()
            f.seek(kv_begin)
            kv = f.read(kv_end - kv_begin)
            f.seek(kv_end)
            infos = []
            for _ in range(n_tensors):
                name = r.string()
                ne = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
                infos.append((name, ne, r.unpack("<I"), r.unpack("<Q")))
        return version, n_kv, kv, align, infos

    version, n_kv, kv, align, infos = header(src)
    data_a, data_d = compare_quantized.tensor_bytes(src), compare_quantized.tensor_bytes(donor)
    out_infos, blobs, off = [], [], 0
    for name, ne, t, _ in infos:
        t, blob = data_d[name] if t in types else data_a[name]
        out_infos.append((name, ne, t, off))
        blobs.append(blob + b"\0" * (-len(blob) % align))
        off += len(blobs[-1])
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos), n_kv) + kv
    for name, ne, t, o in out_infos:
        nb = name.encode()
        head += struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", t, o)
    head += b"\0" * (-len(head) % align)
    with open(dst + ".part", "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(dst + ".part", dst)
    log(f"{src} with types {sorted(types)} from {donor} -> {dst}")


def write_random_llama(folder, cfg, seed=0):
    """An f16 Hugging Face LLaMA folder with N(0, 0.02) values, norms 1."""
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return
    os.makedirs(folder, exist_ok=True)
    H, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    V, nh, nkv = cfg["vocab_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    shapes = [("model.embed_tokens.weight", (V, H))]
    for i in range(L):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", (H,)),
                   (p + "self_attn.q_proj.weight", (nh * hd, H)),
                   (p + "self_attn.k_proj.weight", (nkv * hd, H)),
                   (p + "self_attn.v_proj.weight", (nkv * hd, H)),
                   (p + "self_attn.o_proj.weight", (H, nh * hd)),
                   (p + "post_attention_layernorm.weight", (H,)),
                   (p + "mlp.gate_proj.weight", (F, H)),
                   (p + "mlp.up_proj.weight", (F, H)),
                   (p + "mlp.down_proj.weight", (H, F))]
    shapes += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    header, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    # Speed does not depend on the values: matrices are windows at random
    # offsets into one pool of 16M N(0, 0.02) draws (fast on a small machine).
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(1 << 24, dtype=np.float32) * 0.02).astype(np.float16)
    pool = np.concatenate([pool, pool])
    tmp = os.path.join(folder, "model.safetensors.part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape in shapes:
            n = int(np.prod(shape))
            if len(shape) == 1:
                f.write(np.ones(n, dtype=np.float16).tobytes())
                continue
            done = 0
            while done < n:
                k = min(n - done, 1 << 24)
                o = int(rng.integers(0, 1 << 24))
                f.write(pool[o:o + k].tobytes())
                done += k
    os.replace(tmp, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    log(f"wrote {folder} ({off / 2**30:.2f} GiB of f16 weights)")


TINYLLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
    "num_key_value_heads": 4, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
    "vocab_size": 49152, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", nargs="*", default=["smollm2", "tinyllama"])
    ap.add_argument("--runnel", default=os.path.join(ROOT, "build", "gguf", "bin", "runnel"))
    ap.add_argument("-t", "--threads", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(DEFAULT_MODEL):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-default-model.sh")], check=True)
    for which in a.which:
        if which == "smollm2":
            f16 = os.path.join(OUT, "smollm2-f16.runnel.gguf")
            runnel_quantize(a.runnel, DEFAULT_MODEL, f16, "f16")
        elif which == "tinyllama":
            folder = os.path.join(OUT, "tinyllama-random-hf")
            write_random_llama(folder, TINYLLAMA)
            f16 = os.path.join(OUT, "tinyllama-f16.runnel.gguf")
            runnel_quantize(a.runnel, folder, f16, "f16", tokenizer=DEFAULT_MODEL)
        else:
            raise SystemExit(f"unknown model set {which!r} (smollm2, tinyllama)")
        llama_quantize(f16, os.path.join(OUT, f"{which}-f16.llama.gguf"), "f16", a.threads)
        for t in TYPES:
            runnel_quantize(a.runnel, f16, os.path.join(OUT, f"{which}-{t}.runnel.gguf"), t)
            llama_quantize(f16, os.path.join(OUT, f"{which}-{t}.llama.gguf"), t, a.threads)
        llama_quantize(os.path.join(OUT, f"{which}-f16.llama.gguf"),
                       os.path.join(OUT, f"{which}-q4_k_m.llama.gguf"), "q4_k_m", a.threads, pure=False)
        if which == "smollm2":
            replace_tensors(os.path.join(OUT, "smollm2-q4_k_m.llama.gguf"),
                            os.path.join(OUT, "smollm2-q8_0.llama.gguf"),
                            os.path.join(OUT, "smollm2-q4_k_m-q8_0.mixed.gguf"), {6})
    for f in sorted(os.listdir(OUT)):
        if f.endswith(".gguf"):
            print(os.path.join(OUT, f))


if __name__ == "__main__":
    main()
