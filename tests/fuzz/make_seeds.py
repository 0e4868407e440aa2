#!/usr/bin/env python3
"""Writes starting inputs for the libFuzzer targets from the committed fixtures.

    tests/fuzz/make_seeds.py OUT_DIR

makes OUT_DIR/<target>/ for config, safetensors, tokenizer_json,
tokenizer_encode, chat_template and server_request (fuzz_gguf's seeds come from
make_gguf_seeds).  Inputs are kept small (a few KiB) so that fuzzing is fast:
tokenizer.json fixtures keep their components but only a slice of their
vocabulary, and safetensors files keep their header with tiny tensors.
Only the standard library is used.
"""
import json
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def write(out: pathlib.Path, name: str, data: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)


def config_seeds(out: pathlib.Path) -> None:
    for cfg in sorted((DATA / "models").glob("*/config.json")):
        write(out, cfg.parent.name + ".json", cfg.read_bytes())


def safetensors_seeds(out: pathlib.Path) -> None:
    for st in sorted((DATA / "models").glob("*/model.safetensors")):
        raw = st.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        # Same names, dtypes and ranks; each tensor shrunk to at most 2 elements per dim.
        small, offset = {}, 0
        for name, info in header.items():
            if name == "__metadata__":
                small[name] = info
                continue
            shape = [min(d, 2) for d in info["shape"]]
            count = 1
            for d in shape:
                count *= d
            size = count * {"F32": 4, "F16": 2, "BF16": 2}.get(info["dtype"], 4)
            small[name] = {"dtype": info["dtype"], "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
            if len(small) > 6:
                break
        text = json.dumps(small, separators=(",", ":")).encode()
        write(out, st.parent.name + ".safetensors", struct.pack("<Q", len(text)) + text + bytes(offset))
    # A llama2.c checkpoint header (dim, hidden, layers, heads, kv heads, vocab, seq) with its weights.
    dim, hidden, layers, heads, kv, vocab, seq = 8, 16, 1, 2, 2, 8, 4
    head = dim // heads
    floats = (vocab * dim + layers * (dim + dim * dim + 2 * dim * kv * head + dim * dim + dim + 3 * dim * hidden)
              + dim + seq * head)
    write(out, "llama2c.bin", struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq) + bytes(4 * floats))


def shrink_tokenizer(tok: dict, keep: int) -> dict:
    model = tok.get("model", {})
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        kept = dict(sorted(vocab.items(), key=lambda kv: kv[1])[:keep])
        model["vocab"] = kept
        merges = []
        for m in model.get("merges", []):
            pair = m.split(" ", 1) if isinstance(m, str) else m
            if len(pair) == 2 and pair[0] in kept and pair[1] in kept and pair[0] + pair[1] in kept:
                merges.append(m)
        model["merges"] = merges
        for key in ("unk_token",):
            if model.get(key) not in kept:
                model[key] = None
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        model["vocab"] = vocab[:keep]
        if isinstance(model.get("unk_id"), int) and model["unk_id"] >= keep:
            model["unk_id"] = 0
    tok["added_tokens"] = tok.get("added_tokens", [])[:8]
    for i, a in enumerate(tok["added_tokens"]):
        a["id"] = keep + i
    post = tok.get("post_processor")
    if isinstance(post, dict) and isinstance(post.get("special_tokens"), dict):
        for name, st in post["special_tokens"].items():
            st["ids"] = [keep] * len(st.get("ids", []))
    return tok


def tokenizer_json_seeds(out: pathlib.Path) -> None:
    for path in sorted((DATA / "tokenizers").glob("*/tokenizer.json")):
        tok = json.loads(path.read_text(encoding="utf-8"))
        small = shrink_tokenizer(tok, 300)
        write(out, path.parent.name + ".json", json.dumps(small, ensure_ascii=False).encode())


def tokenizer_encode_seeds(out: pathlib.Path) -> None:
    texts = [
        b"Hello world",
        b" the cat's 12345 pajamas\n\n\tend",
        "日本語のテキスト 🦙 e\u0301".encode(),
        b"<s>x</s><|endoftext|>",
        b"\xff\xfe invalid \xc0\x80 utf-8 \xed\xa0\x80",
        b"   leading and trailing   ",
        b"<0x41><0xZZ>\xe2\x96\x81a\xe2\x96\x81ab",
    ]
    for i, t in enumerate(texts):
        write(out, "text%d.txt" % i, t)


def chat_template_seeds(out: pathlib.Path) -> None:
    for path in sorted((DATA / "chat_templates").glob("*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        if "template" in d:
            write(out, path.stem + ".jinja", d["template"].encode())
        for i, case in enumerate(d.get("cases", [])):
            if "template" in case and len(case["template"]) < 2000:
                write(out, "%s-%d.jinja" % (path.stem, i), case["template"].encode())


def server_request_seeds(out: pathlib.Path) -> None:
    # The first byte picks the endpoint (bit 0: completion) and the limits.
    chat = {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
            "seed": 3, "stop": ["\n\n", "END"], "n": 2, "presence_penalty": 0.5,
            "frequency_penalty": -0.5, "logit_bias": {"5": -100, "7": 2.5}, "logprobs": True,
            "top_logprobs": 3, "stream": True, "stream_options": {"include_usage": True}}
    completion = {"prompt": "Once upon a time", "max_tokens": 8, "echo": True, "stop": "."}
    ids = {"prompt": [1, 2, 3, 511], "logprobs": 2, "max_completion_tokens": 4}
    for i, (kind, body) in enumerate([(0, chat), (1, completion), (1, ids), (2, {"messages": []}),
                                      (1, {"prompt": [[1, 2]]})]):
        write(out, "seed-%d.bin" % i, bytes([kind]) + json.dumps(body).encode())


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    config_seeds(out / "config")
    safetensors_seeds(out / "safetensors")
    tokenizer_json_seeds(out / "tokenizer_json")
    tokenizer_encode_seeds(out / "tokenizer_encode")
    chat_template_seeds(out / "chat_template")
    server_request_seeds(out / "server_request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
