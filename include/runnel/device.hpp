#pragma once
#include <string_view>

namespace runnel {

enum class Device : unsigned char { CPU = 0, CUDA = 1 };

constexpr std::string_view device_name(Device d) {
  switch (d) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
  }
  return "?";
}

}  // namespace runnel
