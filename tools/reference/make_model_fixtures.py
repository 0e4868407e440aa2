#!/usr/bin/env python3
"""Builds tiny random-weight OPT / LLaMA / BLOOM checkpoints with Hugging Face
transformers and records reference numerics for them.

For every variant this writes, into tests/data/models/<variant>/:

  config.json         exactly as transformers' save_pretrained writes it
  model.safetensors   float32 weights (tied weights stored once, as HF does)
  reference.json      logits of full forwards, greedy continuations, per-layer
                      hidden states, rope / alibi tables (see README.md)
  perplexity.json     per-token NLL and perplexity of a 40-token sequence

Everything is seeded and computed on the CPU with one thread, so a rerun with
the pinned requirements reproduces the files byte for byte.

Usage:
  tools/reference/.venv/bin/python tools/reference/make_model_fixtures.py \
      [--out tests/data/models] [--only VARIANT ...] [--list]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "models"

GREEDY_TOKENS = 32
PPL_LEN = 40
# Ids 0..3 are special in every tiny vocabulary below (pad/bos/eos/unk).
FIRST_ORDINARY_ID = 4
# Default init scales (see randomize()); a variant may override them.
LIN_GAIN = 1.0
EMB_STD = 0.35
POS_STD = 0.3

# --------------------------------------------------------------------------
# Variant table
# --------------------------------------------------------------------------

VARIANTS: dict[str, dict] = {
    "opt-prenorm": dict(
        arch="opt",
        seed=1001,
        init=dict(lin_gain=2.5, emb_std=0.5),
        feature="OPT, pre-LayerNorm (do_layer_norm_before=true), word_embed_proj_dim == hidden_size, "
        "ReLU FFN, biases everywhere, lm_head tied to embed_tokens, learned positions with offset 2",
        config=dict(
            vocab_size=128,
            hidden_size=32,
            word_embed_proj_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            max_position_embeddings=64,
            do_layer_norm_before=True,
            activation_function="relu",
            enable_bias=True,
            layer_norm_elementwise_affine=True,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        ),
        prompt_lengths=[5, 11],
    ),
    "opt-350m-style": dict(
        arch="opt",
        seed=1002,
        init=dict(lin_gain=1.5, emb_std=0.35),
        feature="OPT like facebook/opt-350m: post-LayerNorm (do_layer_norm_before=false, so no decoder "
        "final_layer_norm) and word_embed_proj_dim != hidden_size (project_in / project_out, no bias), "
        "lm_head tied to the 16-wide embed_tokens",
        config=dict(
            vocab_size=128,
            hidden_size=32,
            word_embed_proj_dim=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=80,
            max_position_embeddings=64,
            do_layer_norm_before=False,
            activation_function="relu",
            enable_bias=True,
            layer_norm_elementwise_affine=True,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        ),
        prompt_lengths=[5, 11],
    ),
    "llama-mha": dict(
        arch="llama",
        seed=2001,
        init=dict(lin_gain=2.0, emb_std=0.5),
        feature="LLaMA, multi-head attention (num_key_value_heads == num_attention_heads), untied lm_head, "
        "default RoPE with rope_theta 10000, no biases, SiLU gated MLP",
        config=dict(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            rope_scaling=None,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        prompt_lengths=[5, 11],
    ),
    "llama-gqa-tied-llama3": dict(
        arch="llama",
        seed=2002,
        init=dict(lin_gain=1.5, emb_std=0.35),
        feature="LLaMA, grouped-query attention (4 heads / 2 kv heads), tie_word_embeddings=true, "
        "rope_scaling rope_type=llama3 chosen so the head_dim=8 frequencies fall in all three llama3 "
        "bands (kept / smoothly interpolated / divided by factor)",
        config=dict(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=160,
            ),
            tie_word_embeddings=True,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        prompt_lengths=[5, 11],
    ),
    "llama-linear-bias": dict(
        arch="llama",
        seed=2003,
        init=dict(lin_gain=2.0, emb_std=0.5),
        feature="LLaMA with linear RoPE scaling (factor 2, legacy \"type\" key kept next to \"rope_type\"), "
        "rope_theta 500000, attention_bias=true (q/k/v/o biases), mlp_bias=true (gate/up/down biases), "
        "multi-query attention (1 kv head), untied lm_head",
        config=dict(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=72,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=64,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            rope_scaling=dict(type="linear", factor=2.0),
            tie_word_embeddings=False,
            attention_bias=True,
            mlp_bias=True,
            hidden_act="silu",
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        prompt_lengths=[5, 11],
    ),
    "llama-dynamic-headdim": dict(
        arch="llama",
        seed=2004,
        init=dict(lin_gain=2.5, emb_std=0.5),
        feature="LLaMA with dynamic NTK RoPE scaling (factor 2) and max_position_embeddings=16 so that "
        "prompt+generation runs past it; explicit head_dim=12 != hidden_size/num_attention_heads=8 "
        "(q_proj 32->48, o_proj 48->32); GQA 4/2; untied",
        config=dict(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=12,
            max_position_embeddings=16,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            rope_scaling=dict(rope_type="dynamic", factor=2.0),
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        # The third prompt is longer than max_position_embeddings, so the
        # prefill itself already uses a scaled base.
        prompt_lengths=[5, 11, 20],
    ),
    "bloom-6heads": dict(
        arch="bloom",
        seed=3001,
        weight_seed=3003,
        init=dict(lin_gain=2.0, emb_std=0.35, gain_overrides={"dense_4h_to_h": 0.6}, fused_qkv_gains=(1.0, 1.0, 2.5)),
        feature="BLOOM with 6 heads (non-power-of-two ALiBi slopes), word_embeddings_layernorm, fused "
        "query_key_value (per-head interleaved q|k|v), tanh GELU, lm_head tied to word_embeddings",
        config=dict(
            vocab_size=128,
            hidden_size=48,
            n_layer=2,
            n_head=6,
            layer_norm_epsilon=1e-5,
            apply_residual_connection_post_layernorm=False,
            pad_token_id=3,
            bos_token_id=1,
            eos_token_id=2,
        ),
        prompt_lengths=[5, 11],
    ),
    "bloom-4heads": dict(
        arch="bloom",
        seed=3002,
        init=dict(lin_gain=2.0, emb_std=0.35, gain_overrides={"dense_4h_to_h": 0.6}, fused_qkv_gains=(1.0, 1.0, 2.5)),
        feature="BLOOM with 4 heads (power-of-two ALiBi slopes), hidden_size 32, otherwise as bloom-6heads",
        config=dict(
            vocab_size=128,
            hidden_size=32,
            n_layer=2,
            n_head=4,
            layer_norm_epsilon=1e-5,
            apply_residual_connection_post_layernorm=False,
            pad_token_id=3,
            bos_token_id=1,
            eos_token_id=2,
        ),
        prompt_lengths=[5, 11],
    ),
}

ARCH = {
    "opt": (OPTConfig, OPTForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "bloom": (BloomConfig, BloomForCausalLM),
}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def f32(x) -> float:
    """Shortest decimal that round-trips to the same float32, as a Python float."""
    return float(str(np.float32(x)))


def floats(t) -> list:
    """Nested lists of float32-exact shortest-repr floats."""
    a = t.detach().to(torch.float32).cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float32)
    if a.ndim == 0:
        return f32(a)
    if a.ndim == 1:
        return [f32(v) for v in a]
    return [floats(row) for row in a]


def write_json(path: Path, obj: dict) -> None:
    """Compact JSON, one top-level key (and one prompt key) per line."""

    def dump(v):
        return json.dumps(v, separators=(",", ":"), allow_nan=False)

    lines = ["{"]
    keys = list(obj.keys())
    for i, k in enumerate(keys):
        v = obj[k]
        sep = "," if i + 1 < len(keys) else ""
        if k == "prompts":
            lines.append(f'"{k}":[')
            for j, p in enumerate(v):
                pk = list(p.keys())
                lines.append("{")
                for m, kk in enumerate(pk):
                    lines.append(f'"{kk}":{dump(p[kk])}' + ("," if m + 1 < len(pk) else ""))
                lines.append("}" + ("," if j + 1 < len(v) else ""))
            lines.append("]" + sep)
        else:
            lines.append(f'"{k}":{dump(v)}{sep}')
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def randomize(model: torch.nn.Module, seed: int, lin_gain: float = LIN_GAIN, emb_std: float = EMB_STD,
              pos_std: float = POS_STD, gain_overrides: dict | None = None,
              fused_qkv_gains: tuple | None = None) -> None:
    """Non-trivial deterministic init: norms are random too (not 1/0).

    Linear weights get std lin_gain/sqrt(fan_in): a gain above 1 lets the
    layers dominate the residual stream, which keeps tiny tied-head models
    from just echoing their input token during greedy decoding.
    gain_overrides multiplies the std of weights whose name contains a key;
    fused_qkv_gains multiplies the q, k and v rows of BLOOM's fused
    query_key_value weight and bias (rows laid out per head as q|k|v)."""
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo

    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            leaf = name.split(".")[-2] if "." in name else name
            is_norm = any(s in leaf for s in ("norm", "layernorm", "layer_norm", "ln_f"))
            if is_norm:
                if name.endswith("weight"):
                    p.copy_(uniform(p.shape, 0.6, 1.4))
                else:
                    p.copy_(normal(p.shape, 0.1))
            elif name.endswith("bias"):
                b = normal(p.shape, 0.1)
                if fused_qkv_gains is not None and "query_key_value" in name:
                    v = b.view(model.config.num_attention_heads, 3, -1)
                    for j in range(3):
                        v[:, j] *= fused_qkv_gains[j]
                p.copy_(b)
            elif any(s in name for s in ("embed_tokens", "word_embeddings", "lm_head")):
                p.copy_(normal(p.shape, emb_std))
            elif "embed_positions" in name:
                p.copy_(normal(p.shape, pos_std))
            else:
                # Linear layers: std 1/sqrt(fan_in) keeps activations O(1).
                fan_in = p.shape[1]
                w = normal(p.shape, lin_gain / math.sqrt(fan_in))
                for key, mult in (gain_overrides or {}).items():
                    if key in name:
                        w *= mult
                if fused_qkv_gains is not None and "query_key_value" in name:
                    heads = model.config.num_attention_heads
                    v = w.view(heads, 3, -1, fan_in)
                    for j in range(3):
                        v[:, j] *= fused_qkv_gains[j]
                p.copy_(w)


def prompt_ids(seed: int, lengths: list[int], vocab: int) -> list[list[int]]:
    rng = np.random.RandomState(seed)
    return [[int(x) for x in rng.randint(FIRST_ORDINARY_ID, vocab, size=n)] for n in lengths]


def greedy_generation_config(cfg: dict) -> GenerationConfig:
    # eos_token_id=None: generation never stops early; EOS is an ordinary
    # argmax candidate like every other id.
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=GREEDY_TOKENS,
        min_new_tokens=GREEDY_TOKENS,
        eos_token_id=None,
        bos_token_id=None,
        pad_token_id=cfg["pad_token_id"],
        temperature=None,
        top_p=None,
        top_k=None,
    )


def decoder_layers(model, arch):
    if arch == "opt":
        return model.model.decoder.layers
    if arch == "llama":
        return model.model.layers
    return model.transformer.h


def capture_forward(model, arch, ids: torch.Tensor):
    """One full forward; returns logits, HF hidden_states and hooked tensors."""
    layers = decoder_layers(model, arch)
    captured = {"layer_in": [], "layer_out": [], "head_in": None}
    handles = []

    def pre_hook(_m, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        captured["layer_in"].append(h[0].clone())

    def post_hook(_m, _args, _kwargs, out):
        h = out[0] if isinstance(out, tuple) else out
        captured["layer_out"].append(h[0].clone())

    def head_hook(_m, args):
        captured["head_in"] = args[0][0].clone()

    for layer in layers:
        handles.append(layer.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(layer.register_forward_hook(post_hook, with_kwargs=True))
    handles.append(model.lm_head.register_forward_pre_hook(head_hook))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=False, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    hs = [h[0] for h in out.hidden_states]
    return out.logits[0], hs, captured


def describe_hidden_states(hs, captured, n_layers) -> list[str]:
    """Labels each entry of HF's output_hidden_states by matching hooked tensors."""
    labels = []
    for i, h in enumerate(hs):
        label = None
        for li in range(n_layers):
            if h.shape == captured["layer_in"][li].shape and torch.equal(h, captured["layer_in"][li]):
                label = "embeddings (input of layer 0)" if li == 0 else f"input of layer {li} (= output of layer {li - 1})"
                break
        if label is None and h.shape == captured["head_in"].shape and torch.equal(h, captured["head_in"]):
            label = "lm_head input (after final norm / project_out)"
        if label is None and torch.equal(h, captured["layer_out"][-1]):
            label = f"output of layer {n_layers - 1} (before final norm)"
        if label is None:
            label = "unmatched"
        labels.append(label)
    return labels


