// GGUF: the reader (every value type, alignment, tensor infos, vocab-only
// files), the ggml type table, the llama / bloom / opt mappings checked
// against the safetensors fixtures, the embedded tokenizers against the shared
// conformance cases, and real llama2.c-trained weights.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "test_generate.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/loader.hpp"
#include "runnel/model.hpp"
#include "runnel/tokenizer.hpp"
#include "test_gguf_util.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

namespace fs = std::filesystem;
using gguf::GgmlType;
using gguf::ValueType;

fs::path shared(const std::string& rel) { return fs::path(RUNNEL_SHARED_DIR) / "testdata" / rel; }
fs::path fixture(const std::string& v) { return fs::path(RUNNEL_TEST_DATA_DIR) / "models" / v; }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

#define EXPECT_ERROR_HAS(stmt, ...)                                 \
  do {                                                              \
    try {                                                           \
      stmt;                                                         \
      ADD_FAILURE() << "expected runnel::Error from " #stmt;        \
    } catch (const runnel::Error& e) {                              \
      for (const char* s : {__VA_ARGS__})                           \
        EXPECT_NE(std::string(e.what()).find(s), std::string::npos) \
            << "message lacks \"" << s << "\": " << e.what();       \
    }                                                               \
  } while (0)

template <class T>
std::string le(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));
  return s;
}
std::string gstr(std::string_view s) { return le<uint64_t>(s.size()) + std::string(s); }

// ---------------------------------------------------------------------------
// Reader

TEST(GgufReader, EveryValueType) {
  gguf::Writer w;
  w.set_raw("t.u8", ValueType::U8, le<uint8_t>(200));
  w.set_raw("t.i8", ValueType::I8, le<int8_t>(-100));
  w.set_raw("t.u16", ValueType::U16, le<uint16_t>(60000));
  w.set_raw("t.i16", ValueType::I16, le<int16_t>(-30000));
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -2000000000);
  w.set_u64("t.u64", uint64_t(1) << 40);
  w.set_raw("t.i64", ValueType::I64, le<int64_t>(-(int64_t(1) << 50)));
  w.set_f32("t.f32", 1.5f);
  w.set_raw("t.f64", ValueType::F64, le<double>(-2.25));
  w.set_bool("t.bool", true);
  w.set_string("t.str", "h\xC3\xA9llo");
  w.set_strings("t.strs", {"a", "", "ccc"});
  w.set_f32s("t.f32s", {1.0f, -2.0f});
  w.set_i32s("t.i32s", {7, -8, 9});
  // [[1, 2], [3]] as u16 arrays, and an empty array.
  std::string nested = le<uint32_t>(uint32_t(ValueType::Array)) + le<uint64_t>(2);
  nested +=
      le<uint32_t>(uint32_t(ValueType::U16)) + le<uint64_t>(2) + le<uint16_t>(1) + le<uint16_t>(2);
  nested += le<uint32_t>(uint32_t(ValueType::U16)) + le<uint64_t>(1) + le<uint16_t>(3);
  w.set_raw("t.nested", ValueType::Array, nested);
  w.set_raw("t.empty", ValueType::Array, le<uint32_t>(uint32_t(ValueType::F64)) + le<uint64_t>(0));
  const std::string bytes = w.bytes();
  const gguf::File f = gguf::File::parse(bytes.data(), bytes.size(), "mem.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 17u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_FALSE(f.has_data_section());  // ends right after the metadata
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_int("t.u64"), int64_t(1) << 40);
  EXPECT_EQ(f.get_int("t.i64"), -(int64_t(1) << 50));
  EXPECT_EQ(f.get_float("t.f32"), 1.5);
  EXPECT_EQ(f.get_float("t.f64"), -2.25);
  EXPECT_TRUE(f.get_bool("t.bool", false));
  EXPECT_EQ(f.get_string("t.str"), "h\xC3\xA9llo");
  EXPECT_EQ(f.get_strings("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_floats("t.f32s"), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(f.get_ints("t.i32s"), (std::vector<int64_t>{7, -8, 9}));
  const gguf::Value* n = f.find("t.nested");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->elem, ValueType::Array);
  ASSERT_EQ(n->items.size(), 2u);
  EXPECT_EQ(n->items[0].count, 2u);
  EXPECT_EQ(n->items[1].elem, ValueType::U16);
  EXPECT_EQ(f.get_floats("t.empty").size(), 0u);
  // Defaults and type errors.
  EXPECT_EQ(f.get_int("t.absent", 5), 5);
  EXPECT_ERROR_HAS(f.get_int("t.absent"), "mem.gguf", "t.absent");
  EXPECT_ERROR_HAS(f.get_int("t.str"), "mem.gguf", "t.str", "expected an integer", "string",
                   "at byte");
  EXPECT_ERROR_HAS(f.get_string("t.u32"), "t.u32", "expected string");
  EXPECT_ERROR_HAS(f.get_strings("t.f32s"), "t.f32s", "array of strings");
  EXPECT_ERROR_HAS(f.get_bool("t.u8", false), "t.u8", "expected bool");
}

// Files written by gguf-py, the writer maintained with llama.cpp
// (tests/data/gguf/, tools/reference/make_gguf_fixtures.py): runnel reads
// every key and tensor of them, and its Writer, given the same keys and
// tensors in the same order, writes the same bytes.
std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const fs::path kGgufPy = fs::path(RUNNEL_TEST_DATA_DIR) / "gguf";

