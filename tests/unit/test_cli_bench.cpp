// End to end: the built `runnel bench` binary on tiny models.  Rows go to
// stdout (table, JSON Lines or CSV), progress to stderr; bad flags exit 2
// with one line.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "test_cli_util.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using runnel::clitest::quote;
using runnel::clitest::Result;
using runnel::clitest::run_cli;

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) v.push_back(l);
  return v;
}

std::string fixture(const std::string& name) {
  return (fs::path(RUNNEL_TEST_DATA_DIR) / "models" / name).string();
}

// A small LLaMA with grouped-query attention; widths are multiples of 32 so
// the block-quantized dtypes apply.
fs::path tiny_config() {
  const fs::path dir = fs::temp_directory_path() / ("runnel-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path p = dir / "tiny.json";
  std::ofstream(p) << R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 256, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2})";
  return p;
}

std::vector<json> json_rows(const Result& r) {
  std::vector<json> rows;
  for (const std::string& l : lines(r.out)) {
    try {
      rows.push_back(json::parse(l));
    } catch (const json::exception& e) {
      ADD_FAILURE() << "not a JSON line: " << l << ": " << e.what();
    }
  }
  return rows;
}

// Checks the fields of every row and that each (test, batch, threads)
// combination appears once.
void check_rows(const std::vector<json>& rows, const std::set<std::string>& tests,
                const std::set<int>& batches, const std::set<int>& threads, int reps) {
  ASSERT_EQ(rows.size(), tests.size() * batches.size() * threads.size());
  std::set<std::tuple<std::string, int, int>> seen;
  for (const json& row : rows) {
    SCOPED_TRACE(row.dump());
    for (const char* key :
         {"model",         "model_type", "weights",   "dtype",    "kv_dtype", "size_bytes",
          "params",        "backend",    "cpu_isa",   "threads",  "batch",    "ubatch",
          "gemm_min_rows", "test",       "n_prompt",  "n_gen",    "reps",     "avg_ts",
          "stddev_ts",     "samples_ts", "samples_s", "overhead", "steps"})
      ASSERT_TRUE(row.contains(key)) << key;
    const std::string test = row["test"].get<std::string>();
    EXPECT_TRUE(tests.count(test)) << test;
    EXPECT_TRUE(batches.count(row["batch"].get<int>()));
    EXPECT_TRUE(threads.count(row["threads"].get<int>()));
    seen.insert({test, row["batch"].get<int>(), row["threads"].get<int>()});
    if (test.rfind("pp", 0) == 0) {
      EXPECT_EQ(row["n_gen"].get<int>(), 0);
      EXPECT_EQ("pp" + std::to_string(row["n_prompt"].get<int>()), test);
    } else {
      EXPECT_EQ(row["n_prompt"].get<int>(), 0);
      EXPECT_EQ("tg" + std::to_string(row["n_gen"].get<int>()), test);
    }
    EXPECT_GT(row["avg_ts"].get<double>(), 0.0);
    EXPECT_GE(row["stddev_ts"].get<double>(), 0.0);
    EXPECT_EQ(row["reps"].get<int>(), reps);
    ASSERT_EQ(row["samples_ts"].size(), size_t(reps));
    ASSERT_EQ(row["samples_s"].size(), size_t(reps));
    for (const json& v : row["samples_ts"]) EXPECT_GT(v.get<double>(), 0.0);
    for (const json& v : row["samples_s"]) EXPECT_GT(v.get<double>(), 0.0);
    EXPECT_GE(row["overhead"].get<double>(), 0.0);
    EXPECT_LT(row["overhead"].get<double>(), 1.0);
    EXPECT_GE(row["steps"].get<int64_t>(), 1);
    EXPECT_GT(row["size_bytes"].get<int64_t>(), 0);
    EXPECT_GT(row["params"].get<int64_t>(), 0);
    EXPECT_EQ(row["backend"].get<std::string>().rfind("CPU ", 0), 0u);
  }
  EXPECT_EQ(seen.size(), rows.size());
}

TEST(CliBench, FixtureJsonRows) {
  const Result r =
      run_cli("bench -m " + quote(fixture("llama-mha")) + " -p 8 -n 4 -np 1,2 -r 2 -t 1 -o jsonl");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = json_rows(r);
  check_rows(rows, {"pp8", "tg4"}, {1, 2}, {1}, 2);
  for (const json& row : rows) {
    EXPECT_EQ(row["weights"], "file");
    EXPECT_EQ(row["model_type"], "llama");
    EXPECT_EQ(row["dtype"], "f32");  // the fixture's own dtype
    // llama-mha: vocab 128, hidden 32, 2 layers, 4 heads x 8, ffn 64, untied:
    // 2 * 128 * 32 + 32 + 2 * (2 * 32 + 4 * 32 * 32 + 3 * 32 * 64)
    EXPECT_EQ(row["params"].get<int64_t>(), 8192 + 32 + 2 * (64 + 4096 + 6144));
  }
  EXPECT_NE(r.err.find("warm-up"), std::string::npos) << r.err;  // progress on stderr
}

