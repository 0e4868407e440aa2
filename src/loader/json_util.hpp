#pragma once
// Helpers shared by the JSON-reading loaders.
#include <cstddef>
#include <string>
#include <string_view>

namespace runnel {

// Throws runnel::Error naming `source` when `text` nests arrays/objects deeper
// than `max_depth` (keeps recursive JSON code away from deep inputs).
void check_json_depth(std::string_view text, int max_depth, const std::string& source);

// Reads a whole (small) file; throws if it is larger than `max_bytes`.
std::string read_text_file(const std::string& path, size_t max_bytes);

}  // namespace runnel
