#!/usr/bin/env python3
"""Builds the tokenizer fixtures under tests/data/tokenizers/ with HF tokenizers.

Run from the repository root with the pinned packages of requirements-tokenizers.txt:

    tools/reference/.venv-tok/bin/python tools/reference/make_tokenizer_fixtures.py

What it writes:
  corpus.json            the test strings (see make_corpus); invalid UTF-8 is stored as hex bytes,
                         and the 100 KB line as a rule {"repeat": unit, "max_bytes": n}.
  <name>/tokenizer.json  small tokenizers trained here with the real settings of a family
                         (BLOOM, LLaMA-2 style, LLaMA-3 style, a unigram/Metaspace one).
  <name>.expected.json   for every corpus entry: HF ids without special tokens, HF decode of those
                         ids, and for the first entries the ids with special tokens.

OPT and LLaMA-2 are also checked with their real vocabularies from ../shared/testdata (vocab.json +
merges.txt, tokenizer.model); only the expected ids are stored for them.

HF's API takes str, so invalid UTF-8 input is given to HF as bytes.decode("utf-8", errors="replace").
Expected decodes equal to the (replaced) input are stored as null to keep the files small.  The long
line's ids are stored as a length and an FNV-1a 64 hash of the ids (each as 4 little-endian bytes),
and its decode as an FNV-1a 64 hash of the UTF-8 bytes.
"""
import json
import os
import random
import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "tokenizers"
SHARED = ROOT.parent / "shared" / "testdata"

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BLOOM_PATTERN = " ?[^(\\s|[.,!?…。，、।۔،])]+"
WITH_SPECIAL_COUNT = 40  # entries also encoded with add_special_tokens=True

LONG_UNIT = "The quick brown fox, 12345 jumps; 日本語のテキスト 🦙\t  naïve café — ok?\n"
LONG_MAX_BYTES = 100_000


