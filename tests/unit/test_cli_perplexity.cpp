// End to end: `runnel perplexity` against transformers' numbers for the tiny
// fixture models, the strided-window token count, and --kl-ref.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_cli_util.hpp"

namespace {

using namespace runnel::clitest;
using nlohmann::json;

json perplexity_fixture(const std::string& variant) {
  return json::parse(slurp(fixture(variant) / "perplexity.json"));
}

std::string id_list(const json& ids) {
  std::string s;
  for (const auto& id : ids) {
    if (!s.empty()) s.push_back(',');
    s += std::to_string(id.get<int>());
  }
  return s;
}

json run_json(const std::string& args) {
  const Result r = run_cli(args + " --json -t 1");
  EXPECT_EQ(r.code, 0) << args << "\n" << r.err;
  if (r.code != 0) return json::object();
  return json::parse(r.out);
}

// Rounds to 4 significant digits.
double sig4(double x) {
  if (x == 0) return 0;
  const double scale = std::pow(10.0, 3 - std::floor(std::log10(std::fabs(x))));
  return std::round(x * scale) / scale;
}

// HF's perplexity guide, counted: windows start at 0, stride, ...; each scores
// [max(prev_end, begin + 1), end); stop once a window reaches the end.
int64_t expected_scored(int64_t n, int64_t ctx, int64_t stride) {
  int64_t scored = 0, prev_end = 0;
  for (int64_t begin = 0; begin < n; begin += stride) {
    const int64_t end = std::min(begin + ctx, n);
    scored += end - std::max(prev_end, begin + 1);
    prev_end = end;
    if (end == n) break;
  }
  return scored;
}

TEST(CliPerplexity, MatchesTransformersOnEveryFixture) {
  for (const std::string& v : fixture_variants()) {
    SCOPED_TRACE(v);
    const json ref = perplexity_fixture(v);
    const size_t n = ref["ids"].size();
    ASSERT_EQ(n, 40u);
    const json got = run_json("perplexity -m " + quote(fixture(v).string()) + " --ids " +
                              id_list(ref["ids"]) + " --ctx " + std::to_string(n));
    ASSERT_TRUE(got.contains("perplexity"));
    EXPECT_EQ(got["windows"].get<int>(), 1);
    EXPECT_EQ(got["scored_tokens"].get<size_t>(), n - 1);
    const double want = ref["perplexity"].get<double>();
    EXPECT_EQ(sig4(got["perplexity"].get<double>()), sig4(want))
        << got["perplexity"].get<double>() << " vs " << want;
    EXPECT_NEAR(got["mean_nll"].get<double>(), ref["mean_nll"].get<double>(), 1e-4);
  }
}

TEST(CliPerplexity, IdsFileEqualsIdsFlag) {
  const json ref = perplexity_fixture("bloom-4heads");
  TempDir tmp;
  const fs::path f = tmp.write("ids.json", ref["ids"].dump());  // a JSON array parses too
  const std::string m = "perplexity -m " + quote(fixture("bloom-4heads").string()) + " --ctx 40";
  const json a = run_json(m + " --ids-file " + quote(f.string()));
  const json b = run_json(m + " --ids " + id_list(ref["ids"]));
  ASSERT_TRUE(a.contains("perplexity") && b.contains("perplexity"));
  EXPECT_EQ(a["perplexity"].get<double>(), b["perplexity"].get<double>());
}

TEST(CliPerplexity, StridedWindowsScoreTheExpectedTokens) {
  const json ref = perplexity_fixture("llama-mha");
  const std::string m =
      "perplexity -m " + quote(fixture("llama-mha").string()) + " --ids " + id_list(ref["ids"]);
  struct Case {
    int64_t ctx, stride, windows, scored;
  };
  // 40 tokens.  Overlapping windows score every token but the first; disjoint
  // windows (stride == ctx) also skip the first token of each window.
  const Case cases[] = {{16, 8, 4, 39},  {16, 16, 3, 37}, {16, 5, 6, 39},
                        {10, 10, 4, 36}, {40, 40, 1, 39}, {7, 3, 12, 39}};
  double full_nll = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE("ctx " + std::to_string(c.ctx) + " stride " + std::to_string(c.stride));
    ASSERT_EQ(expected_scored(40, c.ctx, c.stride), c.scored);
    const json got =
        run_json(m + " --ctx " + std::to_string(c.ctx) + " --stride " + std::to_string(c.stride));
    ASSERT_TRUE(got.contains("scored_tokens"));
    EXPECT_EQ(got["scored_tokens"].get<int64_t>(), c.scored);
    EXPECT_EQ(got["windows"].get<int64_t>(), c.windows);
    EXPECT_TRUE(std::isfinite(got["perplexity"].get<double>()));
    if (c.ctx == 40) full_nll = got["mean_nll"].get<double>();
  }
  EXPECT_NEAR(full_nll, ref["mean_nll"].get<double>(), 1e-4);
  // The default stride is the window (disjoint windows).
  const json d = run_json(m + " --ctx 16");
  ASSERT_TRUE(d.contains("scored_tokens"));
  EXPECT_EQ(d["scored_tokens"].get<int64_t>(), 37);
  EXPECT_EQ(d["stride"].get<int64_t>(), 16);
}

