// The block backend (QEMU's blk_* layer): what device models and tools use. It opens an image by
// options and adds zone semantics on top of the format driver: the ZNS/ZBC state machine,
// resource limits, append with atomic LBA assignment, reads past the write pointer as zeros, and
// persistence of zone state with the durability contract of docs/durability.rst.
//
// All offsets and lengths are bytes; zone indexes count from 0. Every method is thread-safe:
// transports call them from many threads with many requests in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "block/aio/aio.h"
#include "block/block-driver.h"
#include "block/file-volatile.h"
#include "block/zoned/zone-state-machine.h"
#include "block/zoned/zone-word.h"
#include "util/mutex.h"
#include "util/status.h"

namespace qzns {

// Outcome of a data or zone operation: a zone-rule violation (mapped to an NVMe status by the
// device model), or an I/O / internal error, or success with an optional value.
struct [[nodiscard]] BlkResult {
    ZoneError zone_error = ZoneError::kNone;
    Status status;
    uint64_t value = 0;  // Append: byte offset where the data was written

    static BlkResult Ok(uint64_t v = 0) { return BlkResult{ZoneError::kNone, Status::Ok(), v}; }
    static BlkResult Zone(ZoneError e, std::string msg) {
        return BlkResult{e, Status::Error(EIO, std::move(msg)), 0};
    }
    static BlkResult Io(Status st) { return BlkResult{ZoneError::kNone, std::move(st), 0}; }
    bool ok() const { return zone_error == ZoneError::kNone && status.ok(); }
    const std::string& message() const { return status.message(); }
};

struct ZoneInfo {
    uint64_t start = 0;  // bytes
    uint64_t len = 0;    // zone size, bytes
    uint64_t cap = 0;    // zone capacity, bytes
    uint64_t wp = 0;     // write pointer, bytes (start for conventional zones)
    ZoneState state = ZoneState::kEmpty;
    ZoneType type = ZoneType::kSeqWriteRequired;
    uint8_t attrs = 0;   // kZoneAttr* bits
};

enum class ZoneMgmtOp { kOpen, kClose, kFinish, kReset, kOffline };

// A sequential zone written past its persisted write pointer (bytes).
struct UnflushedZone {
    uint32_t zone = 0;
    uint64_t start = 0;
    uint64_t durable_wp = 0;  // where a cut that keeps none of its unflushed writes leaves it
    uint64_t wp = 0;          // in memory
};

class BlockBackend;

enum class BlkOp : uint8_t { kRead, kWrite, kWriteZeroes, kAppend, kFlush, kDiscard };

// A write or append the zoned layer decided and has not finished: the persisted write pointer
// stays below the lowest of them. Linked into an intrusive list, so recording one allocates nothing.
struct ZoneWriteLink {
    uint32_t zone = 0;
    uint64_t slba = 0;
    ZoneWriteLink* prev = nullptr;
    ZoneWriteLink* next = nullptr;
};

// An asynchronous request. The caller fills the first block, calls BlockBackend::Submit and owns
// the request again when `done` runs — on an I/O engine or pool thread, or inside Submit when the
// answer is known at once. `done` must not block on storage. Nothing is allocated per request.
struct BlkRequest {
    BlkOp op = BlkOp::kRead;
    bool fua = false;
    uint64_t off = 0;  // kAppend: the zone's first byte
    uint64_t len = 0;
    void* buf = nullptr;  // kWrite/kAppend: only read
    void (*done)(BlkRequest* r) = nullptr;
    void* opaque = nullptr;
    BlkResult result = BlkResult::Ok();  // kAppend: value = byte offset written

    // The backend's while the request is in flight.
    FileIo io;
    PoolTask task;
    ZoneWriteLink write;  // a zoned write or append: its zone and first sector
    BlkRequest* next = nullptr;
    BlockBackend* backend = nullptr;

    static BlkRequest* FromTask(PoolTask* t) {
        return reinterpret_cast<BlkRequest*>(reinterpret_cast<char*>(t) - offsetof(BlkRequest, task));
    }
    static BlkRequest* FromIo(FileIo* f) {
        return reinterpret_cast<BlkRequest*>(reinterpret_cast<char*>(f) - offsetof(BlkRequest, io));
    }
    // Fills io for one transfer of this request; `done` finds the request with FromIo.
    void PrepareIo(FileIo::Op o, void* data, uint64_t n, uint64_t at, void (*fin)(FileIo*, Status)) {
        io = FileIo{};
        io.op = o;
        io.buf = data;
        io.len = n;
        io.off = at;
        io.done = fin;
    }
};

struct BlockBackendOptions {
    std::string filename;
    std::string format;     // "" probes
    bool read_only = false;
    bool lock = true;
    bool direct = false;    // O_DIRECT
    // Benchmarking only: keep zone state in memory and never write it (measures the cost of
    // persistence); the image is left with its zone words from open time.
    bool persist_zones = true;
    // File I/O engine of the image file (block/aio/aio.h).
    AioMode aio = AioMode::kAuto;
    // Bytes of volatile write cache (block/file-volatile.h, docs/power-cut.rst); 0: none, every
    // completed write reaches the image file at once.
    uint64_t volatile_cache = 0;
};

class BlockBackend {
public:
    static Result<std::unique_ptr<BlockBackend>> Open(const BlockBackendOptions& opts);
    // Wraps an already-opened driver (tests use in-memory or fault-injecting files).
    static Result<std::unique_ptr<BlockBackend>> OpenDriver(std::unique_ptr<BlockDriver> drv,
                                                            bool persist_zones = true);
    virtual ~BlockBackend() = default;

