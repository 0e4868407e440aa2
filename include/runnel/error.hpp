#pragma once
// runnel::Error: the one exception type.  Messages name the file, field, flag
// or tensor involved, so that a user can act on them.
#include <stdexcept>
#include <string>

namespace runnel {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws runnel::Error with `message` when `cond` is false.
inline void check(bool cond, const std::string& message) {
  if (!cond) throw Error(message);
}

}  // namespace runnel
