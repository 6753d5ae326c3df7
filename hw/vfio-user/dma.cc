#include "hw/vfio-user/dma.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>
#include <cstring>
#include <string>

namespace qzns::vfu {

namespace {
std::string Hex(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// A client can shrink the file behind a mapping whenever it likes (ftruncate), and touching
// the mapping past the new end raises SIGBUS, which would kill the daemon. Only a file that
// cannot shrink keeps the mapping good: a memfd sealed with F_SEAL_SHRINK (what QEMU's
// memory-backend-memfd does by default), or an fd that is not a regular file (no size to cut).
bool CannotShrink(int fd, const struct stat& st) {
    if (!S_ISREG(st.st_mode)) return true;
    int seals = ::fcntl(fd, F_GET_SEALS);
    return seals >= 0 && (seals & F_SEAL_SHRINK);
}

// Copies between buf and a mapping that may have lost its backing. process_vm_readv/writev on
// our own address space make the kernel do the copy, and a fault there fails the call with
// EFAULT instead of raising SIGBUS. (Catching SIGBUS instead would need a process-wide handler
// that the sanitizers and the embedding program also want.)
Status GuardedCopy(uint8_t* mapped, uint8_t* buf, size_t len, bool to_mapping, uint64_t iova) {
    iovec local{buf, len}, remote{mapped, len};
    ssize_t n = to_mapping ? ::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0)
                           : ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0);
    if (n == static_cast<ssize_t>(len)) return Status::Ok();
    int e = n < 0 ? errno : EFAULT;
    if (e == EFAULT)
        return Status::Error(EFAULT, "DMA to " + Hex(iova) + ": the client's memory there is gone "
                                     "(its file was shrunk after DMA_MAP)");
    return Status::Error(e, std::string("DMA to ") + Hex(iova) + ": process_vm_" + (to_mapping ? "writev" : "readv") +
                                ": " + std::strerror(e) + " (a memfd sealed with F_SEAL_SHRINK, e.g. QEMU's "
                                "memory-backend-memfd, is accessed directly instead)");
}
}  // namespace

void DmaMapTable::Release(Mapping& m) {
    if (m.mmap_base != nullptr) ::munmap(m.mmap_base, m.mmap_len);
    m.mmap_base = nullptr;
    m.va = nullptr;
}

Status DmaMapTable::Map(uint64_t addr, uint64_t size, uint64_t offset, uint32_t flags,
                        UniqueFd fd) {
    std::string what = "DMA_MAP " + Hex(addr) + "+" + Hex(size);
    if (size == 0 || addr + size < addr) return Status::Error(EINVAL, what + ": bad range");
    if (flags & ~(kDmaMapFlagRead | kDmaMapFlagWrite))
        return Status::Error(EINVAL, what + ": unknown flags " + Hex(flags));
    if (!(flags & kDmaMapFlagRead)) return Status::Error(EINVAL, what + ": not readable");
    {
        util::ReaderLock lk(mu_);
        if (maps_.size() >= max_maps_) return Status::Error(ENOSPC, what + ": too many maps");
        auto it = maps_.upper_bound(addr);  // first range starting after addr
        if (it != maps_.end() && it->first < addr + size)
            return Status::Error(EEXIST, what + ": overlaps " + Hex(it->first));
        if (it != maps_.begin()) {
            auto prev = std::prev(it);
            if (prev->first + prev->second.size > addr)
                return Status::Error(EEXIST, what + ": overlaps " + Hex(prev->first));
        }
    }
    Mapping m{size, flags, nullptr, nullptr, 0, false};
    if (fd.valid()) {
        long page = ::sysconf(_SC_PAGESIZE);
        uint64_t delta = offset % static_cast<uint64_t>(page);
        if (offset + size < offset || size > (1ull << 47))
            return Status::Error(EINVAL, what + ": bad file offset");
        struct stat st;
        if (::fstat(fd.get(), &st) != 0) return Status::Error(errno, what + ": fstat failed");
        if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < offset + size)
            return Status::Error(EINVAL, what + ": file is shorter than offset + size");
        int prot = PROT_READ | ((flags & kDmaMapFlagWrite) ? PROT_WRITE : 0);
        size_t len = static_cast<size_t>(size + delta);
        void* p = ::mmap(nullptr, len, prot, MAP_SHARED, fd.get(),
                         static_cast<off_t>(offset - delta));
        if (p == MAP_FAILED) {
            int e = errno;
            return Status::Error(e, what + ": mmap: " + std::strerror(e));
        }
        m.mmap_base = p;
        m.mmap_len = len;
        m.va = static_cast<uint8_t*>(p) + delta;
        m.guarded = !CannotShrink(fd.get(), st);
    }
    util::WriterLock lk(mu_);
    // Only the server thread maps, so the overlap check above still holds.
    maps_.emplace(addr, m);
    return Status::Ok();
}