TEST(GgufReader, ReadsWhatGgufPyWrote) {
  const gguf::File f = gguf::File::open((kGgufPy / "every-value-type.gguf").string());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 17u);
  EXPECT_EQ(f.get_string("general.architecture"), "none");
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_int("t.u64"), int64_t(1) << 40);
  EXPECT_EQ(f.get_int("t.i64"), -(int64_t(1) << 50));
  EXPECT_EQ(f.get_float("t.f32"), 1.5);
  EXPECT_EQ(f.get_float("t.f64"), -2.25);
  EXPECT_TRUE(f.get_bool("t.bool", false));
  EXPECT_EQ(f.get_string("t.str"), "h\xC3\xA9llo");
  EXPECT_EQ(f.get_strings("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_floats("t.f32s"), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(f.get_ints("t.i32s"), (std::vector<int64_t>{7, -8, 9}));
  const gguf::Value* n = f.find("t.nested");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->elem, ValueType::Array);
  ASSERT_EQ(n->items.size(), 2u);
  EXPECT_EQ(n->items[0].elem, ValueType::I32);
  EXPECT_EQ(n->items[0].count, 2u);
  EXPECT_EQ(n->items[1].count, 1u);
  ASSERT_EQ(f.tensors().size(), 3u);
  const gguf::TensorInfo* a = f.find_tensor("a");
  const gguf::TensorInfo* b = f.find_tensor("b");
  const gguf::TensorInfo* c = f.find_tensor("c");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 3}));  // numpy (2, 3): ne = [3, 2]
  EXPECT_EQ(b->ne, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(c->shape, (std::vector<int64_t>{1, 32}));
  EXPECT_EQ(f.tensor(*a).dtype(), DType::F32);
  EXPECT_EQ(f.tensor(*b).dtype(), DType::F16);
  EXPECT_EQ(f.tensor(*c).dtype(), DType::Q8_0);
  const float* av = f.tensor(*a).data_as<float>();
  EXPECT_EQ(std::vector<float>(av, av + 3), (std::vector<float>{1, 2, 3}));
  std::vector<float> bv(6), cv(32);
  traits(DType::F16).to_float(f.tensor(*b).data(), bv.data(), 6);
  EXPECT_EQ(bv, (std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f}));
  traits(DType::Q8_0).to_float(f.tensor(*c).data(), cv.data(), 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(cv[size_t(i)], 0.25f * float(i - 16)) << i;

  const gguf::File g = gguf::File::open((kGgufPy / "aligned-64.gguf").string());
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.data_offset() % 64, 0u);
  EXPECT_EQ(g.find_tensor("b")->offset, 64u);
  EXPECT_EQ(g.tensor(*g.find_tensor("b")).data_as<float>()[2], 3.0f);
}

TEST(GgufWriter, WritesTheBytesGgufPyWrites) {
  gguf::Writer w;
  w.set_string("general.architecture", "none");
  w.set_raw("t.u8", ValueType::U8, le<uint8_t>(200));
  w.set_raw("t.i8", ValueType::I8, le<int8_t>(-100));
  w.set_raw("t.u16", ValueType::U16, le<uint16_t>(60000));
  w.set_raw("t.i16", ValueType::I16, le<int16_t>(-30000));
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -2000000000);
  w.set_u64("t.u64", uint64_t(1) << 40);
  w.set_raw("t.i64", ValueType::I64, le<int64_t>(-(int64_t(1) << 50)));
  w.set_f32("t.f32", 1.5f);
  w.set_raw("t.f64", ValueType::F64, le<double>(-2.25));
  w.set_bool("t.bool", true);
  w.set_string("t.str", "h\xC3\xA9llo");
  w.set_strings("t.strs", {"a", "", "ccc"});
  w.set_f32s("t.f32s", {1.0f, -2.0f});
  w.set_i32s("t.i32s", {7, -8, 9});
  std::string nested = le<uint32_t>(uint32_t(ValueType::Array)) + le<uint64_t>(2);
  nested += le<uint32_t>(uint32_t(ValueType::I32)) + le<uint64_t>(2) + le<int32_t>(1) + le<int32_t>(2);
  nested += le<uint32_t>(uint32_t(ValueType::I32)) + le<uint64_t>(1) + le<int32_t>(3);
  w.set_raw("t.nested", ValueType::Array, nested);
  const float a[3] = {1, 2, 3};
  w.add_tensor("a", GgmlType::F32, {3}, a, sizeof a);
  const uint16_t b[6] = {0x0000, 0x3800, 0x3c00, 0x3e00, 0x4000, 0x4100};  // 0, 0.5, ..., 2.5 in f16
  w.add_tensor("b", GgmlType::F16, {2, 3}, b, sizeof b);
  std::string c = le<uint16_t>(0x3400);  // f16 0.25
  for (int v = -16; v < 16; ++v) c += char(int8_t(v));
  w.add_tensor("c", GgmlType::Q8_0, {1, 32}, c.data(), c.size());
  const std::string want = read_bytes(kGgufPy / "every-value-type.gguf");
  const std::string got = w.bytes();
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "first difference at byte "
                           << std::mismatch(got.begin(), got.end(), want.begin()).first - got.begin();
}

TEST(GgufReader, TensorsAreViewsInRowMajorOrder) {
  const std::string bytes = test::tiny_llama().bytes();
  const gguf::File f = gguf::File::parse(bytes.data(), bytes.size(), "tiny.gguf");
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.tensors().size(), 1u + 2 * 9 + 2);
  const gguf::TensorInfo* t = f.find_tensor("blk.1.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ne, (std::vector<int64_t>{16, 8}));  // ggml order: innermost first
  EXPECT_EQ(t->shape, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(t->nbytes, 8u * 16 * 4);
  EXPECT_EQ(t->offset % 32, 0u);
  const Tensor view = f.tensor(*t);
  EXPECT_EQ(view.dtype(), DType::F32);
  EXPECT_EQ(view.dim(0), 8);
  EXPECT_EQ(view.dim(1), 16);
  EXPECT_EQ(static_cast<const char*>(view.data()), bytes.data() + t->file_offset);  // not a copy
}

TEST(GgufReader, CustomAlignmentAndVersion2) {
  gguf::Writer w(64);
  w.set_string("general.architecture", "none");
  const float x[3] = {1, 2, 3};
  w.add_tensor("a", GgmlType::F32, {3}, x, sizeof x);
  w.add_tensor("b", GgmlType::F32, {3}, x, sizeof x);
  std::string bytes = w.bytes();
  bytes[4] = 2;  // v2 has the same layout as v3
  const gguf::File f = gguf::File::parse(bytes.data(), bytes.size(), "al.gguf");
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.find_tensor("b")->offset, 64u);
  EXPECT_EQ(f.tensor(*f.find_tensor("b")).data_as<float>()[2], 3.0f);
  bytes[4] = 1;
  EXPECT_ERROR_HAS(gguf::File::parse(bytes.data(), bytes.size(), "al.gguf"), "al.gguf",
                   "version 1");
  bytes[4] = 0;
  bytes[7] = 3;  // 0x03000000: a big-endian v3 file
  EXPECT_ERROR_HAS(gguf::File::parse(bytes.data(), bytes.size(), "al.gguf"), "big-endian");
}