def make_corpus():
    rng = random.Random(20240611)
    c = []
    # Hand-written hard cases.
    c += ["", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\t\n", " \n", "\n ", " \t \n ", "\r\n", "\r\n\r\n",
          "Hello world", " Hello world", "Hello World", " Hello World", " Hello World!", "Hello, world!",
          " Hello, world!", " this is 🦙.cpp", "w048 7tuijk dsdfhu", "нещо на Български",
          "កាន់តែពិសេសអាចខលចេញ", "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)",
          "Hello", " Hello", "  Hello", "   Hello", "    Hello", "    Hello\n    Hello", " (", "\n =", "' era",
          "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "3", "33", "333", "3333", "33333", "333333",
          "3333333", "33333333", "333333333", "Cửa Việt", " discards", "ied 4 ½ months", "Führer",
          "don't", "DON'T", "I'M", "you'RE", "we'Ve", "they'LL", "it'S", "she'd", "'s'", "''''", "'", "''s",
          "a'll b'LL c'Ll", "l'amour", "ʼs", "ſ's", "K's", "İstanbul", "ß", "ﬁ ligature", "Ǆemal", "ΣΑΣ",
          "¡Hola! ¿Qué tal?", "«guillemets»", "„Anführung“", "…", "—", "–", "‽", "·", "§1.2", "©®™",
          "\u00a0", "a\u00a0b", "\u3000", "a\u3000b", "\u2028", "\u2029", "a\u0085b", "\u200b", "a\u200bb",
          "\u200d", "\ufeffBOM", "\u180e", "x\u00adx", "\u2060", "\ufffd", "a\ufffdb", "\x00", "a\x00b", "\x7f",
          "\x01\x02\x03", "\x1b[31mred\x1b[0m", "tab\tseparated\tvalues", "line1\nline2\r\nline3\rline4",
          "    indented\n\tcode", "trailing   ", "   leading", "mid    spaces", "a  b   c    d",
          "\n\n\n\n\n\n\n\n", " " * 17, "\t" * 9, " \t" * 7, "\n \n \n", "a\n\n\nb", "a \n b",
          "▁", "▁▁", "a▁b", " ▁ ", "<0x41>", "<0x0A>", "<unk>", "Ġ", "Ċ", "ĠĠ", "##", "</w>",
          "UPPER lower MiXeD", "camelCaseIdentifier", "snake_case_identifier", "kebab-case-identifier",
          "email@example.com", "https://example.com/path?query=1&x=y#frag", "C:\\Users\\name\\file.txt",
          "1,234,567.89", "3.14159265358979323846", "-42", "+1 (555) 123-4567", "1e-10", "0x1F4A9", "0b1010",
          "١٢٣٤٥٦٧٨٩٠", "१२३४५६७८९०", "１２３４５", "①②③", "Ⅻ", "½¼¾", "²³", "𝟘𝟙𝟚", "12:30pm", "2024-06-11",
          "99 bottles", "v1.2.3-rc.4", "$100.00", "€50", "¥1000", "100%", "#1", "@user", "user123abc456",
          "1" * 40, "1234567890" * 6, "3.0.0.0.0.0", "0000000", "9" * 3 + " " + "9" * 4 + " " + "9" * 5]
    # Scripts.
    c += ["日本語のテキストです。", "中文测试：你好，世界！", "繁體中文測試", "한국어 텍스트입니다.", "ひらがな カタカナ 漢字",
          "مرحبا بالعالم", "العربية: هذا اختبار، مع علامات الترقيم؟", "שלום עולם", "नमस्ते दुनिया", "हिन्दी में परीक्षण।",
          "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่างระหว่างคำ", "Привет, мир!", "Ελληνικά γράμματα", "Ἀρχὴ ἥμισυ παντός",
          "Tiếng Việt có dấu", "Türkçe ğüşıöç", "Polski: zażółć gęślą jaźń", "ქართული ენა", "Հայերեն",
          "አማርኛ", "தமிழ் மொழி", "বাংলা ভাষা", "ਪੰਜਾਬੀ", "ગુજરાતી", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "සිංහල", "ພາສາລາວ",
          "မြန်မာ", "ខ្មែរ", "ᏣᎳᎩ", "ᚠᚢᚦᚨᚱᚲ", "𐌰𐌱𐌲", "اردو زبان ۔", "فارسی، زبان", "Mix 日本 and English 混合",
          "中文,English;日本語。한국어!", "Zalgo: Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇"]
    # Emoji.
    c += ["👍", "👍🏽", "👩‍💻", "👩🏾‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🏴‍☠️", "🇺🇸🇯🇵", "🇦", "1️⃣", "#️⃣", "❤️", "❤", "☺️",
          "🧑🏻‍🤝‍🧑🏿", "🫠🫶🪿", "😀😃😄😁😆😅😂🤣", "emoji🙂in🙃text", "🦙 llama", " 🦙", "🦙🦙🦙", "👋🏻👋🏼👋🏽👋🏾👋🏿",
          "🤷‍♀️", "🧔🏻‍♂️", "✍🏿", "©️", "🀄", "𝕳𝖊𝖑𝖑𝖔", "🅰🅱", "\U0001F9D1\u200D\U0001F384"]
    # Combining marks and normalization forms.
    c += ["e\u0301", "é", "cafe\u0301", "café", "A\u030a", "Å", "Å", "n\u0303", "ñ", "\u0301", " \u0301", "a\u0301\u0302\u0303",
          "ḱṷṓn", "ẛ̣", "ﬃ", "㍿", "ｶﾀｶﾅ", "Ａｂｃ", "ｆｕｌｌｗｉｄｔｈ", "Ⓐⓑ", "ǅ", "ŉ", "ǈ", "ℌ", "ℵ", "Ω", "K",
          "각", "\u1100\u1161\u11a8", "क्षि", "ि", "ก่", "\u0e48", "ใช่ไหม", "𝐀𝐁", "x\u0338", "≠", "ṩ"]
    # Code.
    c += ["def f(x):\n    return x * 2\n", "int main() {\n\treturn 0;\n}", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
          "if x == 1 and y != 2 or not z:\n    pass", "const std::vector<int>& v = {1, 2, 3};", "<html><body></body></html>",
          "SELECT * FROM t WHERE id = 42;", "$ ls -la | grep '\\.py$'", "x = [i**2 for i in range(10)]",
          "{\"key\": [1, 2.5, \"three\", null, true]}", "#include <stdio.h>", "// comment\n/* block */",
          "fn main() { println!(\"{}\", 1); }", "let x: Vec<u8> = vec![0xff; 16];", "a->b->c", "x >>= 2; y <<= 3;",
          "!==", "===", "...", "::", "&&||", "\\n\\t", "    \n        \n            x", "lambda: (yield)",
          "```python\nprint('hi')\n```", "  # indented comment", "@decorator\ndef g(): ...", "\"quoted\" 'single'"]
    # Whitespace runs.
    ws = [" ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2003", "\r\n"]
    for _ in range(60):
        s = ""
        for _ in range(rng.randint(1, 6)):
            s += "".join(rng.choice(ws) for _ in range(rng.randint(1, 5)))
            if rng.random() < 0.7:
                s += rng.choice(["a", "word", "Ab", "1", "12345", ".", "日本", "🦙", "x y"])
        c.append(s)
    # Numbers.
    for _ in range(40):
        k = rng.randint(1, 30)
        s = "".join(rng.choice("0123456789") for _ in range(k))
        s = rng.choice(["{}", " {}", "x{}", "{}x", "{}.5", "({})", "{} {}", "-{}", "{},000", "{}%"]).replace("{}", s)
        c.append(s)
    # Random mixtures from a pool of hard pieces.
    pool = (list("abcXYZ019 .,'!?-_\n\t") + ["'s", "'LL", "日", "本", "語", "한", "ع", "न", "ि", "ท", "่", "🦙", "👍🏽", "‍",
            "e\u0301", "\u00a0", "  ", "\r\n", "<s>", "</s>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "▁",
            "ß", "ﬁ", "½", "١", "𝟘", "Ω", "K", "İ", "\u3000", "\u2028", "中文", "Привет", "~", "`", "^", "|", "\\"])
    for _ in range(240):
        n = rng.randint(1, 24)
        c.append("".join(rng.choice(pool) for _ in range(n)))
    # Special tokens inside text.
    for t in ["<s>", "</s>", "<unk>", "<pad>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
              "<|start_header_id|>"]:
        c += [t, f"Hello{t}world", f"Hello {t} world", f" {t}", f"{t} ", f"{t}{t}", f"a\n{t}\nb", f"<{t}>",
              f"{t[:-1]}", f"x{t}y{t}z"]
    c += ["<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<s>[INST] What? [/INST] Answer</s>",
          "<s> <s> </s>", "< s >", "<s", "s>", "<|begin_of_text|><|begin_of_text|>"]
    # Invalid UTF-8 (stored as bytes).
    bad = [b"\xff", b"\xfe\xff", b"\x80", b"abc\x80def", b"\xc3", b"\xc3(", b"\xe6\x97", b"\xe6\x97a", b"\xf0\x9f\xa6",
           b"\xf0\x9f\xa6 x", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80",
           b"\xf8\x88\x80\x80\x80", b"hello \xff world", b"\xe6\x97\xa5\xe6\x97", b"\x80\x80\x80\x80",
           b"\xc2\xc2\xc2", b"\xef\xbb", b"a\xe0\xa0", b"\xf1\x80\x80", b"\xc3\xa9\xa9", b"\xe2\x82\xac\xac",
           b"tab\t\xff\tend", b"\xff\xfe\xfd\xfc"]
    entries = [{"text": s} for s in c]
    entries += [{"hex": b.hex()} for b in bad]
    entries.append({"repeat": LONG_UNIT, "max_bytes": LONG_MAX_BYTES})
    return entries


