"""Minimal GGUF metadata reader (no dependencies beyond the standard library).

Reads the header, the key/value metadata and the tensor infos of a GGUF file;
tensor data is not read.  Used by the comparison scripts to look at files
without llama.cpp's gguf package.
"""
import struct
import sys

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
              9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
              15: "Q8_K", 30: "BF16"}


class _Reader:
    def __init__(self, f):
        self.f = f

    def unpack(self, fmt):
        n = struct.calcsize(fmt)
        b = self.f.read(n)
        if len(b) != n:
            raise ValueError("truncated GGUF file")
        return struct.unpack(fmt, b)[0]

    def string(self):
        n = self.unpack("<Q")
        return self.f.read(n).decode("utf-8", errors="replace")

    def value(self, t):
        if t in _SCALARS:
            return self.unpack(_SCALARS[t])
        if t == 8:
            return self.string()
        if t == 9:
            et = self.unpack("<I")
            n = self.unpack("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")


def read(path):
    """Returns (metadata dict, list of (name, type name, shape outermost-first))."""
    with open(path, "rb") as f:
        r = _Reader(f)
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = r.unpack("<I")
        n_tensors = r.unpack("<Q")
        n_kv = r.unpack("<Q")
        meta = {"GGUF.version": version}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.unpack("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            nd = r.unpack("<I")
            ne = [r.unpack("<Q") for _ in range(nd)]
            t = r.unpack("<I")
            r.unpack("<Q")
            tensors.append((name, GGML_TYPES.get(t, str(t)), list(reversed(ne))))
    return meta, tensors


if __name__ == "__main__":
    meta, tensors = read(sys.argv[1])
    for k, v in meta.items():
        if isinstance(v, list) and len(v) > 8:
            v = f"[{len(v)} items] {v[:4]}..."
        elif isinstance(v, str) and len(v) > 120:
            v = v[:120] + "..."
        print(f"{k} = {v}")
    counts = {}
    for name, t, shape in tensors:
        counts[t] = counts.get(t, 0) + 1
    print("tensors:", len(tensors), counts)
    for name, t, shape in tensors[:12]:
        print(f"  {name} {t} {shape}")