TEST(GgufReader, ClearErrorsForBadFields) {
  auto parse = [](const std::string& b) {
    return gguf::File::parse(b.data(), b.size(), "bad.gguf");
  };
  const std::string head = "GGUF" + le<uint32_t>(3);
  EXPECT_ERROR_HAS(parse("GGML"), "bad.gguf", "not a GGUF file");
  EXPECT_ERROR_HAS(parse(head), "bad.gguf", "tensor count", "truncated");
  EXPECT_ERROR_HAS(parse(head + le<uint64_t>(0) + le<uint64_t>(~uint64_t(0))), "metadata count",
                   "impossible", "at byte 16");
  EXPECT_ERROR_HAS(parse(head + le<uint64_t>(uint64_t(1) << 60) + le<uint64_t>(0)), "tensor count",
                   "impossible");
  // A key whose string length runs past the end.
  EXPECT_ERROR_HAS(parse(head + le<uint64_t>(0) + le<uint64_t>(1) + le<uint64_t>(1000) + "abc" +
                         std::string(20, 'x')),
                   "metadata entry 0: key", "string length 1000", "runs past the end",
                   "at byte 24");
  const std::string kv1 = head + le<uint64_t>(0) + le<uint64_t>(1) + gstr("k");
  EXPECT_ERROR_HAS(parse(kv1 + le<uint32_t>(13) + le<uint32_t>(0)), "\"k\"",
                   "unknown value type 13");
  EXPECT_ERROR_HAS(parse(kv1 + le<uint32_t>(7) + "\x02"), "\"k\"", "bool value 2");
  EXPECT_ERROR_HAS(
      parse(kv1 + le<uint32_t>(9) + le<uint32_t>(4) + le<uint64_t>(uint64_t(1) << 61) + "xxxx"),
      "\"k\"", "array of", "runs past the end");
  EXPECT_ERROR_HAS(parse(kv1 + le<uint32_t>(9) + le<uint32_t>(99) + le<uint64_t>(0)),
                   "unknown array element type 99");
  // Nested arrays deeper than the limit.
  std::string deep = kv1 + le<uint32_t>(9);
  for (int i = 0; i < 20; ++i) deep += le<uint32_t>(9) + le<uint64_t>(1);
  EXPECT_ERROR_HAS(parse(deep), "nested deeper");
  // Duplicate keys.
  const std::string two = head + le<uint64_t>(0) + le<uint64_t>(2);
  const std::string kv = gstr("k") + le<uint32_t>(4) + le<uint32_t>(1);
  EXPECT_ERROR_HAS(parse(two + kv + kv), "\"k\"", "duplicate key");
  // Alignment that is not a power of two.
  EXPECT_ERROR_HAS(parse(head + le<uint64_t>(0) + le<uint64_t>(1) + gstr("general.alignment") +
                         le<uint32_t>(4) + le<uint32_t>(48)),
                   "general.alignment", "power of two");
  EXPECT_ERROR_HAS(parse(head + le<uint64_t>(0) + le<uint64_t>(1) + gstr("general.alignment") +
                         le<uint32_t>(8) + gstr("32")),
                   "general.alignment", "unsigned integer");

  // Tensor infos.
  auto tensor = [&](const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                    uint64_t off) {
    std::string s = gstr(name) + le<uint32_t>(uint32_t(ne.size()));
    for (uint64_t d : ne) s += le<uint64_t>(d);
    return s + le<uint32_t>(type) + le<uint64_t>(off);
  };
  auto file = [&](const std::vector<std::string>& infos, size_t data_bytes) {
    std::string s = head + le<uint64_t>(infos.size()) + le<uint64_t>(0);
    for (const auto& i : infos) s += i;
    s.resize((s.size() + 31) / 32 * 32, '\0');
    return s + std::string(data_bytes, '\0');
  };
  EXPECT_NO_THROW(parse(file({tensor("w", {8, 2}, 0, 0)}, 64)));
  EXPECT_ERROR_HAS(parse(file({tensor("w", {8, 2}, 0, 0)}, 63)), "tensor \"w\"", "past the end",
                   "truncated");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {8, 2}, 0, 8)}, 64)), "tensor \"w\"",
                   "not a multiple of the alignment");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {8, 2}, 0, ~uint64_t(0) << 5)}, 64)), "past the end");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {8, 2}, 77, 0)}, 64)), "unknown ggml type 77");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {8, 0}, 0, 0)}, 64)), "dimension 1 = 0");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {8, ~uint64_t(0)}, 0, 0)}, 64)), "dimension 1 = -1");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {1 << 30, 1 << 30, 1 << 30, 1 << 30}, 0, 0)}, 64)),
                   "overflows");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {1, 1, 1, 1, 1}, 0, 0)}, 64)), "n_dims = 5");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {}, 0, 0)}, 64)), "n_dims = 0");
  EXPECT_ERROR_HAS(parse(file({tensor("w", {8}, 0, 0), tensor("w", {8}, 0, 32)}, 64)),
                   "duplicate tensor name");
  EXPECT_ERROR_HAS(parse(file({tensor("a", {16}, 0, 0), tensor("b", {8}, 0, 32)}, 64)),
                   "overlaps tensor \"a\"");
  EXPECT_ERROR_HAS(parse(file({tensor("q", {33}, 2, 0)}, 64)), "not whole blocks of 32");
  EXPECT_ERROR_HAS(parse(file({tensor("", {8}, 0, 0)}, 64)), "empty name");
}

TEST(GgufTypes, BlockSizesFollowThePublishedFormat) {
  struct Row {
    GgmlType t;
    int64_t block, bytes;
  };
  const Row rows[] = {
      {GgmlType::F32, 1, 4},      {GgmlType::F16, 1, 2},      {GgmlType::BF16, 1, 2},
      {GgmlType::Q4_0, 32, 18},   {GgmlType::Q4_1, 32, 20},   {GgmlType::Q5_0, 32, 22},
      {GgmlType::Q5_1, 32, 24},   {GgmlType::Q8_0, 32, 34},   {GgmlType::Q8_1, 32, 36},
      {GgmlType::Q2_K, 256, 84},  {GgmlType::Q3_K, 256, 110}, {GgmlType::Q4_K, 256, 144},
      {GgmlType::Q5_K, 256, 176}, {GgmlType::Q6_K, 256, 210}, {GgmlType::Q8_K, 256, 292}};
  for (const Row& r : rows) {
    const gguf::GgmlTypeInfo* info = gguf::ggml_type_info(uint32_t(r.t));
    ASSERT_NE(info, nullptr) << uint32_t(r.t);
    EXPECT_EQ(info->block_size, r.block) << info->name;
    EXPECT_EQ(info->type_size, r.bytes) << info->name;
  }
  EXPECT_EQ(gguf::ggml_type_info(4), nullptr);  // Q4_2, removed from the format
  EXPECT_EQ(gguf::ggml_type_info(12345), nullptr);
  EXPECT_EQ(gguf::ggml_type_of(DType::F16), GgmlType::F16);
  EXPECT_EQ(gguf::ggml_type_of(DType::BF16), GgmlType::BF16);
}