def entry_text(e):
    if "text" in e:
        return e["text"]
    if "hex" in e:
        return bytes.fromhex(e["hex"]).decode("utf-8", errors="replace")
    unit = e["repeat"].encode()
    n = e["max_bytes"] // len(unit)
    return (unit * n).decode()


def fnv1a_ids(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little", signed=True):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def fnv1a_bytes(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def training_text(entries):
    lines = [entry_text(e) for e in entries if "repeat" not in e]
    extra = ("Once upon a time there was a little girl named Lily. She liked to play in the park with her dog. "
             "The weather today is sunny, with a high of 25 degrees. Numbers like 1234 and 5678 appear often. "
             "def function(argument): return argument + 1  # code comment\n"
             "日本語の文章と中文的句子还有한국어 문장도 있습니다. Привет, как дела? مرحبا كيف حالك؟ नमस्ते आप कैसे हैं?")
    return lines + [extra] * 30


def record(name, tok, entries, special_fn=None):
    """Encodes every entry with `tok` (a tokenizers.Tokenizer) and writes <name>.expected.json."""
    rows = []
    for k, e in enumerate(entries):
        text = entry_text(e)
        ids = tok.encode(text, add_special_tokens=False).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        row = {}
        if "repeat" in e:
            row["n_ids"] = len(ids)
            row["ids_fnv1a"] = fnv1a_ids(ids)
            row["decode_fnv1a"] = fnv1a_bytes(dec.encode())
        else:
            row["ids"] = " ".join(map(str, ids))
            row["decode"] = None if dec == text else dec
        if k < WITH_SPECIAL_COUNT:
            row["ids_special"] = " ".join(map(str, tok.encode(text, add_special_tokens=True).ids))
            dskip = tok.decode(row_ids := tok.encode(text, add_special_tokens=True).ids, skip_special_tokens=True)
            row["decode_skip_special"] = None if dskip == dec else dskip
        rows.append(row)
    with open(OUT / f"{name}.expected.json", "w", encoding="utf-8") as f:
        json.dump({"tokenizer": name, "rows": rows}, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{name}: {len(rows)} rows", file=sys.stderr)


def save(tok, name):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"), pretty=False)
    return Tokenizer.from_file(str(d / "tokenizer.json"))


def build_bloom(train):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(BLOOM_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=False)
    tr = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(train, tr)
    return save(tok, "bloom")


def build_llama3(train):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tr = trainers.BpeTrainer(vocab_size=1500, special_tokens=specials,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(train, tr)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
    # LLaMA-3 sets ignore_merges: whole words found in the vocab skip the merges.
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    return save(Tokenizer.from_str(json.dumps(j)), "llama3")


def build_llama2_style(train, name, legacy):
    """A LLaMA-2 tokenizer.json: byte-fallback BPE, <0xNN> pieces at ids 3..258, SentencePiece-style
    whitespace; `legacy` picks transformers' Prepend/Replace normalizer, else the Metaspace pre-tokenizer."""
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tr = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens, show_progress=False)
    tok.train_from_iterator(train, tr)
    j = json.loads(tok.to_str())
    j["added_tokens"] = [a for a in j["added_tokens"] if not a["content"].startswith("<0x")]
    if legacy:
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        j["pre_tokenizer"] = None
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
            {"type": "ByteFallback"}, {"type": "Fuse"}]}
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    return save(Tokenizer.from_str(json.dumps(j)), name)