TEST(CliPerplexity, KlAgainstItselfIsZero) {
  const json ref = perplexity_fixture("opt-prenorm");
  const std::string model = quote(fixture("opt-prenorm").string());
  const json got = run_json("perplexity -m " + model + " --kl-ref " + model + " --ids " +
                            id_list(ref["ids"]) + " --ctx 16 --stride 8");
  ASSERT_TRUE(got.contains("mean_kl"));
  EXPECT_NEAR(got["mean_kl"].get<double>(), 0.0, 1e-9);
  EXPECT_EQ(got["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(got["ref_perplexity"].get<double>(), got["perplexity"].get<double>());
}

TEST(CliPerplexity, KlAgainstAnotherModelIsPositive) {
  // Scored on the reference's own fixture ids, so its perplexity is known.
  const json ref = perplexity_fixture("llama-gqa-tied-llama3");
  const json got = run_json("perplexity -m " + quote(fixture("llama-mha").string()) + " --kl-ref " +
                            quote(fixture("llama-gqa-tied-llama3").string()) + " --ids " +
                            id_list(ref["ids"]) + " --ctx 40");
  ASSERT_TRUE(got.contains("mean_kl"));
  EXPECT_GT(got["mean_kl"].get<double>(), 0.01);
  EXPECT_LT(got["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(sig4(got["ref_perplexity"].get<double>()), sig4(ref["perplexity"].get<double>()));
  EXPECT_NE(sig4(got["perplexity"].get<double>()), sig4(ref["perplexity"].get<double>()));
}

TEST(CliPerplexity, TextPrintsTheNumbers) {
  const json ref = perplexity_fixture("llama-mha");
  const Result r = run_cli("perplexity -m " + quote(fixture("llama-mha").string()) + " --ids " +
                           id_list(ref["ids"]) + " --ctx 40");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("perplexity: 6054.8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("scored: 39"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
  const Result q =
      run_cli("--log-level warn perplexity -m " + quote(fixture("llama-mha").string()) + " --ids " +
              id_list(ref["ids"]) + " --ctx 40");
  EXPECT_EQ(q.code, 0) << q.err;
  EXPECT_EQ(q.err, "");
  EXPECT_EQ(q.out, r.out);
}

TEST(CliPerplexity, BadInputExitsWithTwo) {
  const std::string m = "perplexity -m " + quote(fixture("opt-prenorm").string());
  TempDir tmp;
  const std::pair<std::string, std::string> cases[] = {
      {m, "--ids"},
      {m + " --ids 1", "at least 2 tokens"},
      {m + " --ids 1,x", "--ids"},
      {m + " --ids 1,2,300", "token id 300"},
      {m + " --ids 1,2,3 --ctx 100", "position table"},
      {m + " --ids 1,2,3,4,5,6 --ctx 4 --stride 5", "--stride"},
      {m + " --ids 1,2,3 --ids-file " + quote((tmp.path / "none").string()), "exactly one"},
      {m + " --ids-file " + quote((tmp.path / "none").string()), "no such file"},
      {m + " -f " + quote(tmp.write("t.txt", "hello").string()), "no tokenizer"},
      {m + " --ids 1,2,3 --kl-ref " + quote(fixture("bloom-6heads").string()) + "x",
       "no such file"},
      {m + " --ids 1,2,3 --ctx -3", "--ctx"},
  };
  for (const auto& [args, needle] : cases) {
    const Result r = run_cli(args);
    SCOPED_TRACE(args);
    EXPECT_CLI_ERROR(r, needle);
  }
}

}  // namespace
