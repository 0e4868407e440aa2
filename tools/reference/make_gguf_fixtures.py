#!/usr/bin/env python3
"""Writes tests/data/gguf/: small GGUF files written by gguf-py (the GGUF
writer maintained with llama.cpp), for tests/unit/test_gguf.cpp.

- `every-value-type.gguf`: one key of every scalar type, strings with UTF-8,
  arrays of strings, floats and ints, a nested array, and three tensors
  (F32, F16, Q8_0), default alignment.  The test reads it, and writes the
  same keys and tensors with runnel's gguf::Writer: the bytes must be equal.
- `aligned-64.gguf`: general.alignment = 64, two F32 tensors.

    tools/reference/.venv-llamacpp/bin/python tools/reference/make_gguf_fixtures.py
(gguf and numpy, pinned in requirements-llamacpp.txt.)
"""
import os

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "gguf")


def every_value_type(path):
    w = gguf.GGUFWriter(path, "none")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_uint64("t.u64", 1 << 40)
    w.add_int64("t.i64", -(1 << 50))
    w.add_float32("t.f32", 1.5)
    w.add_float64("t.f64", -2.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo")
    w.add_array("t.strs", ["a", "", "ccc"])
    w.add_array("t.f32s", [1.0, -2.0])
    w.add_array("t.i32s", [7, -8, 9])
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_tensor("a", np.array([1.0, 2.0, 3.0], dtype=np.float32))
    w.add_tensor("b", np.arange(6, dtype=np.float16).reshape(2, 3) * np.float16(0.5))
    # One Q8_0 row of 32: f16 scale 0.25, then int8 values -16..15.
    block = np.float16(0.25).tobytes() + bytes((v & 0xFF) for v in range(-16, 16))
    w.add_tensor("c", np.frombuffer(block, dtype=np.uint8), raw_shape=(1, 34),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def aligned_64(path):
    w = gguf.GGUFWriter(path, "none")
    w.add_custom_alignment(64)
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    w.add_tensor("a", x)
    w.add_tensor("b", x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    every_value_type(os.path.join(OUT, "every-value-type.gguf"))
    aligned_64(os.path.join(OUT, "aligned-64.gguf"))
    for name in ("every-value-type.gguf", "aligned-64.gguf"):
        r = gguf.GGUFReader(os.path.join(OUT, name))
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes,", len(r.fields), "keys,",
              [(t.name, t.tensor_type.name, list(t.shape)) for t in r.tensors])


if __name__ == "__main__":
    main()
