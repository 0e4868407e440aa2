#include "loader/json_util.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "runnel/error.hpp"

namespace runnel {

void check_json_depth(std::string_view text, int max_depth, const std::string& source) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (ch == '\\')
        escaped = true;
      else if (ch == '"')
        in_string = false;
      continue;
    }
    if (ch == '"')
      in_string = true;
    else if (ch == '[' || ch == '{') {
      if (++depth > max_depth)
        throw Error(source + ": JSON nested deeper than " + std::to_string(max_depth) + " levels");
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) {
    if (out.size() + n > max_bytes)
      throw Error(path + ": larger than " + std::to_string(max_bytes) + " bytes");
    out.append(buf, n);
  }
  if (std::ferror(f.get())) throw Error(path + ": read error");
  return out;
}

}  // namespace runnel