# --------------------------------------------------------------------------
# Per variant
# --------------------------------------------------------------------------


def build(name: str, spec: dict, out_dir: Path):
    cfg_cls, model_cls = ARCH[spec["arch"]]
    config = cfg_cls(**spec["config"])
    torch.manual_seed(spec["seed"])
    model = model_cls(config).to(torch.float32).eval()
    randomize(model, spec.get("weight_seed", spec["seed"]), **spec.get("init", {}))
    model.generation_config = greedy_generation_config(spec["config"])

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    gen_cfg = out_dir / "generation_config.json"
    if gen_cfg.exists():
        gen_cfg.unlink()
    return model


def load(out_dir: Path, spec: dict):
    """A fresh model per computation: HF's dynamic RoPE keeps state in the module."""
    _, model_cls = ARCH[spec["arch"]]
    model = model_cls.from_pretrained(out_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    model.generation_config = greedy_generation_config(spec["config"])
    return model


def check_features(name: str, spec: dict, model, out_dir: Path) -> dict:
    """Asserts every variant really exercises what it claims; returns extras for reference.json."""
    saved = json.loads((out_dir / "config.json").read_text())
    c = model.config
    extras: dict = {}
    arch = spec["arch"]

    if arch == "opt":
        dec = model.model.decoder
        assert c.activation_function == "relu" and c.enable_bias
        assert model.lm_head.weight.data_ptr() == dec.embed_tokens.weight.data_ptr(), "OPT head must be tied"
        assert dec.embed_positions.weight.shape[0] == c.max_position_embeddings + 2
        if name == "opt-prenorm":
            assert c.do_layer_norm_before and c.word_embed_proj_dim == c.hidden_size
            assert dec.project_in is None and dec.project_out is None and dec.final_layer_norm is not None
        if name == "opt-350m-style":
            assert not c.do_layer_norm_before and c.word_embed_proj_dim != c.hidden_size
            assert dec.project_in is not None and dec.project_out is not None and dec.final_layer_norm is None
            assert saved["do_layer_norm_before"] is False and saved["word_embed_proj_dim"] == 16

    if arch == "llama":
        rot = model.model.rotary_emb
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        dim = head_dim
        default_inv = 1.0 / (
            c.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim)
        )
        extras["head_dim"] = head_dim
        extras["inv_freq_unscaled"] = floats(default_inv)
        extras["inv_freq"] = floats(rot.inv_freq)
        extras["rope_attention_scaling"] = float(rot.attention_scaling)
        tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        assert tied == bool(c.tie_word_embeddings)
        if name == "llama-mha":
            assert c.num_key_value_heads == c.num_attention_heads and not tied and c.rope_scaling is None
            assert torch.equal(rot.inv_freq, default_inv)
        if name == "llama-gqa-tied-llama3":
            assert c.num_key_value_heads < c.num_attention_heads and tied
            assert c.rope_scaling["rope_type"] == "llama3"
            rs = c.rope_scaling
            wavelen = 2 * math.pi / default_inv
            low_w = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
            high_w = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
            bands = ["kept" if w < high_w else "divided" if w > low_w else "smoothed" for w in wavelen.tolist()]
            assert set(bands) == {"kept", "smoothed", "divided"}, bands
            assert not torch.equal(rot.inv_freq, default_inv)
            extras["llama3_bands"] = bands
        if name == "llama-linear-bias":
            assert c.attention_bias and c.mlp_bias and c.rope_theta == 500000.0
            assert c.rope_scaling["rope_type"] == "linear" and c.rope_scaling["factor"] == 2.0
            assert model.model.layers[0].self_attn.q_proj.bias is not None
            assert model.model.layers[0].mlp.gate_proj.bias is not None
            assert torch.allclose(rot.inv_freq, default_inv / 2.0)
        if name == "llama-dynamic-headdim":
            assert c.rope_scaling["rope_type"] == "dynamic"
            assert head_dim != c.hidden_size // c.num_attention_heads
            assert model.model.layers[0].self_attn.q_proj.weight.shape == (c.num_attention_heads * head_dim, c.hidden_size)
            assert saved["head_dim"] == 12 and saved["max_position_embeddings"] == 16
            # At init (seq_len = max_position_embeddings) dynamic == unscaled.
            assert torch.allclose(rot.inv_freq, default_inv)

    if arch == "bloom":
        tr = model.transformer
        assert model.lm_head.weight.data_ptr() == tr.word_embeddings.weight.data_ptr(), "BLOOM head must be tied"
        assert tr.word_embeddings_layernorm is not None
        n = c.n_head
        slopes = bloom_slopes(n)
        ref = transformers.models.bloom.modeling_bloom.build_alibi_tensor(
            torch.ones(1, 2, dtype=torch.long), n, torch.float32
        ).reshape(n, 2)[:, 1]
        assert torch.allclose(torch.tensor(slopes, dtype=torch.float32), ref)
        is_pow2 = (n & (n - 1)) == 0
        assert is_pow2 == (name == "bloom-4heads")
        extras["alibi_slopes"] = floats(ref)
        extras["head_dim"] = c.hidden_size // n
    return extras


