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

MapMode& MappedFile::thread_default() {
  thread_local MapMode mode;
  return mode;
}

MappedFile::MappedFile(const std::string& path) : MappedFile(path, thread_default()) {}

MappedFile::MappedFile(const std::string& path, MapMode mode) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": is a directory, not a file");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0 && mode.mmap) {
    ptr_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (ptr_ == MAP_FAILED) {
      const int err = errno;
      ptr_ = nullptr;
      ::close(fd);
      throw Error(path + ": cannot map: " + std::strerror(err));
    }
  } else if (size_ > 0) {
    // --no-mmap: anonymous memory filled by read(), then made read-only.
    ptr_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ptr_ == MAP_FAILED) {
      ptr_ = nullptr;
      ::close(fd);
      throw Error(path + ": cannot allocate " + std::to_string(size_ >> 20) +
                  " MiB to read the file into (--no-mmap)");
    }
    size_t done = 0;
    while (done < size_) {
      const ssize_t n = ::read(fd, static_cast<char*>(ptr_) + done, size_ - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : 0;
        ::munmap(ptr_, size_);
        ptr_ = nullptr;
        ::close(fd);
        throw Error(path + ": read failed" + (err ? std::string(": ") + std::strerror(err)
                                                  : std::string(": the file shrank")));
      }
      done += size_t(n);
    }
    ::mprotect(ptr_, size_, PROT_READ);
  }
  ::close(fd);
  if (size_ > 0 && mode.mlock && ::mlock(ptr_, size_) != 0) {
    const int err = errno;
    ::munmap(ptr_, size_);
    ptr_ = nullptr;
    throw Error(path + ": --mlock: cannot lock " + std::to_string(size_ >> 20) +
                " MiB in memory: " + std::strerror(err) +
                " (the limit is 'ulimit -l'; run without --mlock)");
  }
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