TEST(CliBench, ConfigJsonRowsForEveryCombination) {
  const fs::path cfg = tiny_config();
  const Result r = run_cli("bench --config " + quote(cfg.string()) +
                           " -p 8 -n 4 -np 1,2 -t 1,2 -r 2 -o jsonl --seed 7");
  fs::remove_all(cfg.parent_path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = json_rows(r);
  check_rows(rows, {"pp8", "tg4"}, {1, 2}, {1, 2}, 2);
  for (const json& row : rows) {
    EXPECT_EQ(row["weights"], "random");
    EXPECT_EQ(row["dtype"], "f16");  // the default for random weights
    EXPECT_EQ(row["model"], "tiny.json F16");  // the type as llama.cpp names it
  }
}

TEST(CliBench, MultiplePromptAndGenerationLengths) {
  const fs::path cfg = tiny_config();
  const Result r = run_cli("bench --config " + quote(cfg.string()) +
                           " -p 4,16 -n 2,3 -np 3 -t 1 -r 1 -o jsonl --kv-dtype f16");
  fs::remove_all(cfg.parent_path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = json_rows(r);
  check_rows(rows, {"pp4", "pp16", "tg2", "tg3"}, {3}, {1}, 1);
  for (const json& row : rows) EXPECT_EQ(row["kv_dtype"], "f16");
}

// --llama-cpp-order runs (quantized weights through the dot-product kernels)
// and makes the KV cache f16 unless --kv-dtype says otherwise.
TEST(CliBench, LlamaCppOrder) {
  const fs::path cfg = tiny_config();
  const Result r = run_cli("bench --config " + quote(cfg.string()) +
                           " --dtype q4_1 -p 40 -n 2 -t 1 -r 1 -o jsonl --llama-cpp-order");
  const Result r32 = run_cli("bench --config " + quote(cfg.string()) +
                             " --dtype q4_1 -p 40 -n 2 -t 1 -r 1 -o jsonl --llama-cpp-order --kv-dtype f32");
  fs::remove_all(cfg.parent_path());
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r32.code, 0) << r32.err;
  const auto rows = json_rows(r);
  check_rows(rows, {"pp40", "tg2"}, {1}, {1}, 1);
  for (const json& row : rows) EXPECT_EQ(row["kv_dtype"], "f16");
  for (const json& row : json_rows(r32)) EXPECT_EQ(row["kv_dtype"], "f32");
}

// --profile: each op's share of a step.  Every decode step of the 2-layer
// llama fixture runs 7 products per layer and the head, and 2 norms per
// layer and the final one; the shares (ops, host work between them, the
// step outside the forward pass) add up to the whole step.
TEST(CliBench, ProfileSharesOfAStep) {
  const Result r = run_cli("bench -m " + quote(fixture("llama-mha")) + " -p 0 -n 8 -t 1 -r 2 -o jsonl --profile");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = json_rows(r);
  ASSERT_EQ(rows.size(), 1u);
  const json& prof = rows[0].at("profile");
  std::map<std::string, json> by_op;
  double shares = 0;
  for (const json& l : prof) {
    by_op[l.at("op").get<std::string>()] = l;
    EXPECT_GE(l.at("share").get<double>(), 0.0) << l;
    EXPECT_GE(l.at("ms_per_step").get<double>(), 0.0) << l;
    shares += l.at("share").get<double>();
  }
  EXPECT_NEAR(shares, 1.0, 1e-6);
  ASSERT_TRUE(by_op.count("matmul f32")) << prof;
  EXPECT_EQ(by_op["matmul f32"].at("calls_per_step").get<double>(), 2 * 7 + 1);
  EXPECT_EQ(by_op["rmsnorm"].at("calls_per_step").get<double>(), 2 * 2 + 1);
  EXPECT_EQ(by_op["attention"].at("calls_per_step").get<double>(), 2);
  EXPECT_TRUE(by_op.count("(forward, outside ops)"));
  EXPECT_TRUE(by_op.count("(step, outside forward)"));
  // Without the flag there is no profile; the table format prints it after the table.
  const Result plain = run_cli("bench -m " + quote(fixture("llama-mha")) + " -p 0 -n 2 -t 1 -r 1 -o jsonl");
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_FALSE(json_rows(plain).at(0).contains("profile"));
  const Result md = run_cli("bench -m " + quote(fixture("llama-mha")) + " -p 0 -n 2 -t 1 -r 1 --profile");
  ASSERT_EQ(md.code, 0) << md.err;
  const size_t at = md.out.find("\nprofile: ");
  ASSERT_NE(at, std::string::npos) << md.out;
  EXPECT_NE(md.out.find("| matmul f32 | 15.0 |", at), std::string::npos) << md.out;
  const Result csv = run_cli("bench -m " + quote(fixture("llama-mha")) + " -p 0 -n 2 -t 1 -r 1 -o csv --profile");
  EXPECT_EQ(csv.code, 2);
  EXPECT_NE(csv.err.find("--profile"), std::string::npos) << csv.err;
}

TEST(CliBench, QuantizedRandomWeights) {
  const fs::path cfg = tiny_config();
  const Result r = run_cli("bench --config " + quote(cfg.string()) +
                           " --dtype q8_0 -p 8 -n 2 -np 2 -t 1 -r 1 -o jsonl");
  fs::remove_all(cfg.parent_path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = json_rows(r);
  check_rows(rows, {"pp8", "tg2"}, {2}, {1}, 1);
  for (const json& row : rows) EXPECT_EQ(row["dtype"], "q8_0");
}

TEST(CliBench, CsvHasAHeaderAndOneLinePerRow) {
  const fs::path cfg = tiny_config();
  const Result r =
      run_cli("bench --config " + quote(cfg.string()) + " -p 8 -n 0 -np 1,2 -t 1 -r 1 --csv");
  fs::remove_all(cfg.parent_path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto ls = lines(r.out);
  ASSERT_EQ(ls.size(), 3u) << r.out;
  EXPECT_EQ(ls[0],
            "model,model_type,weights,dtype,kv_dtype,size_bytes,params,backend,threads,batch,"
            "ubatch,gemm_min_rows,test,n_prompt,n_gen,reps,avg_ts,stddev_ts,samples_ts,samples_s,"
            "overhead,steps");
  auto count = [](const std::string& s) { return std::count(s.begin(), s.end(), ','); };
  for (size_t i = 1; i < ls.size(); ++i) {
    EXPECT_EQ(count(ls[i]), count(ls[0])) << ls[i];
    EXPECT_NE(ls[i].find(",pp8,"), std::string::npos) << ls[i];
  }
}

TEST(CliBench, TableByDefault) {
  const fs::path cfg = tiny_config();
  const Result r = run_cli("bench --config " + quote(cfg.string()) + " -p 8 -n 2 -np 1 -t 1 -r 1");
  fs::remove_all(cfg.parent_path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto ls = lines(r.out);
  ASSERT_EQ(ls.size(), 4u) << r.out;  // header, separator, pp8, tg2
  for (const char* col :
       {"model", "size", "params", "backend", "threads", "batch", "test", "t/s", "overhead"})
    EXPECT_NE(ls[0].find(col), std::string::npos) << col;
  EXPECT_NE(ls[2].find("pp8"), std::string::npos) << ls[2];
  EXPECT_NE(ls[3].find("tg2"), std::string::npos) << ls[3];
  EXPECT_NE(ls[3].find("±"), std::string::npos) << ls[3];
  EXPECT_EQ(r.err.find("| model"), std::string::npos);  // nothing of the table on stderr
}

void expect_usage_error(const Result& r, const std::vector<std::string>& needles) {
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  for (const std::string& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << r.err;
}

TEST(CliBench, UnknownPresetListsTheKnownOnes) {
  expect_usage_error(run_cli("bench --preset llama-70b -p 8 -n 4"),
                     {"unknown preset", "llama-70b", "llama-1b", "bloom-560m"});
}

TEST(CliBench, BadListIsRejectedBeforeAnyWork) {
  expect_usage_error(run_cli("bench --preset llama-7b -p 5,x"), {"-p", "5,x"});
  expect_usage_error(run_cli("bench --preset llama-7b -np 0"), {"-np", "out of range"});
  expect_usage_error(run_cli("bench --preset llama-7b -n 4,"), {"-n"});
}

TEST(CliBench, LongerThanTheLearnedPositionsIsRejected) {
  // opt-125m has 2048 learned positions.
  expect_usage_error(run_cli("bench --preset opt-125m -p 4096 -n 0"),
                     {"pp4096", "4096 positions", "2048"});
}

TEST(CliBench, NeedsExactlyOneModelSource) {
  expect_usage_error(run_cli("bench -p 8"), {"--preset"});
  expect_usage_error(run_cli("bench --preset llama-1b --config x.json -p 8"), {"exactly one"});
}

TEST(CliBench, BadDtypes) {
  expect_usage_error(run_cli("bench --preset llama-135m --dtype q9_9"), {"--dtype", "q9_9"});
  expect_usage_error(run_cli("bench --preset llama-135m --kv-dtype q8_0"), {"--kv-dtype"});
}

}  // namespace