def bloom_slopes(n: int) -> list[float]:
    closest = 2 ** math.floor(math.log2(n))
    base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
    slopes = [base ** p for p in range(1, closest + 1)]
    if closest != n:
        extra = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
        rem = min(closest, n - closest)
        slopes += [extra ** p for p in range(1, 2 * rem, 2)]
    return slopes


def greedy_cached(out_dir, spec, ids, trace_rope=False):
    model = load(out_dir, spec)
    trace = []
    handle = None
    if trace_rope:
        rot = model.model.rotary_emb

        def hook(m, args, _out):
            pos = args[1]
            trace.append(
                {
                    "positions": [int(pos.min()), int(pos.max())],
                    "max_seq_len_cached": int(m.max_seq_len_cached),
                    "inv_freq": floats(m.inv_freq),
                }
            )

        handle = rot.register_forward_hook(hook)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            generation_config=model.generation_config,
            use_cache=True,
            return_dict_in_generate=True,
            output_logits=True,
        )
    if handle is not None:
        handle.remove()
    new = out.sequences[0, ids.shape[1]:].tolist()
    assert len(new) == GREEDY_TOKENS, (len(new), GREEDY_TOKENS)
    step_logits = torch.stack([l[0] for l in out.logits])
    return new, step_logits, trace


