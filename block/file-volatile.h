// The drive's power switch and, optionally, its volatile write cache: a File between an image
// format and the image file, which the daemon's `power-cut` command turns off.
//
// With a cache (capacity > 0) writes, hole punches and truncates land in memory; reads see them
// at once. Sync() writes every cached operation back to the image file, in the order it arrived,
// and syncs the file. When more than `capacity` bytes are cached the oldest operations are written
// back without a sync, as a drive's cache evicts. The image file alone is the durable medium, so
// a power cut leaves exactly what a drive with a volatile write cache would keep: everything
// before the last Sync, and of the rest what the cut's mode keeps.
//
// Without a cache (capacity 0) every call goes straight to the image file (asynchronous I/O
// included); only the power switch is added.
//
// Why it lives below the format: the qcow2 engine orders its own metadata with Sync (refcounts,
// L2, zone words; docs/durability.rst), so a cut that keeps any subset of the operations since
// the last Sync leaves an image its crash recovery repairs. The format never needs to know.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <memory>
#include <string>
#include <vector>

#include "block/file.h"
#include "util/mutex.h"

namespace qzns {

enum class PowerCutMode {
    kLoseUnflushed,  // every cached operation is lost
    kRandom,         // each cached operation independently kept or lost; writes torn per sector
};
const char* PowerCutModeName(PowerCutMode m);
// "lose-unflushed" or "random".
Result<PowerCutMode> ParsePowerCutMode(const std::string& s);

// Writes what a power cut leaves of one cached write: each 512-byte sector (aligned in the file,
// not in the write) independently kept or lost by one draw of `rng`, in order. Returns the bytes
// kept. Shared with the crash-testing FaultFile (block/file-fault.h) so both tear alike.
Result<uint64_t> WriteTornSectors(File& to, const uint8_t* data, uint64_t len, uint64_t off, std::mt19937_64& rng);

struct PowerCutReport {
    uint64_t ops_kept = 0, ops_lost = 0;      // cached operations (writes, punches, truncates)
    uint64_t bytes_kept = 0, bytes_lost = 0;  // of cached writes, per 512-byte sector
    // Sequential zones written past their persisted write pointer, and what a random cut kept of
    // them (BlockBackend::PowerCut, block/zone-prefix.h): zones_partial kept some but not all.
    uint64_t zones_unflushed = 0, zones_partial = 0;
    uint64_t zone_bytes_kept = 0, zone_bytes_lost = 0;
};

struct VolatileCacheStats {
    uint64_t capacity = 0;       // bytes; 0 = no cache
    uint64_t cached_bytes = 0;   // written data held right now
    uint64_t cached_ops = 0;
    uint64_t evicted_ops = 0;    // written back because the cache was full
    uint64_t syncs = 0;
};

class VolatileCacheFile final : public File {
public:
    VolatileCacheFile(std::unique_ptr<File> inner, uint64_t capacity);
    ~VolatileCacheFile() override;

    Status Pread(void* buf, uint64_t len, uint64_t off) override;
    Status Pwrite(const void* buf, uint64_t len, uint64_t off) override;
    Status Sync() override;
    Result<uint64_t> Size() override;
    Status Truncate(uint64_t size) override;
    Status PunchHole(uint64_t off, uint64_t len) override;
    Result<uint64_t> AllocatedBytes() override;
    Result<bool> MayHoldData(uint64_t off, uint64_t len) override;
    const std::string& name() const override { return inner_->name(); }
    void Submit(FileIo* io) override;
    AioMode aio_mode() const override;

    // Cuts the power: the cached operations `mode` keeps (chosen by a generator seeded with
    // `seed`, so a cut replays) are written to the image file in order and synced, the rest are
    // dropped. Afterwards every call fails with EIO, so the engine that was running cannot
    // touch the image while it is torn down; reopen the image file to power on. Waits for a
    // write-back in progress, which a real drive would also have finished or not started.
    Result<PowerCutReport> PowerCut(PowerCutMode mode, uint64_t seed);
    bool powered_off() const { return off_.load(std::memory_order_acquire); }
    uint64_t capacity() const { return capacity_; }
    VolatileCacheStats stats() const;

private:
    struct Op;
    // A run of bytes whose newest content is a cached operation's (zeros for a punch or truncate).
    struct Piece {
        uint64_t end;
        std::shared_ptr<const Op> op;
    };

    Status Off(const char* what) const;
    void Cache(std::shared_ptr<const Op> op, uint64_t lo, uint64_t hi) REQUIRES(mu_);
    // Writes back the oldest `n` operations (the whole cache for a Sync): takes the write-back
    // turn (the caller checked it is free), releases mu_ for the I/O, then drops them from the
    // cache. Stops at the first error; what was not written stays cached.
    Status WriteBack(size_t n) REQUIRES(mu_);
    static Status Apply(File& f, const Op& op);

    const std::unique_ptr<File> inner_;
    const uint64_t capacity_;
    std::atomic<bool> off_{false};

    mutable util::Mutex mu_;
    util::CondVar turn_cv_;
    std::deque<std::shared_ptr<const Op>> log_ GUARDED_BY(mu_);  // oldest first
    std::map<uint64_t, Piece> pieces_ GUARDED_BY(mu_);            // start -> piece, disjoint
    bool writing_back_ GUARDED_BY(mu_) = false;  // one write-back (or cut) at a time
    uint64_t size_ GUARDED_BY(mu_) = 0;          // logical size: image file + cache
    VolatileCacheStats stats_ GUARDED_BY(mu_);
};

}  // namespace qzns
