// Guest RAM as QEMU's memory-backend-memfd makes it (a sealed memfd the server maps through
// DMA_MAP), with a bump allocator for rings, data buffers and PRP lists: nothing is freed
// until the run ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qzns::load {

struct GuestBuffer {
    uint64_t iova = 0;
    uint8_t* ptr = nullptr;
    size_t size = 0;
};

class GuestMemory {
public:
    GuestMemory() = default;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;
    ~GuestMemory();

    // `size` bytes at IOVA `base`, zeroed.
    bool Create(uint64_t base, size_t size, std::string* err);
    // Page-aligned, zeroed; ptr == nullptr when the memory is used up.
    GuestBuffer Alloc(size_t bytes);

    int fd() const { return fd_; }
    uint64_t base() const { return base_; }
    size_t size() const { return size_; }

private:
    int fd_ = -1;
    uint8_t* map_ = nullptr;
    uint64_t base_ = 0;
    size_t size_ = 0, used_ = 0;
};

}  // namespace qzns::load