def greedy_uncached(out_dir, spec, ids):
    model = load(out_dir, spec)
    seq = ids.clone()
    new, step_logits = [], []
    with torch.no_grad():
        for _ in range(GREEDY_TOKENS):
            logits = model(input_ids=seq, use_cache=False).logits[0, -1]
            nxt = int(torch.argmax(logits))
            new.append(nxt)
            step_logits.append(logits)
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    return new, torch.stack(step_logits)


def margins(step_logits: torch.Tensor) -> list[float]:
    top2 = torch.topk(step_logits, 2, dim=-1).values
    return [f32(v) for v in (top2[:, 0] - top2[:, 1])]


DYNAMIC_NOTE = (
    "HF 'dynamic' RoPE is stateful. Every forward call computes seq_len = max(position_ids)+1 over the "
    "tokens of THAT call. If seq_len > max_seq_len_cached (initially max_position_embeddings) the module "
    "recomputes inv_freq = 1/(base'^(2i/d)) with base' = rope_theta * ((factor*seq_len/max_position_embeddings) "
    "- (factor-1)) ** (d/(d-2)) (float32 torch math) and sets max_seq_len_cached = seq_len; if seq_len < "
    "max_position_embeddings while max_seq_len_cached > max_position_embeddings it resets to the unscaled "
    "inv_freq. The new inv_freq rotates only the q/k of the tokens of the current call. 'greedy' comes from "
    "generate(use_cache=True): the prefill rotates all prompt tokens with seq_len = max(prompt_len, "
    "max_position_embeddings); each decode step for the token at position p uses seq_len = max(p+1, "
    "max_position_embeddings) for its own q/k, while the cached keys keep the rotation they got when they were "
    "computed (never re-rotated). 'greedy_uncached' re-runs a full forward over the whole sequence at each "
    "step, so all positions are rotated with seq_len = current length. 'logits' and perplexity.json are single "
    "full forwards on a freshly loaded model (seq_len = max(len, max_position_embeddings)). 'rope_trace' (cached "
    "run) lists, per forward call, the positions it covered and the inv_freq it used."
)


