// Guest memory the client announced with DMA_MAP. Ranges with an fd are mmap'ed into the
// server (MAP_SHARED); ranges without one are reached through DMA_READ/DMA_WRITE messages to
// the client (slow; QEMU sends an fd when guest RAM is fd-backed, e.g.
// memory-backend-memfd,share=on). A mapped file the client could shrink later (not sealed
// with F_SEAL_SHRINK) is copied through the kernel so a shrink fails the access with EFAULT
// instead of killing the server with SIGBUS; such ranges get no zero-copy Translate.
#pragma once

#include <cstdint>
#include <map>

#include "hw/vfio-user/device.h"
#include "hw/vfio-user/message.h"
#include "util/mutex.h"
#include "util/status.h"

namespace qzns::vfu {

// Sends DMA_READ / DMA_WRITE to the client and waits for the reply. len <= max_xfer().
class DmaMessageIo {
public:
    virtual ~DmaMessageIo() = default;
    [[nodiscard]] virtual Status DmaReadMsg(uint64_t addr, void* buf, uint32_t len) = 0;
    [[nodiscard]] virtual Status DmaWriteMsg(uint64_t addr, const void* buf, uint32_t len) = 0;
    virtual uint32_t max_xfer() const = 0;
};

class DmaMapTable final : public DmaSpace {
public:
    // msg_io may be null: fd-less ranges then fail with EFAULT on access.
    DmaMapTable(uint32_t max_maps, DmaMessageIo* msg_io) : max_maps_(max_maps), msg_io_(msg_io) {}
    ~DmaMapTable() override { UnmapAll(); }
    DmaMapTable(const DmaMapTable&) = delete;
    DmaMapTable& operator=(const DmaMapTable&) = delete;

    // EINVAL for size 0, wrap-around or bad flags; EEXIST when overlapping an existing range;
    // ENOSPC beyond max_maps; mmap's errno when the fd cannot be mapped; EINVAL when the fd is
    // a file shorter than offset + size (accessing it would raise SIGBUS).
    [[nodiscard]] Status Map(uint64_t addr, uint64_t size, uint64_t offset, uint32_t flags,
                             UniqueFd fd);
    // The range must match a previous Map exactly (ENOENT otherwise).
    [[nodiscard]] Status Unmap(uint64_t addr, uint64_t size);
    void UnmapAll();
    size_t count() const;

    [[nodiscard]] Status Read(uint64_t iova, void* buf, size_t len) override;
    [[nodiscard]] Status Write(uint64_t iova, const void* buf, size_t len) override;
    uint8_t* Translate(uint64_t iova, size_t len, bool write) override;

private:
    struct Mapping {
        uint64_t size;
        uint32_t flags;      // kDmaMapFlag*
        uint8_t* va;         // nullptr: reached through messages
        void* mmap_base;     // what to munmap
        size_t mmap_len;
        // The client can shrink the file under va: accessed only through GuardedCopy, never
        // handed out by Translate.
        bool guarded;
    };
    [[nodiscard]] Status Access(uint64_t iova, uint8_t* buf, size_t len, bool write);
    static void Release(Mapping& m);

    const uint32_t max_maps_;
    DmaMessageIo* const msg_io_;
    mutable util::SharedMutex mu_;  // writers: the server thread's (un)maps; readers: DMA
    std::map<uint64_t, Mapping> maps_ GUARDED_BY(mu_);  // by IOVA; ranges never overlap
};

}  // namespace qzns::vfu
