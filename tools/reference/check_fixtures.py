#!/usr/bin/env python3
"""Independent NumPy re-implementation of the three architectures, used to
check the fixtures in tests/data/models/ without transformers.

It reads only config.json + model.safetensors (applying the same config
defaults a loader has to apply) and recomputes, in float32:
  * the full-forward logits of every prompt in reference.json,
  * the 32-token greedy continuation with a KV cache ("greedy") and without
    ("greedy_uncached"), including HF's stateful dynamic-RoPE behaviour,
  * the per-token NLL / perplexity of perplexity.json.

It doubles as an executable description of what the C++ side must do.

Usage:
  tools/reference/.venv/bin/python tools/reference/check_fixtures.py [--dir tests/data/models] [VARIANT ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

F = np.float32
RTOL = 1e-4
ATOL = 1e-4


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + F(eps))) * w + b


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + F(eps)) * w


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def attend(q, k, v, q_pos, scale, bias=None):
    """q: [H,T,d] for absolute positions q_pos; k,v: [Hkv,S,d] for positions 0..S-1.
    Query head h uses kv head h // (H/Hkv)."""
    H, Hkv = q.shape[0], k.shape[0]
    rep = H // Hkv
    k = np.repeat(k, rep, axis=0)
    v = np.repeat(v, rep, axis=0)
    s = (q @ k.transpose(0, 2, 1)) * F(scale)
    if bias is not None:
        s = s + bias
    S = k.shape[1]
    causal = np.arange(S)[None, :] > np.asarray(q_pos)[:, None]
    s = np.where(causal[None], F(-np.inf), s)
    return softmax(s) @ v  # [H,T,d]


class Model:
    """Shared driver: forward(tokens, cache) appends to cache and returns logits."""

    def __init__(self, d: Path):
        self.cfg = json.loads((d / "config.json").read_text())
        raw = load_file(str(d / "model.safetensors"))
        self.w = {}
        for k, t in raw.items():
            for prefix in ("model.decoder.", "model.", "transformer.", "decoder."):
                if k.startswith(prefix):
                    k = k[len(prefix):]
                    break
            self.w[k] = t.astype(F)

    def new_cache(self):
        return {"k": [None] * self.n_layers, "v": [None] * self.n_layers, "len": 0}

    def cache_append(self, cache, i, k, v):
        if cache["k"][i] is None:
            cache["k"][i], cache["v"][i] = k, v
        else:
            cache["k"][i] = np.concatenate([cache["k"][i], k], axis=1)
            cache["v"][i] = np.concatenate([cache["v"][i], v], axis=1)
        return cache["k"][i], cache["v"][i]