def make_reference(name: str, spec: dict, out_dir: Path, extras: dict) -> dict:
    cfg = spec["config"]
    vocab = cfg["vocab_size"]
    arch = spec["arch"]
    model = load(out_dir, spec)
    n_layers = model.config.num_hidden_layers
    prompts = prompt_ids(spec["seed"] + 17, spec["prompt_lengths"], vocab)
    dynamic = name == "llama-dynamic-headdim"

    ref: dict = {
        "variant": name,
        "architecture": type(model).__name__,
        "feature": spec["feature"],
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "attn_implementation": "eager",
        "greedy_tokens": GREEDY_TOKENS,
    }
    ref.update(extras)
    notes = [
        "logits: one full forward (use_cache=false) over 'ids', float32, eval mode, no padding, attention_mask all ones.",
        "greedy: HF generate(do_sample=false, use_cache=true, max_new_tokens=min_new_tokens=32) with "
        "eos_token_id=None, i.e. pure argmax for 32 steps; EOS/special ids are ordinary candidates and must not stop generation.",
        "greedy_uncached: argmax loop of full forwards without KV cache.",
        "greedy_margins: top1-top2 logit gap at each cached greedy step (small gaps make argmax fragile).",
        "argmax ties break to the lowest id (torch.argmax).",
    ]
    if dynamic:
        notes.append(DYNAMIC_NOTE)
    ref["notes"] = notes

    out_prompts = []
    for pi, p in enumerate(prompts):
        ids = torch.tensor([p], dtype=torch.long)
        logits, hs, cap = capture_forward(load(out_dir, spec), arch, ids)
        g_c, step_c, trace = greedy_cached(out_dir, spec, ids, trace_rope=dynamic)
        g_u, step_u = greedy_uncached(out_dir, spec, ids)
        entry = {
            "ids": p,
            "logits": floats(logits),
            "greedy": g_c,
            "greedy_uncached": g_u,
            "greedy_matches_uncached": g_c == g_u,
            "greedy_margins": margins(step_c),
        }
        if not dynamic:
            # Sanity: without dynamic RoPE, cached and uncached decoding agree
            # (same ids, logits equal up to float noise).
            assert g_c == g_u, (name, pi, g_c, g_u)
            diff = float((step_c - step_u).abs().max())
            assert diff < 1e-4, (name, pi, diff)
        if dynamic:
            if pi == 1:
                # Prompt 1 (11 tokens) crosses max_position_embeddings during
                # decoding: raw logits of every cached decode step.
                entry["greedy_cached_step_logits"] = floats(step_c)
            entry["greedy_uncached_margins"] = margins(step_u)
            entry["rope_trace"] = trace
        if pi == 0:
            entry["hidden_states"] = floats(torch.stack(hs)) if len({h.shape for h in hs}) == 1 else [floats(h) for h in hs]
            entry["hidden_states_layout"] = describe_hidden_states(hs, cap, n_layers)
            entry["embeddings"] = floats(cap["layer_in"][0])
            entry["layer_outputs"] = [floats(t) for t in cap["layer_out"]]
            entry["final_norm_hidden"] = floats(cap["head_in"])
        out_prompts.append(entry)
    ref["prompts"] = out_prompts
    return ref


