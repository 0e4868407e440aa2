#pragma once
// Buffers own memory; tensors are views into them.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runnel/device.hpp"

namespace runnel {

class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual const void* data() const = 0;
  virtual size_t size() const = 0;
  virtual Device device() const = 0;
  virtual bool read_only() const { return false; }
};

inline constexpr size_t kHostAlignment = 64;

// 64-byte-aligned host memory.  Contents are uninitialised.
class HostBuffer final : public Buffer {
 public:
  explicit HostBuffer(size_t bytes);
  ~HostBuffer() override;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  void* data() override { return ptr_; }
  const void* data() const override { return ptr_; }
  size_t size() const override { return size_; }
  Device device() const override { return Device::CPU; }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// How MappedFile brings a file into memory.
struct MapMode {
  bool mmap = true;    // false: read into anonymous memory
  bool mlock = false;  // lock the pages (mlock); failure throws
};

// A whole file mapped read-only.  Weights are views into it, never copies.
class MappedFile final : public Buffer {
 public:
  explicit MappedFile(const std::string& path);
  MappedFile(const std::string& path, MapMode mode);
  // The mode files opened with the one-argument constructor get, on this
  // thread (Model::load sets it from LoadOptions for the load's duration).
  static MapMode& thread_default();
  ~MappedFile() override;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  void* data() override { return ptr_; }
  const void* data() const override { return ptr_; }
  size_t size() const override { return size_; }
  Device device() const override { return Device::CPU; }
  bool read_only() const override { return true; }
  const std::string& path() const { return path_; }

  // Pointer to [offset, offset + length), after checking the range lies in the
  // file.  `what` names the field or tensor for the error message.
  const uint8_t* range(uint64_t offset, uint64_t length, const std::string& what) const;

 private:
  std::string path_;
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace runnel
