// The protocol layer: the only door from the block stack to storage. Formats (qcow2, raw) read
// and write through a File; tests swap in an in-memory file or a fault-injecting one (the power-cut
// test), exactly like leveldb's Env.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "block/aio/aio.h"
#include "util/status.h"

namespace qzns {

// The sector: the unit the block layer counts zone geometry and write pointers in (as QEMU's
// block layer and the kernel's blkzone do, whatever a device's logical block size), and the
// unit a power cut tears unsynced writes at.
inline constexpr uint64_t kSector = 512;

class File {
public:
    virtual ~File() = default;
    // Short reads past EOF are filled with zeros: a sparse image reads as zeros beyond its end.
    virtual Status Pread(void* buf, uint64_t len, uint64_t off) = 0;
    virtual Status Pwrite(const void* buf, uint64_t len, uint64_t off) = 0;
    // Makes every completed write durable (fdatasync).
    virtual Status Sync() = 0;
    virtual Result<uint64_t> Size() = 0;
    virtual Status Truncate(uint64_t size) = 0;
    // Deallocates the range so the file shrinks; the range reads as zeros afterwards.
    virtual Status PunchHole(uint64_t off, uint64_t len) = 0;
    // Bytes the file occupies on disk (st_blocks * 512 for a posix file).
    virtual Result<uint64_t> AllocatedBytes() = 0;
    // False only when the range certainly reads as zeros because nothing is stored there (a
    // hole); true when it may hold data. The default cannot tell and says true.
    virtual Result<bool> MayHoldData(uint64_t /*off*/, uint64_t /*len*/) { return true; }
    virtual const std::string& name() const = 0;

    // Asynchronous read, write or sync with Pread/Pwrite/Sync's semantics (block/aio/aio.h).
    // Without an engine it runs in the caller and completes before returning.
    virtual void Submit(FileIo* io);
    // The engine Submit uses.
    virtual AioMode aio_mode() const { return AioMode::kSync; }
};

struct FileOpenFlags {
    bool write = false;
    bool create = false;   // create or truncate
    bool direct = false;   // O_DIRECT: bypass the host page cache
    // Take QEMU-compatible OFD byte-range locks so a running QEMU and qzns never both write one
    // image. Off for test doubles and for `qzns-img info -U`-style forced sharing.
    bool lock = true;
    // How Submit runs (kAuto: io_uring where the kernel allows it, else threads).
    AioMode aio = AioMode::kSync;
};

Result<std::unique_ptr<File>> OpenPosixFile(const std::string& path, FileOpenFlags flags);

// A file held in memory; Sync is a no-op. For unit tests and fuzzers.
std::unique_ptr<File> NewMemFile(std::string name = "mem");

}  // namespace qzns
