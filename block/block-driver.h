// A format driver (qcow2, raw) seen from above: a byte-addressed disk of fixed size. The zoned
// layer and the tools use only this interface and the zoned-metadata hooks of the qcow2 driver.
// Every method is safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "block/file.h"
#include "util/status.h"

namespace qzns {

class ZonedStore;

// Where a run of guest bytes lives, for `qzns-img map` and convert's sparseness.
struct BlockStatus {
    uint64_t bytes = 0;          // length of the run with identical status, starting at the query
    bool allocated = false;      // described by this image (not by its backing file or a hole)
    bool zero = false;           // reads as zeros
    bool data = false;           // has a host data cluster
    bool compressed = false;
    uint64_t host_offset = 0;    // valid when data && !compressed
};

class BlockDriver {
public:
    virtual ~BlockDriver() = default;
    virtual const char* format_name() const = 0;
    virtual uint64_t size() const = 0;
    virtual bool read_only() const = 0;

    virtual Status Read(uint64_t off, void* buf, uint64_t len) = 0;
    virtual Status Write(uint64_t off, const void* buf, uint64_t len) = 0;
    // Reads back as zeros afterwards. With may_unmap the space is returned to the host.
    virtual Status WriteZeroes(uint64_t off, uint64_t len, bool may_unmap) = 0;
    // The range may read as zeros or keep its data; space is returned to the host.
    virtual Status Discard(uint64_t off, uint64_t len) = 0;
    // Makes every completed write durable.
    virtual Status Flush() = 0;
    virtual Result<BlockStatus> GetStatus(uint64_t off, uint64_t len) = 0;
    // Persists everything and marks the image clean. The driver is unusable afterwards.
    virtual Status Close() = 0;
    // The zone metadata the format stores (block/zoned/zoned-store.h), or null.
    virtual ZonedStore* zoned_store() { return nullptr; }
    // How the image file's asynchronous I/O runs.
    virtual AioMode aio_mode() const { return AioMode::kSync; }
    // Starts io (op kRead or kWrite, buf, len; the driver sets off) as one asynchronous file
    // request when [off, off + len) is one run of data already mapped and its mapping is known
    // without I/O; false (nothing started) when the blocking Read/Write must handle it.
    virtual bool TrySubmitMapped(FileIo* /*io*/, uint64_t /*off*/) { return false; }
};

struct OpenOptions {
    bool write = false;
    bool lock = true;          // QEMU-compatible image locking
    bool direct = false;       // O_DIRECT
    bool no_backing = false;   // do not open the backing file
    std::string format;        // "qcow2", "raw" or "" to probe
    bool check_mode = false;   // open a damaged image for `check -r`
    AioMode aio = AioMode::kSync;  // the top image file's engine (backing files: sync)
    // Applied to the top image file before the format opens it (the block backend's power
    // switch and volatile cache, block/file-volatile.h).
    std::function<std::unique_ptr<File>(std::unique_ptr<File>)> wrap_file;
};

// Opens a file by name with format probing (qcow2 magic, else raw) and its backing chain.
Result<std::unique_ptr<BlockDriver>> OpenImage(const std::string& path, const OpenOptions& opts);

}  // namespace qzns