def make_perplexity(name: str, spec: dict, out_dir: Path) -> dict:
    vocab = spec["config"]["vocab_size"]
    rng = np.random.RandomState(spec["seed"] + 99)
    ids = [int(x) for x in rng.randint(FIRST_ORDINARY_ID, vocab, size=PPL_LEN)]
    t = torch.tensor([ids], dtype=torch.long)
    model = load(out_dir, spec)
    with torch.no_grad():
        out = model(input_ids=t, labels=t, use_cache=False)
    logits = out.logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    nll = -logp.gather(1, t[0, 1:, None])[:, 0]
    mean_nll = float(nll.double().mean())
    hf_loss = float(out.loss)
    assert abs(mean_nll - hf_loss) < 1e-5 * max(1.0, hf_loss), (mean_nll, hf_loss)
    return {
        "variant": name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "note": "One full forward over 'ids' (float32, no cache). nll[i] = -log_softmax(logits[i])[ids[i+1]] for "
        "i = 0..n-2 (the first token is never scored). mean_nll = mean(nll); perplexity = exp(mean_nll); "
        "hf_loss = model(ids, labels=ids).loss (same quantity as computed by transformers).",
        "ids": ids,
        "nll": floats(nll),
        "mean_nll": mean_nll,
        "hf_loss": f32(hf_loss),
        "perplexity": math.exp(mean_nll),
    }