def build_unigram(train):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "),
                                           normalizers.Strip(left=False, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tr = trainers.UnigramTrainer(vocab_size=900, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                 show_progress=False)
    tok.train_from_iterator(train, tr)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return save(tok, "unigram")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    entries = make_corpus()
    with open(OUT / "corpus.json", "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"corpus: {len(entries)} entries", file=sys.stderr)
    train = training_text(entries)
    record("bloom", build_bloom(train), entries)
    record("llama3", build_llama3(train), entries)
    record("llama2-legacy", build_llama2_style(train, "llama2-legacy", True), entries)
    record("llama2-metaspace", build_llama2_style(train, "llama2-metaspace", False), entries)
    record("unigram", build_unigram(train), entries)

    # Real vocabularies from shared/: only the expected ids are stored.
    opt = SHARED / "opt-bpe"
    if opt.exists():
        from transformers import GPT2TokenizerFast
        t = GPT2TokenizerFast(vocab_file=str(opt / "vocab.json"), merges_file=str(opt / "merges.txt"),
                              bos_token="</s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
        tok = t.backend_tokenizer
        tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
        record("opt-shared", tok, entries)
    spm = SHARED / "llama-spm" / "tokenizer.model"
    if spm.exists():
        from transformers import LlamaTokenizerFast
        t = LlamaTokenizerFast(vocab_file=str(spm), legacy=True, from_slow=True, add_bos_token=True, add_prefix_space=True)
        record("llama-spm-shared", t.backend_tokenizer, entries)


if __name__ == "__main__":
    main()
