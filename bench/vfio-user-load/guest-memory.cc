#include "bench/vfio-user-load/guest-memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qzns::load {

GuestMemory::~GuestMemory() {
    if (map_) ::munmap(map_, size_);
    if (fd_ >= 0) ::close(fd_);
}

bool GuestMemory::Create(uint64_t base, size_t size, std::string* err) {
    size = (size + 4095) & ~size_t{4095};
    fd_ = ::memfd_create("qzns-vfio-user-load", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd_ < 0 || ::ftruncate(fd_, static_cast<off_t>(size)) != 0 ||
        ::fcntl(fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
        *err = std::string("guest memory: ") + std::strerror(errno);
        return false;
    }
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
        *err = std::string("mmap guest memory: ") + std::strerror(errno);
        return false;
    }
    map_ = static_cast<uint8_t*>(p);
    base_ = base;
    size_ = size;
    return true;
}

GuestBuffer GuestMemory::Alloc(size_t bytes) {
    bytes = (bytes + 4095) & ~size_t{4095};
    if (bytes > size_ - used_) return {};
    GuestBuffer b{base_ + used_, map_ + used_, bytes};
    used_ += bytes;
    return b;
}

}  // namespace qzns::load