    // ---- geometry ----
    virtual uint64_t size() const = 0;
    virtual bool read_only() const = 0;
    virtual bool is_zoned() const = 0;
    virtual ZonedProfile profile() const = 0;
    virtual uint32_t nr_zones() const = 0;
    virtual uint64_t zone_size() const = 0;       // bytes
    virtual uint64_t zone_capacity() const = 0;   // bytes
    virtual uint32_t nr_conv_zones() const = 0;
    virtual uint32_t max_open_zones() const = 0;    // 0 = no limit
    virtual uint32_t max_active_zones() const = 0;  // 0 = no limit
    virtual uint32_t max_append_bytes() const = 0;  // 0 = only the transfer size limits it
    virtual uint32_t zd_extension_size() const = 0; // bytes per zone

    // ---- data ----
    // Reads of a sequential zone past its write pointer return zeros.
    virtual BlkResult Read(uint64_t off, void* buf, uint64_t len) = 0;
    // In a sequential zone a write must start at the write pointer.
    virtual BlkResult Write(uint64_t off, const void* buf, uint64_t len, bool fua) = 0;
    virtual BlkResult WriteZeroes(uint64_t off, uint64_t len, bool fua) = 0;
    // Conventional zones / unzoned disks only.
    virtual BlkResult Discard(uint64_t off, uint64_t len) = 0;
    virtual BlkResult Flush() = 0;
    // Writes at the zone's write pointer; zone_start must be the zone's first byte. Returns the
    // byte offset written in BlkResult::value.
    virtual BlkResult Append(uint64_t zone_start, const void* buf, uint64_t len, bool fua) = 0;

    // ---- zones ----
    virtual BlkResult ZoneMgmt(ZoneMgmtOp op, uint64_t zone_start, bool all) = 0;
    // Sets the descriptor extension (zd_extension_size bytes) of an Empty zone.
    virtual BlkResult SetZoneDescExt(uint64_t zone_start, const void* data) = 0;
    virtual Result<ZoneInfo> GetZone(uint32_t zone) = 0;
    // Up to max zones starting with the zone containing `off`.
    virtual Result<std::vector<ZoneInfo>> ReportZones(uint64_t off, uint32_t max) = 0;
    virtual Status ReadZoneDescExt(uint32_t zone, void* buf) = 0;
    // Controller-initiated changes (fault injection): the zone becomes Read Only or Offline,
    // durably.
    virtual BlkResult InjectZoneFault(uint32_t zone, ZoneState state) = 0;
    // Called (from any thread) when the backend itself changed a zone's state or attributes —
    // not for host-requested changes — so the device can post a Zone Descriptor Changed event.
    virtual void SetZoneChangedCallback(std::function<void(uint32_t zone)> cb) = 0;

    // ---- asynchronous requests ----
    // Requests of one zone are decided (write pointer checked and advanced, append LBA
    // assigned) in the order Submit is called, so a submitter may keep several sequential
    // writes in flight. Flushes are grouped: one flush serves every flush submitted while it ran.
    // The blocking methods above are equivalent to Submit + wait.
    virtual void Submit(BlkRequest* r);
    // How file I/O runs (chosen at open: io_uring, or threads where it is unavailable).
    virtual AioMode aio_mode() const = 0;

    // Persists everything and leaves the image clean. No request may be in flight.
    virtual Status Close() = 0;

    // ---- power ----
    // Cuts the drive's power, as docs/power-cut.rst describes: without a volatile cache every
    // completed write is on the medium (this flushes first, then cuts); with one, `mode` decides
    // what of the unflushed writes the image file keeps. In random mode each sequential zone
    // keeps a seeded prefix of its unflushed writes, durably (block/zone-prefix.h), which ends
    // where it began or ended or at a multiple of `atomic_unit` (a power of two >= 512: the
    // drive's power-fail atomic program unit) from the zone start. No request may be in
    // flight. The backend is dead afterwards: destroy it and Open() the image again, which
    // runs crash recovery. Only for backends Open() made writable.
    Result<PowerCutReport> PowerCut(PowerCutMode mode, uint64_t seed, uint64_t atomic_unit = 512);
    // The volatile cache, or null (read-only backends, OpenDriver).
    const VolatileCacheFile* volatile_cache() const { return power_; }

protected:
    // Sequential zones whose write pointer is past the one their persisted zone word holds: what
    // a cut may keep a prefix of. None for a disk without zones.
    virtual Result<std::vector<UnflushedZone>> UnflushedZones() { return std::vector<UnflushedZone>{}; }

    // The image file's power switch (owned by the driver, below it); null when not Open()ed writable.
    VolatileCacheFile* power_ = nullptr;
    // How Open() opened the image: a random cut opens it again to replay zone prefixes.
    BlockBackendOptions open_opts_;

    // Runs r's blocking equivalent on a shared pool of threads, then completes it.
    static void SubmitBlocking(BlockBackend* be, BlkRequest* r);
    // The shared pool, for other blocking work of a request.
    static TaskPool& blocking_pool();
};

// Waits for one request: Arm (sets r.done and r.opaque) before Submit, then Wait.
class BlkWaiter {
public:
    void Arm(BlkRequest& r);
    BlkResult Wait(BlkRequest& r);

private:
    util::Mutex mu_;
    util::CondVar cv_;
    bool done_ GUARDED_BY(mu_) = false;
};

// Submits r and waits for it: for tests and tools.
BlkResult SubmitAndWait(BlockBackend& be, BlkRequest& r);

}  // namespace qzns
