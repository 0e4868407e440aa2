// Bad input: a corpus of corrupted GGUF files generated from a valid one.
// Truncations at every byte, and every structural field (counts, string and
// array lengths, value and element types, n_dims, dimensions, tensor types,
// offsets) set to 0, -1, huge, misaligned or another type.  Each must give a
// runnel::Error, never a crash or another exception; the suite also runs
// under ASan / UBSan.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/model.hpp"
#include "runnel/tokenizer.hpp"
#include "test_cli_util.hpp"
#include "test_gguf_util.hpp"

namespace runnel {
namespace {

using gguf::ValueType;

enum class Kind {
  Magic,
  Version,
  Count,
  Length,
  ValueType,
  ElemType,
  Bool,
  NDims,
  Dim,
  TensorType,
  Offset
};

struct Field {
  size_t off;
  size_t size;  // 1, 4 or 8
  Kind kind;
  std::string what;
};

// Walks a well-formed file (our writer's output) and records where each
// structural field is.
class Walker {
 public:
  explicit Walker(const std::string& b) : b_(b) {}
  std::vector<Field> run() {
    add(4, Kind::Magic, "magic");
    add(4, Kind::Version, "version");
    const uint64_t nt = add(8, Kind::Count, "n_tensors");
    const uint64_t nkv = add(8, Kind::Count, "n_kv");
    for (uint64_t k = 0; k < nkv; ++k) {
      const std::string key = str("key length");
      const uint64_t type = add(4, Kind::ValueType, key + " type");
      value(ValueType(type), key);
    }
    for (uint64_t k = 0; k < nt; ++k) {
      const std::string name = str("tensor name length");
      const uint64_t nd = add(4, Kind::NDims, name + " n_dims");
      for (uint64_t d = 0; d < nd; ++d) add(8, Kind::Dim, name + " dim " + std::to_string(d));
      add(4, Kind::TensorType, name + " type");
      add(8, Kind::Offset, name + " offset");
    }
    return fields_;
  }