TEST(GgufModel, QuantizedTensorsWithoutADtypeAreRefused) {
  test::GgufTempDir d;
  for (GgmlType q : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ4_NL}) {
    const std::string bytes = test::tiny_llama(q).bytes();
    const gguf::File f = gguf::File::parse(bytes.data(), bytes.size(), "q.gguf");
    const gguf::TensorInfo* t = f.find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type->type_size * 8, int64_t(t->nbytes));  // 8 rows of one block
    const std::string path = d.file("q.gguf");
    test::write_bytes(path, bytes);
    const std::string name(gguf::ggml_type_info(uint32_t(q))->name);
    const std::string want =
        "quantized type " + name + " (tensor blk.0.attn_q.weight) is not supported yet";
    EXPECT_ERROR_HAS(Model::load(path), "q.gguf", want.c_str(),
                     "; runnel reads F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16");
  }
  // Types with a runnel dtype load as views; this fixture's widened rows then
  // fail the shape check (tests/unit/test_quant.cpp loads real ones).
  for (GgmlType q : {GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q5_1}) {
    const std::string path = d.file("q.gguf");
    test::write_bytes(path, test::tiny_llama(q).bytes());
    EXPECT_ERROR_HAS(Model::load(path), "blk.0.attn_q.weight", "has shape [8, 32]");
  }
}

// ---------------------------------------------------------------------------
// The tiny llama: config, embedded vocabulary, forward pass

TEST(GgufModel, TinyLlamaLoadsWithItsVocabulary) {
  test::GgufTempDir d;
  const std::string path = d.file("tiny.gguf");
  test::tiny_llama().write(path);
  const Checkpoint ck = open_checkpoint(path);
  EXPECT_EQ(ck.format, "gguf");
  const ModelConfig& c = ck.config;
  EXPECT_EQ(c.family, "llama");
  EXPECT_EQ(c.vocab_size, 16);
  EXPECT_EQ(c.hidden_size, 8);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.ffn_dim, 16);
  EXPECT_EQ(c.max_positions, 64);
  EXPECT_EQ(c.rope_style, RopeStyle::GptJ);
  EXPECT_EQ(c.rope.rot_dim, 4);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.lm_head, LmHead::Separate);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{2}));
  ASSERT_NE(ck.vocab, nullptr);
  EXPECT_EQ(ck.vocab->tokens.size(), 16u);
  EXPECT_EQ(ck.vocab->chat_template, test::tiny_vocab().chat_template);
  EXPECT_NE(ck.weights.find("model.layers.1.mlp.down_proj.weight"), nullptr);

  LoadOptions o;
  o.threads = 1;
  auto m = Model::load(path, o);
  EXPECT_EQ(m->format(), "gguf");
  EXPECT_TRUE(m->weights_mapped());
  ASSERT_NE(m->tokenizer(), nullptr);
  // "▁ab▁abc": "ab" (score -10) merges first, then "▁ab" (-12) twice.
  EXPECT_EQ(m->tokenizer()->encode("ab abc"), (std::vector<int32_t>{1, 12, 12, 9}));
  EXPECT_EQ(m->tokenizer()->decode(std::vector<int32_t>{1, 12, 12, 9}, true), "ab abc");
  EXPECT_EQ(m->tokenizer()->chat_template(), test::tiny_vocab().chat_template);
  Sequence s(*m);
  const std::vector<float> logits = s.prefill(std::vector<int32_t>{1, 7, 8}, Logits::All);
  ASSERT_EQ(logits.size(), 3u * 16);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST(GgufModel, MetadataErrorsNameTheKey) {
  test::GgufTempDir d;
  const std::string path = d.file("m.gguf");
  auto with = [&](auto&& edit) {
    gguf::Writer w = test::tiny_llama();
    edit(w);
    w.write(path);
    return path;
  };
  EXPECT_ERROR_HAS(Model::load(with([](gguf::Writer& w) { w.set_u32("llama.block_count", 0); })),
                   "m.gguf", "llama.block_count", "out of range");
  EXPECT_ERROR_HAS(
      Model::load(with([](gguf::Writer& w) { w.set_string("llama.block_count", "2"); })),
      "llama.block_count", "expected an integer");
  EXPECT_ERROR_HAS(
      Model::load(with([](gguf::Writer& w) { w.set_u32("llama.attention.head_count", 3); })),
      "llama.embedding_length 8 is not a multiple of attention.head_count 3");
  EXPECT_ERROR_HAS(
      Model::load(with([](gguf::Writer& w) { w.set_string("general.architecture", "gptx"); })),
      "general.architecture \"gptx\" is not supported");
  EXPECT_ERROR_HAS(
      Model::load(with([](gguf::Writer& w) { w.set_string("llama.rope.scaling.type", "yarn"); })),
      "rope.scaling.type = \"yarn\"");
  EXPECT_ERROR_HAS(Model::load(with([](gguf::Writer& w) { w.set_u32("llama.block_count", 1); })),
                   "blk.1.", "block_count = 1");
  EXPECT_ERROR_HAS(
      Model::load(with([](gguf::Writer& w) { w.set_u32("tokenizer.ggml.bos_token_id", 99); })),
      "tokenizer.ggml.bos_token_id = 99 is outside the vocabulary");
  EXPECT_ERROR_HAS(
      Model::load(with([](gguf::Writer& w) { w.set_f32s("tokenizer.ggml.scores", {1.0f}); })),
      "tokenizer.ggml.scores has 1 entries");
  EXPECT_ERROR_HAS(
      Model::load(with([](gguf::Writer& w) { w.set_string("tokenizer.ggml.model", "bert"); })),
      "tokenizer.ggml.model \"bert\" is not supported");
  EXPECT_ERROR_HAS(Model::load(with([](gguf::Writer& w) {
                     const float x[8] = {};
                     w.add_tensor("blk.0.mystery.weight", GgmlType::F32, {8}, x, sizeof x);
                   })),
                   "tensor \"blk.0.mystery.weight\" is not a tensor of the llama architecture");
  EXPECT_ERROR_HAS(Model::load(with([](gguf::Writer& w) {
                     const float x[8] = {};
                     w.add_tensor("blk.0.attn_qkv.weight", GgmlType::F32, {8}, x, sizeof x);
                   })),
                   "has no place in a llama model");
  // A vocab-only file is not a model.
  gguf::Writer vocab_only;
  vocab_only.set_string("general.architecture", "llama");
  gguf::write_vocab(vocab_only, test::tiny_vocab());
  vocab_only.write(path);
  EXPECT_ERROR_HAS(Model::load(path), "m.gguf", "no tensors", "vocab-only");
}