class OPT(Model):
    def __init__(self, d):
        super().__init__(d)
        c = self.cfg
        self.n_layers = c["num_hidden_layers"]
        self.H = c["num_attention_heads"]
        self.hd = c["hidden_size"] // self.H
        self.pre = c.get("do_layer_norm_before", True)
        self.final_ln = self.pre and not c.get("_remove_final_layer_norm", False)
        self.eps = 1e-5  # torch.nn.LayerNorm default; OPT has no config key for it
        assert c.get("activation_function", "relu") == "relu"
        # OPT defaults to a tied head: lm_head.weight is not stored.
        self.head = self.w.get("lm_head.weight", self.w["embed_tokens.weight"])

    def forward(self, tokens, cache):
        w, hd = self.w, self.hd
        start = cache["len"]
        pos = np.arange(start, start + len(tokens))
        x = w["embed_tokens.weight"][tokens]
        if "project_in.weight" in w:
            x = linear(x, w["project_in.weight"])
        x = x + w["embed_positions.weight"][pos + 2]  # OPT's learned positions are offset by 2
        for i in range(self.n_layers):
            p = f"layers.{i}."
            ln1 = lambda t: layer_norm(t, w[p + "self_attn_layer_norm.weight"], w[p + "self_attn_layer_norm.bias"], self.eps)
            ln2 = lambda t: layer_norm(t, w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"], self.eps)
            h = ln1(x) if self.pre else x
            q = linear(h, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"]) * F(hd ** -0.5)
            k = linear(h, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"])
            v = linear(h, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"])
            sh = lambda t: t.reshape(len(tokens), -1, hd).transpose(1, 0, 2)
            K, V = self.cache_append(cache, i, sh(k), sh(v))
            a = attend(sh(q), K, V, pos, 1.0).transpose(1, 0, 2).reshape(len(tokens), -1)
            x = x + linear(a, w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"])
            if not self.pre:
                x = ln1(x)
            h = ln2(x) if self.pre else x
            f = np.maximum(linear(h, w[p + "fc1.weight"], w[p + "fc1.bias"]), 0)
            x = x + linear(f, w[p + "fc2.weight"], w[p + "fc2.bias"])
            if not self.pre:
                x = ln2(x)
        cache["len"] += len(tokens)
        if self.final_ln:
            x = layer_norm(x, w["final_layer_norm.weight"], w["final_layer_norm.bias"], self.eps)
        if "project_out.weight" in w:
            x = linear(x, w["project_out.weight"])
        return x @ self.head.T


class Llama(Model):
    def __init__(self, d):
        super().__init__(d)
        c = self.cfg
        self.n_layers = c["num_hidden_layers"]
        self.H = c["num_attention_heads"]
        self.Hkv = c.get("num_key_value_heads") or self.H
        self.hd = c.get("head_dim") or c["hidden_size"] // self.H
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.maxpos = c["max_position_embeddings"]
        rs = c.get("rope_scaling") or {}
        self.rope_type = rs.get("rope_type", rs.get("type", "default"))
        self.rs = rs
        if c.get("tie_word_embeddings", False):
            self.head = self.w["embed_tokens.weight"]
        else:
            self.head = self.w["lm_head.weight"]

    def inv_freq(self, seq_len):
        d = self.hd
        expo = np.arange(0, d, 2, dtype=np.int64).astype(F) / F(d)
        base = self.theta
        if self.rope_type == "dynamic":
            f = self.rs["factor"]
            s = max(seq_len, self.maxpos)
            base = F(base) * (F(f) * F(s) / F(self.maxpos) - F(f - 1)) ** F(d / (d - 2))
        inv = F(1.0) / (F(base) ** expo)
        if self.rope_type == "linear":
            inv = inv / F(self.rs["factor"])
        elif self.rope_type == "llama3":
            f, lo, hi = self.rs["factor"], self.rs["low_freq_factor"], self.rs["high_freq_factor"]
            old = self.rs["original_max_position_embeddings"]
            wl = F(2 * math.pi) / inv
            scaled = np.where(wl > old / lo, inv / F(f), inv)
            smooth = (F(old) / wl - F(lo)) / F(hi - lo)
            smoothed = (1 - smooth) * scaled / F(f) + smooth * scaled
            medium = ~(wl < old / hi) & ~(wl > old / lo)
            inv = np.where(medium, smoothed, scaled)
        elif self.rope_type not in ("default", "dynamic"):
            raise NotImplementedError(self.rope_type)
        return inv.astype(F)

    def new_cache(self):
        c = super().new_cache()
        # HF dynamic RoPE state (LlamaRotaryEmbedding.max_seq_len_cached).
        c["rope_seq"] = self.maxpos
        c["inv_freq"] = self.inv_freq(self.maxpos)
        return c

    def rope(self, cache, pos):
        if self.rope_type == "dynamic":
            seq_len = int(pos.max()) + 1
            if seq_len > cache["rope_seq"]:
                cache["inv_freq"], cache["rope_seq"] = self.inv_freq(seq_len), seq_len
            if seq_len < self.maxpos and cache["rope_seq"] > self.maxpos:
                cache["inv_freq"], cache["rope_seq"] = self.inv_freq(self.maxpos), self.maxpos
        fr = pos.astype(F)[:, None] * cache["inv_freq"][None, :]
        emb = np.concatenate([fr, fr], -1)
        return np.cos(emb), np.sin(emb)

    def forward(self, tokens, cache):
        w, hd = self.w, self.hd
        start = cache["len"]
        pos = np.arange(start, start + len(tokens))
        cos, sin = self.rope(cache, pos)

        def rot(t):  # t: [h,T,d], rotate-half convention
            t1, t2 = t[..., : hd // 2], t[..., hd // 2:]
            return t * cos + np.concatenate([-t2, t1], -1) * sin

        x = w["embed_tokens.weight"][tokens]
        for i in range(self.n_layers):
            p = f"layers.{i}."
            b = lambda n: w.get(p + n + ".bias")
            h = rms_norm(x, w[p + "input_layernorm.weight"], self.eps)
            q = linear(h, w[p + "self_attn.q_proj.weight"], b("self_attn.q_proj"))
            k = linear(h, w[p + "self_attn.k_proj.weight"], b("self_attn.k_proj"))
            v = linear(h, w[p + "self_attn.v_proj.weight"], b("self_attn.v_proj"))
            sh = lambda t: t.reshape(len(tokens), -1, hd).transpose(1, 0, 2)
            K, V = self.cache_append(cache, i, rot(sh(k)), sh(v))
            a = attend(rot(sh(q)), K, V, pos, hd ** -0.5).transpose(1, 0, 2).reshape(len(tokens), -1)
            x = x + linear(a, w[p + "self_attn.o_proj.weight"], b("self_attn.o_proj"))
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps)
            g = linear(h, w[p + "mlp.gate_proj.weight"], b("mlp.gate_proj"))
            u = linear(h, w[p + "mlp.up_proj.weight"], b("mlp.up_proj"))
            x = x + linear(g / (1 + np.exp(-g)) * u, w[p + "mlp.down_proj.weight"], b("mlp.down_proj"))
        cache["len"] += len(tokens)
        x = rms_norm(x, w["norm.weight"], self.eps)
        return x @ self.head.T


class Bloom(Model):
    def __init__(self, d):
        super().__init__(d)
        c = self.cfg
        self.n_layers = c.get("n_layer", c.get("num_hidden_layers"))
        self.H = c.get("n_head", c.get("num_attention_heads"))
        self.hd = c["hidden_size"] // self.H
        self.eps = c.get("layer_norm_epsilon", 1e-5)
        assert not c.get("apply_residual_connection_post_layernorm", False)
        n = self.H
        closest = 2 ** math.floor(math.log2(n))
        base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
        sl = [base ** p for p in range(1, closest + 1)]
        if closest != n:
            eb = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
            sl += [eb ** p for p in range(1, 2 * min(closest, n - closest), 2)]
        self.slopes = np.array(sl, dtype=F)
        self.head = self.w.get("lm_head.weight", self.w["word_embeddings.weight"])

    def forward(self, tokens, cache):
        w, H, hd = self.w, self.H, self.hd
        T = len(tokens)
        start = cache["len"]
        pos = np.arange(start, start + T)
        x = w["word_embeddings.weight"][tokens]
        x = layer_norm(x, w["word_embeddings_layernorm.weight"], w["word_embeddings_layernorm.bias"], self.eps)
        S = start + T
        # ALiBi: slope_h * key_position (softmax is shift invariant, so this
        # equals -slope_h * (q_pos - k_pos)).
        bias = self.slopes[:, None, None] * np.arange(S, dtype=F)[None, None, :]
        for i in range(self.n_layers):
            p = f"h.{i}."
            h = layer_norm(x, w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], self.eps)
            qkv = linear(h, w[p + "self_attention.query_key_value.weight"], w[p + "self_attention.query_key_value.bias"])
            qkv = qkv.reshape(T, H, 3, hd)  # per head: q | k | v
            q, k, v = (qkv[:, :, j].transpose(1, 0, 2) for j in range(3))
            K, V = self.cache_append(cache, i, k, v)
            a = attend(q, K, V, pos, 1.0 / math.sqrt(hd), bias).transpose(1, 0, 2).reshape(T, -1)
            x = x + linear(a, w[p + "self_attention.dense.weight"], w[p + "self_attention.dense.bias"])
            h = layer_norm(x, w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"], self.eps)
            f = linear(h, w[p + "mlp.dense_h_to_4h.weight"], w[p + "mlp.dense_h_to_4h.bias"])
            f = f * F(0.5) * (F(1.0) + np.tanh(F(0.79788456) * f * (F(1.0) + F(0.044715) * f * f)))
            x = x + linear(f, w[p + "mlp.dense_4h_to_h.weight"], w[p + "mlp.dense_4h_to_h.bias"])
        cache["len"] += T
        x = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], self.eps)
        return x @ self.head.T


ARCH = {"opt": OPT, "llama": Llama, "bloom": Bloom}


def close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.abs(a - b)
    ok = bool(np.all(err <= ATOL + RTOL * np.abs(b)))
    return ok, float(err.max())


def check_variant(d: Path) -> bool:
    ref = json.loads((d / "reference.json").read_text())
    ppl = json.loads((d / "perplexity.json").read_text())
    model_type = json.loads((d / "config.json").read_text())["model_type"]
    m = ARCH[model_type](d)
    ok_all = True
    report = []
    for i, p in enumerate(ref["prompts"]):
        ids = np.array(p["ids"])
        logits = m.forward(ids, m.new_cache())
        ok, err = close(logits, p["logits"])
        ok_all &= ok
        report.append(f"p{i} logits {'ok' if ok else 'FAIL'} (max err {err:.1e})")

        cache = m.new_cache()
        last = m.forward(ids, cache)[-1]
        got = []
        for _ in range(ref["greedy_tokens"]):
            t = int(np.argmax(last))
            got.append(t)
            last = m.forward(np.array([t]), cache)[-1]
        ok = got == p["greedy"]
        ok_all &= ok
        report.append(f"greedy {'ok' if ok else 'FAIL'}")

        seq = list(p["ids"])
        got_u = []
        for _ in range(ref["greedy_tokens"]):
            t = int(np.argmax(m.forward(np.array(seq), m.new_cache())[-1]))
            got_u.append(t)
            seq.append(t)
        ok = got_u == p["greedy_uncached"]
        ok_all &= ok
        report.append(f"uncached {'ok' if ok else 'FAIL'}")

    ids = np.array(ppl["ids"])
    lg = m.forward(ids, m.new_cache()).astype(np.float64)
    lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
    nll = lse[:-1] - lg[np.arange(len(ids) - 1), ids[1:]]
    ok, err = close(nll, ppl["nll"])
    ok2 = abs(math.exp(nll.mean()) - ppl["perplexity"]) <= RTOL * ppl["perplexity"]
    ok_all &= ok and ok2
    report.append(f"ppl {'ok' if ok and ok2 else 'FAIL'} (nll max err {err:.1e})")
    print(f"{'PASS' if ok_all else 'FAIL'} {d.name}: " + "; ".join(report))
    return ok_all


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parents[2] / "tests" / "data" / "models")
    ap.add_argument("variants", nargs="*")
    args = ap.parse_args(argv)
    names = args.variants or sorted(p.name for p in args.dir.iterdir() if (p / "reference.json").exists())
    results = [check_variant(args.dir / n) for n in names]
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