 private:
  uint64_t get(size_t size) {
    uint64_t v = 0;
    std::memcpy(&v, b_.data() + pos_, size);
    pos_ += size;
    return v;
  }
  uint64_t add(size_t size, Kind k, const std::string& what, bool record = true) {
    if (record) fields_.push_back({pos_, size, k, what});
    return get(size);
  }
  std::string str(const std::string& what, bool record = true) {
    const uint64_t n = add(8, Kind::Length, what, record);
    std::string s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void value(ValueType t, const std::string& what) {
    switch (t) {
      case ValueType::String:
        str(what + " string length");
        return;
      case ValueType::Bool:
        add(1, Kind::Bool, what);
        return;
      case ValueType::Array: {
        const auto et = ValueType(add(4, Kind::ElemType, what + " element type"));
        const uint64_t n = add(8, Kind::Count, what + " array length");
        for (uint64_t i = 0; i < n; ++i) {
          // Record only the first elements of long arrays.
          const bool record = i < 3;
          if (et == ValueType::String)
            str(what + "[" + std::to_string(i) + "] length", record);
          else if (et == ValueType::Array)
            value(et, what + "[" + std::to_string(i) + "]");
          else if (et == ValueType::Bool)
            add(1, Kind::Bool, what, record);
          else
            pos_ += scalar(et);
        }
        return;
      }
      default:
        pos_ += scalar(t);
    }
  }
  static size_t scalar(ValueType t) {
    switch (t) {
      case ValueType::U8:
      case ValueType::I8:
      case ValueType::Bool:
        return 1;
      case ValueType::U16:
      case ValueType::I16:
        return 2;
      case ValueType::U32:
      case ValueType::I32:
      case ValueType::F32:
        return 4;
      default:
        return 8;
    }
  }
  const std::string& b_;
  size_t pos_ = 0;
  std::vector<Field> fields_;
};

struct Mutation {
  std::string bytes;
  std::string what;
  bool must_fail;  // false: a well-formed file may result (e.g. a shorter string)
};

void put(std::string& b, const Field& f, uint64_t v) { std::memcpy(b.data() + f.off, &v, f.size); }

std::vector<Mutation> corpus(const std::string& good) {
  std::vector<Mutation> out;
  // Cut anywhere before the end of the last tensor's data, a file is short;
  // cut in the padding after it (written as llama.cpp writes it), it is whole.
  const gguf::File whole = gguf::File::parse(good.data(), good.size(), "good.gguf");
  uint64_t data_end = 0;
  for (const gguf::TensorInfo& t : whole.tensors()) data_end = std::max(data_end, t.file_offset + t.nbytes);
  for (size_t n = 0; n < good.size(); ++n)
    out.push_back({good.substr(0, n), "truncated to " + std::to_string(n) + " bytes", n < data_end});
  for (const Field& f : Walker(good).run()) {
    uint64_t orig = 0;
    std::memcpy(&orig, good.data() + f.off, f.size);
    auto mut = [&](uint64_t v, bool must_fail, const char* how) {
      if (f.size < 8) v &= (uint64_t(1) << (8 * f.size)) - 1;
      if (v == orig) return;
      std::string b = good;
      put(b, f, v);
      out.push_back(
          {std::move(b), f.what + " set to " + how + " (" + std::to_string(v) + ")", must_fail});
    };
    const uint64_t all = ~uint64_t(0);
    switch (f.kind) {
      case Kind::Magic:
      case Kind::Version:
        for (uint64_t v : {uint64_t(0), uint64_t(1), uint64_t(4), all}) mut(v, true, "bad");
        break;
      case Kind::Count:
      case Kind::Length:
        mut(0,
            f.what == "n_tensors" || f.what.find("key length") == 0 ||
                f.what.find("tensor name length") == 0,
            "0");
        mut(all, true, "-1");
        mut(uint64_t(1) << 62, true, "huge");
        mut(uint64_t(1) << 32, true, "2^32");
        mut(orig + 1, false, "+1");
        mut(orig - 1, false, "-1 from the original");
        break;
      case Kind::ValueType:
      case Kind::ElemType:
        for (uint64_t v : {uint64_t(13), uint64_t(99), all, uint64_t(0x80000000)})
          mut(v, true, "unknown");
        for (uint64_t v = 0; v <= 12; ++v) mut(v, false, "another type");
        break;
      case Kind::Bool:
        mut(2, true, "2");
        mut(0xff, true, "255");
        break;
      case Kind::NDims:
        for (uint64_t v : {uint64_t(0), uint64_t(5), all}) mut(v, true, "bad");
        mut(orig + 1, false, "+1");
        break;
      case Kind::Dim:
        for (uint64_t v : {uint64_t(0), all, uint64_t(1) << 62, uint64_t(1) << 32})
          mut(v, true, "bad");
        mut(orig + 1, false, "+1");
        break;
      case Kind::TensorType:
        // Unknown, quantized (rows of 8 are not whole blocks) and I32.
        for (uint64_t v : {uint64_t(4), uint64_t(99), all, uint64_t(3), uint64_t(12), uint64_t(26)})
          mut(v, true, "bad");
        for (uint64_t v : {uint64_t(1), uint64_t(30)}) mut(v, false, "a smaller float type");
        break;
      case Kind::Offset:
        mut(orig + 1, true, "misaligned");
        mut(orig + 16, true, "misaligned by 16");
        mut(orig + 32, true, "the next slot");
        mut(0, true, "0");
        mut(all, true, "-1");
        mut(uint64_t(1) << 62, true, "huge");
        break;
    }
  }
  return out;
}

// Everything the loader does with a file image, in memory.
void use_everything(const std::string& b) {
  const gguf::File f = gguf::File::parse(b.data(), b.size(), "corrupt.gguf");
  const ModelConfig c = gguf::model_config(f);
  (void)c;
  if (auto v = gguf::read_vocab(f)) {
    const Tokenizer tok = Tokenizer::from_vocab(*v);
    (void)tok.encode("abc ab\n");
  }
  volatile uint8_t sink = 0;
  for (const gguf::TensorInfo& t : f.tensors()) {
    const Tensor x = f.tensor(t);
    const auto* p = static_cast<const uint8_t*>(x.data());
    sink = sink + p[0] + p[x.nbytes() - 1];
  }
}

// Every mutation of `good` gives a runnel::Error naming the file, or loads.
void check_corpus(const std::string& good) {
  ASSERT_NO_THROW(use_everything(good));
  const std::vector<Mutation> muts = corpus(good);
  test::GgufTempDir dir;
  const std::string path = dir.file("corrupt.gguf");
  LoadOptions o;
  o.threads = 1;
  size_t errors = 0, lenient_ok = 0, loads = 0;
  for (size_t i = 0; i < muts.size(); ++i) {
    const Mutation& m = muts[i];
    bool threw = false;
    try {
      use_everything(m.bytes);
    } catch (const Error& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find("corrupt.gguf"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << m.what << ": not a runnel::Error: " << e.what();
      continue;
    }
    // The whole load from a file: truncations at every 13th byte, every field mutation.
    const bool truncation = m.what.rfind("truncated", 0) == 0;
    bool load_threw = threw;
    if (!truncation || i % 13 == 0) {
      test::write_bytes(path, m.bytes);
      ++loads;
      try {
        Model::load(path, o);
        load_threw = false;
      } catch (const Error& e) {
        load_threw = true;
        EXPECT_NE(std::string(e.what()).find("corrupt.gguf"), std::string::npos) << e.what();
      } catch (const std::exception& e) {
        ADD_FAILURE() << m.what << ": Model::load: not a runnel::Error: " << e.what();
        continue;
      }
    }
    if (m.must_fail) {
      EXPECT_TRUE(threw || load_threw) << m.what << " was accepted";
    } else if (!threw && !load_threw) {
      ++lenient_ok;
    }
    errors += threw || load_threw;
  }
  std::printf(
      "[ GgufCorrupt ] %zu corrupted files (%zu loaded from disk): %zu errors, %zu still "
      "well-formed\n",
      muts.size(), loads, errors, lenient_ok);
  EXPECT_GT(muts.size(), 2000u);
}

TEST(GgufCorrupt, EveryCorruptionGivesAnError) { check_corpus(test::tiny_llama().bytes()); }

// The same with rope_freqs.weight, which model_config reads itself: its type,
// dimensions and offset mutated as well.
TEST(GgufCorrupt, EveryCorruptionWithRopeFreqsGivesAnError) {
  gguf::Writer w = test::tiny_llama();
  const float factors[2] = {1.0f, 4.0f};  // rot_dim 4
  w.add_tensor("rope_freqs.weight", gguf::GgmlType::F32, {2}, factors, sizeof factors);
  check_corpus(w.bytes());
}

// The CLI: bad input is exit code 2 with one `runnel: error:` line that
// names the problem, and nothing on stdout.  Exactly 2: ASan's 1 and
// LeakSanitizer's 23, or a crash, must not pass for a refusal.
TEST(GgufCorrupt, CliExitsTwoWithOneLine) {
  const std::string good = test::tiny_llama().bytes();
  test::GgufTempDir dir;
  struct Bad {
    std::string bytes;
    const char* expect;
  };
  std::string huge_kv = good;
  const uint64_t big = uint64_t(1) << 62;
  std::memcpy(huge_kv.data() + 16, &big, 8);
  const Bad bad[] = {{good.substr(0, good.size() / 2), "corrupt.gguf"},
                     {huge_kv, "metadata count"},
                     {test::tiny_llama(gguf::GgmlType::Q3_K).bytes(), "quantized type Q3_K"}};
  for (const Bad& b : bad) {
    const std::string path = dir.file("corrupt.gguf");
    test::write_bytes(path, b.bytes);
    const clitest::Result r = clitest::run_cli("generate -m " + clitest::quote(path) + " -n 4 --temp 0");
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("runnel: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(b.expect), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace runnel