// BOS, EOS and EOT ids must be rows of token_embd.weight (16 in tiny_llama),
// with or without an embedded vocabulary (an out-of-range EOS or EOT used to
// load and never match a token).
TEST(GgufModel, SpecialTokenIdsOutsideTheVocabularyAreRefused) {
  test::GgufTempDir d;
  const std::string path = d.file("m.gguf");
  for (const bool vocab : {true, false}) {
    SCOPED_TRACE(vocab ? "with a vocabulary" : "without a vocabulary");
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                            "tokenizer.ggml.eot_token_id"}) {
      for (const uint32_t id : {16u, 99u}) {
        gguf::Writer w = test::tiny_llama();
        if (!vocab) w.set_string("tokenizer.ggml.model", "none");
        w.set_u32(key, id);
        w.write(path);
        const std::string needle =
            std::string(key) + " = " + std::to_string(id) + " is outside the vocabulary of 16 tokens";
        EXPECT_ERROR_HAS(Model::load(path), "m.gguf", needle.c_str());
      }
    }
    // In range, and "none" (0xFFFFFFFF as llama.cpp writes it): loaded.
    gguf::Writer w = test::tiny_llama();
    if (!vocab) w.set_string("tokenizer.ggml.model", "none");
    w.set_u32("tokenizer.ggml.eos_token_id", 15);
    w.set_u32("tokenizer.ggml.eot_token_id", 0xFFFFFFFFu);
    w.write(path);
    EXPECT_EQ(Model::load(path)->config().eos_ids, std::vector<int32_t>{15});
  }
}