def summarize(name: str, spec: dict, model, ref: dict, out_dir: Path) -> None:
    sizes = {f.name: f.stat().st_size for f in sorted(out_dir.iterdir())}
    lg = torch.tensor(ref["prompts"][0]["logits"])
    print(f"== {name}: {type(model).__name__}")
    print("   files:", ", ".join(f"{k}={v / 1024:.1f}K" for k, v in sizes.items()),
          f"total={sum(sizes.values()) / 1024:.1f}K")
    print(f"   logits prompt0: std={lg.std():.3f} min={lg.min():.3f} max={lg.max():.3f}")
    for i, p in enumerate(ref["prompts"]):
        print(f"   prompt{i} len={len(p['ids'])} cached==uncached: {p['greedy_matches_uncached']} "
              f"min margin={min(p['greedy_margins']):.2e} distinct greedy ids={len(set(p['greedy']))}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="variant names to (re)build")
    ap.add_argument("--list", action="store_true", help="list variants and exit")
    args = ap.parse_args(argv)

    if args.list:
        for k, v in VARIANTS.items():
            print(f"{k}: {v['feature']}")
        return 0

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()

    names = args.only or list(VARIANTS)
    for name in names:
        if name not in VARIANTS:
            print(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
    for name in names:
        spec = VARIANTS[name]
        out_dir = args.out / name
        built = build(name, spec, out_dir)
        loaded = load(out_dir, spec)
        # Round trip: what we saved is what transformers loads.
        sd_a, sd_b = built.state_dict(), loaded.state_dict()
        assert sd_a.keys() == sd_b.keys()
        for k in sd_a:
            assert torch.equal(sd_a[k], sd_b[k]), k
        extras = check_features(name, spec, loaded, out_dir)
        ref = make_reference(name, spec, out_dir, extras)
        write_json(out_dir / "reference.json", ref)
        write_json(out_dir / "perplexity.json", make_perplexity(name, spec, out_dir))
        summarize(name, spec, loaded, ref, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