Status DmaMapTable::Unmap(uint64_t addr, uint64_t size) {
    util::WriterLock lk(mu_);
    auto it = maps_.find(addr);
    if (it == maps_.end() || it->second.size != size)
        return Status::Error(ENOENT, "DMA_UNMAP " + Hex(addr) + "+" + Hex(size) +
                                         ": no such mapping");
    Release(it->second);
    maps_.erase(it);
    return Status::Ok();
}

void DmaMapTable::UnmapAll() {
    util::WriterLock lk(mu_);
    for (auto& [a, m] : maps_) Release(m);
    maps_.clear();
}

size_t DmaMapTable::count() const {
    util::ReaderLock lk(mu_);
    return maps_.size();
}

uint8_t* DmaMapTable::Translate(uint64_t iova, size_t len, bool write) {
    if (len == 0 || iova + len < iova) return nullptr;
    util::ReaderLock lk(mu_);
    auto it = maps_.upper_bound(iova);
    if (it == maps_.begin()) return nullptr;
    --it;
    const Mapping& m = it->second;
    uint64_t off = iova - it->first;
    // A guarded mapping's user would touch it directly, unprotected: make it bounce instead.
    if (off >= m.size || m.size - off < len || m.va == nullptr || m.guarded) return nullptr;
    if (write && !(m.flags & kDmaMapFlagWrite)) return nullptr;
    return m.va + off;
}

Status DmaMapTable::Access(uint64_t iova, uint8_t* buf, size_t len, bool write) {
    if (iova + len < iova) return Status::Error(EFAULT, "DMA address wraps");
    while (len > 0) {
        uint64_t addr = 0;
        size_t chunk = 0;
        {
            util::ReaderLock lk(mu_);
            auto it = maps_.upper_bound(iova);
            if (it == maps_.begin())
                return Status::Error(EFAULT, "DMA to unmapped address " + Hex(iova));
            --it;
            const Mapping& m = it->second;
            uint64_t off = iova - it->first;
            if (off >= m.size)
                return Status::Error(EFAULT, "DMA to unmapped address " + Hex(iova));
            if (write && !(m.flags & kDmaMapFlagWrite))
                return Status::Error(EFAULT, "DMA write to read-only address " + Hex(iova));
            chunk = static_cast<size_t>(std::min<uint64_t>(len, m.size - off));
            if (m.va != nullptr) {
                if (m.guarded) QZNS_TRY(GuardedCopy(m.va + off, buf, chunk, write, iova));
                else if (write) std::memcpy(m.va + off, buf, chunk);
                else std::memcpy(buf, m.va + off, chunk);
                iova += chunk;
                buf += chunk;
                len -= chunk;
                continue;
            }
            addr = iova;
        }
        // No fd: go through the client, without holding the lock (the server thread may need
        // it to process an unmap while we wait for the reply).
        if (msg_io_ == nullptr)
            return Status::Error(EFAULT, "DMA to " + Hex(iova) + ": range has no fd");
        chunk = std::min<size_t>(chunk, msg_io_->max_xfer());
        uint32_t n = static_cast<uint32_t>(chunk);
        QZNS_TRY(write ? msg_io_->DmaWriteMsg(addr, buf, n) : msg_io_->DmaReadMsg(addr, buf, n));
        iova += chunk;
        buf += chunk;
        len -= chunk;
    }
    return Status::Ok();
}

Status DmaMapTable::Read(uint64_t iova, void* buf, size_t len) {
    return Access(iova, static_cast<uint8_t*>(buf), len, false);
}

Status DmaMapTable::Write(uint64_t iova, const void* buf, size_t len) {
    return Access(iova, static_cast<uint8_t*>(const_cast<void*>(buf)), len, true);
}

}  // namespace qzns::vfu