// Errors found while binding a GGUF's tensors and checking its metadata name
// them as the file does (blk.0.ffn_gate.weight, llama.rope.freq_base), not as
// the Hugging Face names runnel keeps them under (model.layers.0.mlp..., rope_theta).
TEST(GgufModel, ErrorsNameGgufTensorsAndKeys) {
  test::GgufTempDir d;
  const std::string path = d.file("m.gguf");
  auto error_of = [&](auto&& edit) -> std::string {
    gguf::Writer w = test::tiny_llama();
    edit(w);
    w.write(path);
    try {
      Model::load(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  struct Case {
    std::function<void(gguf::Writer&)> edit;
    std::vector<std::string> has;
  };
  const float zeros[16] = {};
  const Case cases[] = {
      {[](gguf::Writer& w) { w.set_f32("llama.rope.freq_base", -1.0f); },
       {"m.gguf", "\"llama.rope.freq_base\" = -1 must be finite and positive"}},
      {[](gguf::Writer& w) { w.set_f32("llama.attention.layer_norm_rms_epsilon", -1e-5f); },
       {"\"llama.attention.layer_norm_rms_epsilon\" = -1e-05 must be finite and >= 0"}},
      {[](gguf::Writer& w) { w.set_u32("llama.rope.dimension_count", 3); },
       {"\"llama.rope.dimension_count\" = 3 must be even"}},
      {[](gguf::Writer& w) { w.set_u32("llama.attention.head_count_kv", 3); },
       {"\"llama.attention.head_count_kv\" = 3 does not divide llama.attention.head_count = 2"}},
      {[](gguf::Writer& w) { w.set_string("llama.rope.scaling.type", "linear"),
                             w.set_f32("llama.rope.scaling.factor", 0.0f); },
       {"\"llama.rope.scaling.factor\" = 0 must be finite and positive"}},
      // ffn 12 where the tensors have 16 rows.
      {[](gguf::Writer& w) { w.set_u32("llama.feed_forward_length", 12); },
       {"m.gguf: tensor \"blk.0.ffn_", ".weight\" has shape", "but its metadata implies"}},
      // Three blocks where the file has two.
      {[](gguf::Writer& w) { w.set_u32("llama.block_count", 3); },
       {"m.gguf: missing tensor \"blk.2.", "of layer 2"}},
      // A q bias makes k and v biases needed too.
      {[&](gguf::Writer& w) {
         w.add_tensor("blk.0.attn_q.bias", GgmlType::F32, {8}, zeros, 8 * sizeof(float));
       },
       {"m.gguf: missing tensor \"blk.", ".attn_k.bias\""}},
      // An output bias in block 1 only (block 0 says there are none): not used.
      {[&](gguf::Writer& w) {
         w.add_tensor("blk.1.attn_output.bias", GgmlType::F32, {8}, zeros, 8 * sizeof(float));
       },
       {"m.gguf: tensor \"blk.1.attn_output.bias\" is not used by this llama configuration",
        "does not match its metadata"}},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of(c.edit);
    SCOPED_TRACE(msg);
    for (const std::string& h : c.has) EXPECT_NE(msg.find(h), std::string::npos) << h;
    for (const char* hf : {"model.layers", "self_attn", "mlp.", "rope_theta", "norm epsilon",
                           "rotary dims", "inconsistent head counts", "rope_scaling", "(GGUF tensor"})
      EXPECT_EQ(msg.find(hf), std::string::npos) << hf;
  }
}

// ---------------------------------------------------------------------------
// HF fixtures -> GGUF -> the same logits

class GgufConversion : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufConversion, SameLogitsAsSafetensors) {
  const fs::path dir = fixture(GetParam());
  test::GgufTempDir d;
  const std::string path = d.file(std::string(GetParam()) + ".gguf");
  gguf::write_checkpoint(open_checkpoint(dir.string()), path);
  LoadOptions o;
  o.threads = 1;
  auto ref = Model::load(dir.string(), o);
  auto got = Model::load(path, o);
  EXPECT_EQ(got->format(), "gguf");
  EXPECT_TRUE(got->weights_mapped());
  const ModelConfig& rc = ref->config();
  const ModelConfig& gc = got->config();
  EXPECT_EQ(gc.family, rc.family);
  EXPECT_EQ(gc.vocab_size, rc.vocab_size);
  EXPECT_EQ(gc.n_kv_heads, rc.n_kv_heads);
  EXPECT_EQ(gc.head_dim, rc.head_dim);
  EXPECT_EQ(gc.embed_dim, rc.embed_dim);
  EXPECT_EQ(gc.norm_placement, rc.norm_placement);
  EXPECT_EQ(gc.final_norm, rc.final_norm);
  EXPECT_EQ(gc.lm_head, rc.lm_head);
  if (rc.rope.scaling == RopeScaling::Llama3) {
    // llama3 scaling travels as rope_freqs.weight with no scaling key, as llama.cpp writes it.
    EXPECT_EQ(gc.rope.scaling, RopeScaling::None);
    ASSERT_EQ(gc.rope.freq_factors.size(), size_t(rc.rope.rot_dim / 2));
    const std::vector<float> gf = ops::rope_inv_freq(gc.rope, 1);
    const std::vector<float> rf = ops::rope_inv_freq(rc.rope, 1);
    ASSERT_EQ(gf.size(), rf.size());
    for (size_t i = 0; i < gf.size(); ++i) EXPECT_NEAR(gf[i], rf[i], 1e-6 * rf[i]) << i;
  } else {
    EXPECT_EQ(gc.rope.scaling, rc.rope.scaling);
    EXPECT_TRUE(gc.rope.freq_factors.empty());
  }
  EXPECT_EQ(gc.bos_id, rc.bos_id);
  if (gc.family == "llama") {
    EXPECT_EQ(gc.rope_style, RopeStyle::GptJ);
  }
  if (gc.family == "bloom") {
    EXPECT_EQ(gc.qkv_layout, QkvLayout::FusedBlocks);
  }

  std::vector<int32_t> ids;
  for (int i = 0; i < 13; ++i) ids.push_back(int32_t((i * 37 + 5) % rc.vocab_size));
  Sequence s0(*ref), s1(*got);
  const std::vector<float> want = s0.prefill(ids, Logits::All);
  const std::vector<float> have = s1.prefill(ids, Logits::All);
  const double err = test::norm_err(have, want);
  std::printf("[ %s ] GGUF vs safetensors logits max|d|/max|ref| = %.3g\n", GetParam(), err);
  EXPECT_LE(err, 1e-5);
  // And against transformers itself: the fixture's first prompt, every position.
  {
    std::ifstream in(dir / "reference.json");
    const nlohmann::json ref = nlohmann::json::parse(in);
    const nlohmann::json& p = ref.at("prompts").at(0);
    const auto pids = p.at("ids").get<std::vector<int32_t>>();
    std::vector<float> hf;
    for (const auto& row : p.at("logits")) for (const auto& v : row) hf.push_back(v.get<float>());
    Sequence s2(*got);
    const double e_hf = test::norm_err(s2.prefill(pids, Logits::All), hf);
    std::printf("[ %s ] GGUF vs transformers logits max|d|/max|ref| = %.3g\n", GetParam(), e_hf);
    EXPECT_LE(e_hf, 1e-5);  // measured 2.6e-7 to 7.4e-7
  }
  // Then decode a few tokens on both.
  for (int32_t id : {3, 9, 27}) EXPECT_LE(test::norm_err(s1.decode(id), s0.decode(id)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufConversion,
                         ::testing::Values("opt-prenorm", "opt-350m-style", "llama-mha",
                                           "llama-gqa-tied-llama3", "llama-linear-bias",
                                           "bloom-4heads", "bloom-6heads"));

// Dynamic NTK scaling has no GGUF key in llama.cpp.
TEST(GgufConversionLimits, DynamicRopeScalingIsRefused) {
  test::GgufTempDir d;
  EXPECT_ERROR_HAS(
      gguf::write_checkpoint(open_checkpoint(fixture("llama-dynamic-headdim").string()),
                             d.file("x.gguf")),
      "RoPE scaling \"dynamic\"", "cannot be written");
  EXPECT_FALSE(fs::exists(d.file("x.gguf")));
}

// ---------------------------------------------------------------------------
// rope_freqs.weight: per-dimension RoPE frequency factors (LLaMA 3.1 / 3.2 files)

TEST(GgufRopeFreqs, FactorsDivideTheInverseFrequencies) {
  RopeConfig c;
  c.rot_dim = 8;
  c.theta = 500000.0f;
  const std::vector<float> plain = ops::rope_inv_freq(c, 1);
  c.freq_factors = {1.0f, 2.0f, 4.0f, 8.0f};
  const std::vector<float> got = ops::rope_inv_freq(c, 1);
  ASSERT_EQ(got.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(got[i], plain[i] / c.freq_factors[i]) << i;
  // After linear scaling, as ggml applies freq_scale and the factors together.
  c.scaling = RopeScaling::Linear;
  c.factor = 2.0f;
  const std::vector<float> lin = ops::rope_inv_freq(c, 1);
  for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(lin[i], plain[i] / 2.0f / c.freq_factors[i]) << i;
  c.freq_factors = {1.0f, 2.0f, 4.0f};
  EXPECT_ERROR_HAS(ops::rope_inv_freq(c, 1), "3 frequency factors (rope_freqs)",
                   "expected rot_dim / 2 = 4");
  for (float bad : {0.0f, -1.0f, std::nanf(""), INFINITY}) {
    c.freq_factors = {1.0f, bad, 4.0f, 8.0f};
    EXPECT_ERROR_HAS(ops::rope_inv_freq(c, 1), "rope_freqs", "[1]", "finite and positive");
  }
}

// The llama3 fixture written as GGUF carries llama.cpp's rope_freqs, the
// factor each inverse frequency is divided by, and no scaling key.  The
// factors must be transformers' own unscaled / scaled inverse frequencies
// (inv_freq_unscaled and inv_freq in the fixture's reference.json, from
// LlamaRotaryEmbedding): 1 for short wavelengths, the factor 8 for long
// ones, a smoothed value between.
TEST(GgufRopeFreqs, Llama3ScalingIsWrittenAsLlamaCppFactors) {
  test::GgufTempDir d;
  const std::string path = d.file("l3.gguf");
  gguf::write_checkpoint(open_checkpoint(fixture("llama-gqa-tied-llama3").string()), path);
  const gguf::File f = gguf::File::open(path);
  EXPECT_EQ(f.find("llama.rope.scaling.type"), nullptr);
  const gguf::TensorInfo* t = f.find_tensor("rope_freqs.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type->type, GgmlType::F32);
  ASSERT_EQ(t->shape, (std::vector<int64_t>{4}));  // head_dim 8
  std::vector<float> got(4);
  std::memcpy(got.data(), f.tensor_data(*t), 16);
  std::ifstream in(fixture("llama-gqa-tied-llama3") / "reference.json");
  const nlohmann::json ref = nlohmann::json::parse(in);
  const auto unscaled = ref.at("inv_freq_unscaled").get<std::vector<double>>();
  const auto scaled = ref.at("inv_freq").get<std::vector<double>>();
  ASSERT_EQ(unscaled.size(), 4u);
  ASSERT_EQ(scaled.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const double want = unscaled[i] / scaled[i];
    EXPECT_NEAR(got[i], want, 1e-6 * want) << i << " (" << ref.at("llama3_bands")[i] << ")";
  }
  // All three bands occur: 1, a smoothed factor, and 8.
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_GT(got[1], 1.0f);
  EXPECT_LT(got[1], 8.0f);
  EXPECT_NEAR(got[3], 8.0f, 1e-5);
}

gguf::Writer tiny_llama_with_freqs(std::vector<float> factors) {
  gguf::Writer w = test::tiny_llama();
  w.add_tensor("rope_freqs.weight", GgmlType::F32, {int64_t(factors.size())}, factors.data(),
               factors.size() * sizeof(float));
  return w;
}

std::vector<float> tiny_logits(const std::string& path) {
  LoadOptions o;
  o.threads = 1;
  auto m = Model::load(path, o);
  Sequence s(*m);
  return s.prefill(std::vector<int32_t>{1, 7, 8, 9, 10, 11}, Logits::All);
}

TEST(GgufRopeFreqs, TinyLlamaReadsFactorsAndUsesThem) {
  test::GgufTempDir d;
  const std::string none = d.file("none.gguf"), ones = d.file("ones.gguf"),
                    some = d.file("some.gguf"), again = d.file("again.gguf");
  test::tiny_llama().write(none);
  tiny_llama_with_freqs({1.0f, 1.0f}).write(ones);
  tiny_llama_with_freqs({1.0f, 3.0f}).write(some);  // rot_dim 4

  const Checkpoint ck = open_checkpoint(some);
  EXPECT_EQ(ck.config.rope.freq_factors, (std::vector<float>{1.0f, 3.0f}));
  EXPECT_EQ(ck.config.rope.scaling, RopeScaling::None);
  // Not a weight: the same tensors as without it.
  EXPECT_EQ(ck.weights.size(), open_checkpoint(none).weights.size());
  for (const auto& [name, e] : ck.weights.entries())
    EXPECT_EQ(name.find("rope_freqs"), std::string::npos) << name;
  EXPECT_NE(ck.config.describe().find("2 frequency factors"), std::string::npos)
      << ck.config.describe();

  const std::vector<float> base = tiny_logits(none);
  EXPECT_EQ(tiny_logits(ones), base);  // dividing by 1 changes nothing
  const std::vector<float> scaled = tiny_logits(some);
  EXPECT_GT(test::norm_err(scaled, base), 1e-4);  // the factors are applied

  // Written again (runnel quantize of a GGUF): the factors are kept.
  gguf::write_checkpoint(ck, again);
  const gguf::File f = gguf::File::open(again);
  const gguf::TensorInfo* t = f.find_tensor("rope_freqs.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(open_checkpoint(again).config.rope.freq_factors, (std::vector<float>{1.0f, 3.0f}));
  EXPECT_EQ(tiny_logits(again), scaled);
}

TEST(GgufRopeFreqs, BadTensorsNameRopeFreqs) {
  test::GgufTempDir d;
  const std::string path = d.file("m.gguf");
  auto load = [&](gguf::Writer w) {
    w.write(path);
    return Model::load(path);
  };
  EXPECT_ERROR_HAS(
      load(tiny_llama_with_freqs({1.0f, 2.0f, 3.0f})), "m.gguf",
      "tensor \"rope_freqs.weight\": shape [3] (expected [2], half the 4 rotary dims)");
  EXPECT_ERROR_HAS(load(tiny_llama_with_freqs({1.0f})), "m.gguf", "rope_freqs.weight", "shape [1]");
  {
    gguf::Writer w = test::tiny_llama();
    const float x[2] = {1.0f, 2.0f};
    w.add_tensor("rope_freqs.weight", GgmlType::F32, {1, 2}, x, sizeof x);
    EXPECT_ERROR_HAS(load(w), "m.gguf", "rope_freqs.weight", "shape [1, 2]");
  }
  {
    gguf::Writer w = test::tiny_llama();
    const uint16_t x[2] = {0x3c00, 0x3c00};  // f16 ones
    w.add_tensor("rope_freqs.weight", GgmlType::F16, {2}, x, sizeof x);
    EXPECT_ERROR_HAS(load(w), "m.gguf", "rope_freqs.weight", "type F16 (expected F32)");
  }
  for (float bad : {0.0f, -2.0f, std::nanf(""), INFINITY})
    EXPECT_ERROR_HAS(load(tiny_llama_with_freqs({1.0f, bad})), "m.gguf",
                     "tensor \"rope_freqs.weight\": factor [1]", "must be finite and positive");
  // model_config on its own (as `runnel inspect` and the fuzz target use it).
  const std::string bytes = tiny_llama_with_freqs({1.0f, 0.0f}).bytes();
  EXPECT_ERROR_HAS(gguf::model_config(gguf::File::parse(bytes.data(), bytes.size(), "mem.gguf")),
                   "mem.gguf", "rope_freqs.weight", "factor [1]");
}

TEST(GgufConversionLimits, F16ComputeMatchesTheFolder) {
  test::GgufTempDir d;
  LoadOptions o;
  o.threads = 1;
  o.dtype = DType::F16;
  // Convert an f32 fixture, then read back the GGUF as f16 compute: same as the folder at f16.
  const std::string path = d.file("m.gguf");
  gguf::write_checkpoint(open_checkpoint(fixture("llama-mha").string()), path);
  auto a = Model::load(fixture("llama-mha").string(), o);
  auto b = Model::load(path, o);
  Sequence sa(*a), sb(*b);
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5};
  EXPECT_LE(test::norm_err(sb.prefill(ids, Logits::All), sa.prefill(ids, Logits::All)), 1e-3);
}

// ---------------------------------------------------------------------------
// Vocab-only GGUFs: the shared conformance cases

std::string strip_cr(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i)
    if (!(s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) out += s[i];
  return out;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> read_cases(const fs::path& inp, const fs::path& out) {
  const std::string in = strip_cr(slurp(inp));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (size_t pos = 0, hit; (hit = in.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
    cases.push_back({in.substr(pos, hit - pos), {}});
  std::istringstream lines(strip_cr(slurp(out)));
  std::string line;
  for (size_t k = 0; k < cases.size() && std::getline(lines, line); ++k) {
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) cases[k].ids.push_back(id);
  }
  return cases;
}

void run_vocab_suite(const std::string& gguf_name) {
  const fs::path p = shared(gguf_name);
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  const gguf::File f = gguf::File::open(p.string());
  EXPECT_TRUE(f.tensors().empty());
  const std::optional<Vocab> v = gguf::read_vocab(f);
  ASSERT_TRUE(v.has_value());
  const Tokenizer tok = Tokenizer::from_vocab(*v);
  const std::vector<Case> cases = read_cases(p.string() + ".inp", p.string() + ".out");
  ASSERT_EQ(cases.size(), 46u);
  size_t ok = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> ids = tok.encode(c.text, /*add_special=*/false);
    EXPECT_EQ(ids, c.ids) << "text: [" << c.text << "]";
    ok += ids == c.ids;
  }
  std::printf("[ %s ] %zu / %zu cases match\n", gguf_name.c_str(), ok, cases.size());
  EXPECT_EQ(ok, cases.size());

  // Written back and read again, the vocabulary gives the same ids.
  gguf::Writer w;
  gguf::write_vocab(w, *v);
  const std::string bytes = w.bytes();
  const Tokenizer again =
      Tokenizer::from_vocab(*gguf::read_vocab(gguf::File::parse(bytes.data(), bytes.size(), "rt")));
  for (const Case& c : cases) EXPECT_EQ(again.encode(c.text, false), c.ids);
}

TEST(GgufVocab, LlamaSpmVocabOnlyFile) {
  run_vocab_suite("llama-spm/ggml-vocab-llama-spm.gguf");
  const fs::path p = shared("llama-spm/ggml-vocab-llama-spm.gguf");
  if (!fs::exists(p)) return;
  const Tokenizer tok = Tokenizer::from_vocab(*gguf::read_vocab(gguf::File::open(p.string())));
  EXPECT_EQ(tok.vocab_size(), 32000u);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
}

TEST(GgufVocab, Gpt2BpeVocabOnlyFile) {
  run_vocab_suite("gpt2-bpe/ggml-vocab-gpt-2.gguf");
  const fs::path p = shared("gpt2-bpe/ggml-vocab-gpt-2.gguf");
  if (!fs::exists(p)) return;
  const std::optional<Vocab> v = gguf::read_vocab(gguf::File::open(p.string()));
  EXPECT_EQ(v->model, VocabModel::ByteLevelBpe);
  EXPECT_EQ(v->tokens.size(), 50257u);
  EXPECT_FALSE(v->merges.empty());
}

// ---------------------------------------------------------------------------
// Real weights: llama.cpp's greedy text equals llama2.c's on these files.

struct GreedyCase {
  const char* model;
  const char* prompt;
  const char* expected;
};

class GgufGreedy : public ::testing::TestWithParam<GreedyCase> {};

TEST_P(GgufGreedy, ReproducesRunC) {
  const GreedyCase& c = GetParam();
  if (!fs::exists(shared(c.model)))
    GTEST_SKIP() << "shared test data not found: " << shared(c.model);
  LoadOptions o;
  o.threads = 1;
  auto model = Model::load(shared(c.model).string(), o);
  EXPECT_EQ(model->format(), "gguf");
  EXPECT_EQ(model->config().rope_style, RopeStyle::GptJ);
  EXPECT_TRUE(model->weights_mapped());
  const Tokenizer* tok = model->tokenizer();
  ASSERT_NE(tok, nullptr) << "the embedded vocabulary was not loaded";
  std::vector<int32_t> ids = tok->encode(c.prompt, true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);
  // run.c stops at BOS
  std::vector<int32_t> out = test::generate_ids(*model, ids, 256 - int(ids.size()) + 1,
                                                DType::F32, {1});
  if (!out.empty() && out.back() == 1) out.pop_back();
  ids.insert(ids.end(), out.begin(), out.end());
  EXPECT_EQ(tok->decode(ids, /*skip_special=*/true) + "\n", slurp(shared(c.expected)));
}

INSTANTIATE_TEST_SUITE_P(
    Shared, GgufGreedy,
    ::testing::Values(GreedyCase{"stories260K/stories260K.gguf", "",
                                 "stories260K/greedy-no-prompt-256.txt"},
                      GreedyCase{"stories260K/stories260K.gguf", "There was a big",
                                 "stories260K/greedy-there-was-a-big-256.txt"},
                      GreedyCase{"babyllama-tok105/babyllama.gguf", "",
                                 "babyllama-tok105/greedy-no-prompt-256.txt"}));

TEST(GgufModel, Stories260KConfig) {
  const fs::path p = shared("stories260K/stories260K.gguf");
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  const Checkpoint ck = open_checkpoint(p.string());
  const ModelConfig& c = ck.config;
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.ffn_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.lm_head, LmHead::Tied);
  ASSERT_NE(ck.vocab, nullptr);
  EXPECT_EQ(ck.vocab->tokens.size(), 512u);
  // The same logits as the llama2.c file of the same weights.
  const fs::path bin = shared("stories260K/stories260K.bin");
  LoadOptions o;
  o.threads = 1;
  auto a = Model::load(p.string(), o);
  auto b = Model::load(bin.string(), o);
  Sequence sa(*a), sb(*b);
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378};
  EXPECT_LE(test::norm_err(sa.prefill(ids, Logits::All), sb.prefill(ids, Logits::All)), 1e-6);
}

// `runnel generate` on the GGUF: the continuation is the start of run.c's text.
TEST(GgufModel, CliGeneratesStories260K) {
  const fs::path p = shared("stories260K/stories260K.gguf");
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  const std::string cmd =
      std::string(RUNNEL_CLI_PATH) + " generate -m '" + p.string() + "' -n 64 --temp 0 2>/dev/null";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  EXPECT_EQ(::pclose(pipe), 0);
  ASSERT_GT(out.size(), 100u);
  ASSERT_EQ(out.back(), '\n');
  out.pop_back();
  EXPECT_EQ(slurp(shared("stories260K/greedy-no-prompt-256.txt")).rfind(out, 0), 0u) << out;
}

}  // namespace
}  // namespace runnel
