#include "runnel/buffer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runnel/error.hpp"

namespace runnel {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
}

HostBuffer::HostBuffer(size_t bytes) : size_(bytes) {
  // Large buffers (weights, KV caches) are aligned to 2 MB and offered to
  // transparent huge pages, which saves TLB misses when they are streamed.
  const size_t align = bytes >= 4 * kHugePage ? kHugePage : kHostAlignment;
  const size_t rounded = (bytes + align - 1) / align * align;
  if (rounded < bytes) throw std::bad_alloc();
  ptr_ = std::aligned_alloc(align, rounded == 0 ? align : rounded);
  if (!ptr_) throw std::bad_alloc();
  if (align == kHugePage) ::madvise(ptr_, rounded, MADV_HUGEPAGE);
}

HostBuffer::~HostBuffer() { std::free(ptr_); }

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    ptr_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (ptr_ == MAP_FAILED) {
      const int err = errno;
      ptr_ = nullptr;
      ::close(fd);
      throw Error(path + ": cannot map: " + std::strerror(err));
    }
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (ptr_) ::munmap(ptr_, size_);
}

const uint8_t* MappedFile::range(uint64_t offset, uint64_t length, const std::string& what) const {
  if (offset > size_ || length > size_ - offset)
    throw Error(path_ + ": " + what + ": bytes [" + std::to_string(offset) + ", " +
                std::to_string(offset) + " + " + std::to_string(length) +
                ") lie outside the file (" + std::to_string(size_) + " bytes)");
  return static_cast<const uint8_t*>(ptr_) + offset;
}

}  // namespace runnel
