// The qcow2 v3 format driver: an image whose guest clusters are mapped through L1/L2 tables and
// whose host clusters are reference counted. This class is split by concern like QEMU's driver:
//   qcow2-header.cc    header and extensions (parse, validate, rewrite)
//   qcow2-cache.cc     cache of L2 tables and refcount blocks with write-back ordering
//   qcow2-refcount.cc  refcounts, cluster allocation and freeing
//   qcow2-cluster.cc   guest -> host mapping (L1/L2), allocation of data clusters
//   qcow2-compress.cc  compressed clusters (read only)
//   qcow2-snapshot.cc  snapshot table (read only)
//   qcow2-zoned.cc     the zoned extension: geometry and zone tables
//   qcow2-check.cc     consistency check and repair
//   qcow2-create.cc    image creation
//   qcow2.cc           open, read, write, flush, close
//
// Crash consistency (every write path keeps it): a refcount increment is durable before any L2
// entry that points to the cluster; guest data is durable before the L2 entry that maps it; an
// L2 entry is cleared durably before the cluster's refcount drops (so a freed cluster can never
// be mapped by a stale table). A crash can therefore only leak clusters, which `check -r leaks`
// repairs, never map wrong data.
//
// Locking: mu_ guards the metadata and is never held across a File call on the data path
// (Read, Write, WriteZeroes, Discard, Flush, GetStatus, MapZone and the zone-word calls). Work
// under mu_ runs as steps (RunStep): a step that needs a metadata table the cache lacks fails
// with a miss before changing anything, the table is read with mu_ dropped, and the step runs
// again. Metadata write-back (FlushMetadata) copies the dirty tables under mu_ and writes them
// without it, one flush at a time (flush_mu_). Open, Create, Check and Close run alone and may
// hold mu_ across I/O, and so does one rare error path: marking the image corrupt
// (MarkCorrupt). Growing the refcount table does no I/O in the step that needs it: the new table
// is placed in memory and FlushMetadata writes it, then the header that points to it.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "block/block-driver.h"
#include "block/qcow2/format.h"
#include "block/qcow2/qcow2-cache.h"
#include "block/zoned/zone-state-machine.h"
#include "block/zoned/zoned-store.h"
#include "util/mutex.h"

namespace qzns::qcow2 {

// The zoned geometry is the zoned layer's (block/zoned/zoned-store.h); qcow2 stores it.
using qzns::ZonedGeometry;
using qzns::ZonedProfile;

// The state machine's view of one zone of a geometry (sectors).
ZoneGeometry ZoneGeometryOf(const ZonedGeometry& g, uint32_t zone);

// Checks and completes a geometry for a disk of disk_size bytes (fills nr_zones). The messages
// name the create option to change.
Status ValidateZonedGeometry(uint64_t disk_size, ZonedGeometry* g);

struct CreateOptions {
    uint64_t size = 0;
    uint32_t cluster_size = 65536;
    uint32_t refcount_bits = 16;
    std::string backing_file;
    std::string backing_format;
    // "off", "metadata" (all L2 tables allocated) or "full" (every data cluster allocated and
    // zeroed).
    std::string preallocation = "off";
    std::optional<ZonedGeometry> zoned;
};
Status Create(std::unique_ptr<File> file, const CreateOptions& opts);

struct SnapshotInfo {
    std::string id;
    std::string name;
    uint64_t l1_table_offset = 0;
    uint32_t l1_size = 0;
    uint64_t vm_state_size = 0;
    uint32_t date_sec = 0;
    uint64_t vm_clock_nsec = 0;
};

// What `qzns-img check` reports; exit codes follow qemu-img check.
struct CheckResult {
    uint64_t corruptions = 0;
    uint64_t leaks = 0;
    uint64_t corruptions_fixed = 0;
    uint64_t leaks_fixed = 0;
    uint64_t check_errors = 0;
    uint64_t allocated_clusters = 0;
    uint64_t total_clusters = 0;
    uint64_t fragmented_clusters = 0;
    uint64_t compressed_clusters = 0;
    uint64_t image_end_offset = 0;
    uint64_t zone_errors = 0;          // zone metadata problems (counted in corruptions too)
    uint64_t stale_zone_clusters = 0;  // clusters past a zone's wp (harmless, reclaimable)
    std::vector<std::string> messages;  // one line per finding, qemu-img style
};
enum class RepairMode { kNone, kLeaks, kAll };

struct ImageInfo {
    uint32_t version = 3;
    uint32_t cluster_size = 0;
    uint32_t refcount_bits = 0;
    uint64_t incompatible_features = 0;
    uint64_t compatible_features = 0;
    uint64_t autoclear_features = 0;
    bool corrupt = false;
    bool dirty = false;
    bool extended_l2 = false;
    std::string backing_file;
    std::string backing_format;
    std::vector<SnapshotInfo> snapshots;
    std::optional<ZonedGeometry> zoned;
    bool zoned_in_use = false;  // last writer did not close cleanly
    bool seed_layout = false;   // zoned geometry read from the seed series' extension
    // Set when the zoned tables failed validation (e.g. after a foreign writer); the image then
    // opens read-only or for repair only.
    std::string zoned_problem;
    bool foreign_writer = false;  // our autoclear bit was found cleared
};

class Image final : public BlockDriver, public ZonedStore {
public:
    // `backing` is the already-opened backing image, or null.
    struct OpenFlags {
        bool write = false;
        // For check/repair: open even when the zoned tables fail validation.
        bool check_mode = false;
    };
    static Result<std::unique_ptr<Image>> Open(std::unique_ptr<File> file, OpenFlags flags,
                                               std::unique_ptr<BlockDriver> backing);
    ~Image() override;

    const char* format_name() const override { return "qcow2"; }
    uint64_t size() const override { return size_; }
    bool read_only() const override { return !writable_.load(std::memory_order_acquire); }
    Status Read(uint64_t off, void* buf, uint64_t len) override EXCLUDES(mu_);
    Status Write(uint64_t off, const void* buf, uint64_t len) override EXCLUDES(mu_);
    Status WriteZeroes(uint64_t off, uint64_t len, bool may_unmap) override EXCLUDES(mu_);
    Status Discard(uint64_t off, uint64_t len) override EXCLUDES(mu_);
    Status Flush() override EXCLUDES(mu_);
    Result<BlockStatus> GetStatus(uint64_t off, uint64_t len) override EXCLUDES(mu_);
    Status Close() override EXCLUDES(mu_);

    const ImageInfo& info() const { return info_; }
    // Unallocated clusters read from here from now on (read-only use of the backing image).
    void AttachBacking(std::unique_ptr<BlockDriver> backing) { backing_ = std::move(backing); }
    BlockDriver* backing() { return backing_.get(); }
    File& file() { return *file_; }
    uint32_t cluster_size() const { return cluster_size_; }

    // ---- zoned metadata (qcow2-zoned.cc; the ZonedStore seam, block/zoned/zoned-store.h) ----
    const std::optional<ZonedGeometry>& zoned() const { return info_.zoned; }
    ZonedStore* zoned_store() override { return info_.zoned ? this : nullptr; }
    AioMode aio_mode() const override { return file_->aio_mode(); }
    bool TrySubmitMapped(FileIo* io, uint64_t off) override EXCLUDES(mu_);
    const ZonedGeometry& zoned_geometry() const override { return *info_.zoned; }
    const std::string& zoned_problem() const override { return info_.zoned_problem; }
    // Zone words, host-endian. Written in place (the tables are preallocated); durable after
    // the next Flush().
    Status ReadZoneWords(uint32_t first, uint32_t count, uint64_t* out) override EXCLUDES(mu_);
    Status WriteZoneWords(uint32_t first, uint32_t count, const uint64_t* in) override EXCLUDES(mu_);
    Status ReadZded(uint32_t zone, void* buf) override EXCLUDES(mu_);
    Status WriteZded(uint32_t zone, const void* buf) override EXCLUDES(mu_);
    // False when the last writer died without closing the image.
    bool zoned_clean_at_open() const override { return !info_.zoned_in_use; }

    // ---- zone-linear extents (qcow2-zone-extent.cc) ----
    Result<ZoneExtent> MapZone(uint32_t zone, bool allocate) override EXCLUDES(mu_);
    Status ReadExtent(uint64_t host, void* buf, uint64_t len) override;
    Status WriteExtent(uint64_t host, const void* buf, uint64_t len) override;
    Status ZeroExtent(uint64_t host, uint64_t len) override;
    void SubmitExtentIo(FileIo* io) override;
    Result<bool> ExtentMayHoldData(uint64_t host, uint64_t len) override { return file_->MayHoldData(host, len); }
    uint32_t allocation_unit() const override { return cluster_size_; }

    // ---- check (qcow2-check.cc) ----
    Result<CheckResult> Check(RepairMode mode) EXCLUDES(mu_);

    // Raw view for tests: the L2 entry mapping a guest offset (0 if unmapped).
    Result<uint64_t> L2EntryFor(uint64_t guest_off) EXCLUDES(mu_);

private:
    explicit Image(std::unique_ptr<File> file);
    friend Status Create(std::unique_ptr<File> file, const CreateOptions& opts);
    friend class Checker;

    // qcow2-header.cc
    Status ParseHeader() REQUIRES(mu_);
    Status ParseExtensions(const std::vector<uint8_t>& cluster0, uint32_t header_length);
    Status WriteHeader() REQUIRES(mu_);  // rewrites cluster 0, preserving unknown extensions
    // The header as it would be written now, pointing to the refcount table at rt_off; without
    // the optional feature name table when that does not fit in the header cluster.
    Result<std::vector<uint8_t>> HeaderBytes(uint64_t rt_off, uint32_t rt_clusters) REQUIRES(mu_);
    Result<std::vector<uint8_t>> HeaderBytesWith(bool feature_table, uint64_t rt_off, uint32_t rt_clusters)
        REQUIRES(mu_);
    Status SetIncompatBit(uint64_t bit, bool on) REQUIRES(mu_);

    // qcow2-refcount.cc
    Result<uint64_t> GetRefcount(uint64_t cluster_index) REQUIRES(mu_);
    // The refcount of cluster_index read from its already loaded refcount block: for walks
    // over many clusters, which look the block up once instead of once per cluster.
    uint64_t RefcountIn(const CachedTable& block, uint64_t cluster_index) const;
    Status SetRefcount(uint64_t cluster_index, uint64_t value) REQUIRES(mu_);
    Result<uint64_t> AllocClusters(uint64_t n) REQUIRES(mu_);  // contiguous; returns host offset
    Status LoadRefcountBlock(uint64_t block_index, bool create, TablePtr* out) REQUIRES(mu_);
    Status GrowRefcountTable(uint64_t min_blocks) REQUIRES(mu_);
    void QueueFree(uint64_t host_off, uint64_t len) REQUIRES(mu_);
    // Drops one reference per range from every cluster a range touches; clusters that reach 0
    // are punched first, with mu_ dropped (they still hold their reference, so nothing can
    // reuse them meanwhile). Not for use inside a step.
    Status FreeClusters(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) REQUIRES(mu_);
    uint64_t RefcountMax() const;

    // qcow2-cluster.cc
    // A table a step found missing from its cache.
    struct TableMiss {
        enum Kind {
            kL2Table,
            kRefcountBlock,
        };
        Kind kind = kL2Table;
        uint64_t offset = 0;
    };
    struct Mapping {
        uint64_t l2_entry = 0;     // 0 when the L2 table does not exist
        uint64_t run_bytes = 0;    // bytes from the query offset with the same kind of mapping
        TablePtr table;            // the L2 table (null if none); holding it keeps it cached
    };
    Result<Mapping> LookupMapping(uint64_t guest_off, uint64_t max_bytes) REQUIRES(mu_);
    Status LoadL2(uint64_t l1_index, bool create, TablePtr* out) REQUIRES(mu_);
    Status SetL2Entry(uint64_t guest_off, uint64_t entry) REQUIRES(mu_);
    Status FreeL2EntryTarget(uint64_t entry) REQUIRES(mu_);

    // qcow2-compress.cc
    Status ReadCompressed(uint64_t l2_entry, uint8_t* cluster_buf);

    // qcow2-snapshot.cc
    Status ReadSnapshots();

    // qcow2.cc internals
    Status ReadInternal(uint64_t off, uint8_t* buf, uint64_t len) EXCLUDES(mu_);
    Status WriteInternal(uint64_t off, const uint8_t* buf, uint64_t len) EXCLUDES(mu_);
    Status ReadUnallocated(uint64_t off, uint8_t* buf, uint64_t len);
    // Writes back dirty metadata in the order of the rules above and syncs, holding mu_ only
    // to copy the dirty tables and to mark them clean.
    Status FlushMetadata() EXCLUDES(mu_, flush_mu_);
    // The metadata cache behind mu_ (see "Locking" above).
    enum class StepKind {
        kLookup,    // reads metadata only
        kAllocate,  // may allocate clusters: waits while FlushMetadata extends the file
    };
    Status RunStep(StepKind kind, const std::function<Status()>& step) REQUIRES(mu_);
    // The table at a host offset if cached; otherwise (outside locked_io_) records the miss and
    // fails, for RunStep to load it.
    Status FindTable(bool l2, uint64_t off, TablePtr* out) REQUIRES(mu_);
    // Reads a missed table with mu_ dropped and inserts it; `pins` keeps it cached.
    Status LoadMissedTable(TableMiss miss, std::vector<TablePtr>* pins) REQUIRES(mu_);
    // Lets cache misses read with mu_ held for a scope (see locked_io_); construct it with
    // mu_ held.
    class ScopedLockedIo {
    public:
        explicit ScopedLockedIo(int& depth) : depth_(++depth) {}
        ~ScopedLockedIo() { --depth_; }
        ScopedLockedIo(const ScopedLockedIo&) = delete;
        ScopedLockedIo& operator=(const ScopedLockedIo&) = delete;

    private:
        int& depth_;
    };
    Status ZeroOrDiscard(uint64_t off, uint64_t len, bool discard, bool may_unmap) EXCLUDES(mu_);
    // Waits until no claim covers the cluster and no file extension is in progress.
    void WaitClusterIdle(uint64_t guest_cluster) REQUIRES(mu_);
    // With or without mu_: the fast path is an atomic load, the refusal reads fields that are
    // final once writable_ is false (see writable_).
    Status CheckWritable() const {
        if (!closed_.load(std::memory_order_acquire) && writable_.load(std::memory_order_acquire))
            return Status::Ok();
        return WriteRefusal();
    }
    Status WriteRefusal() const;
    Status MarkCorrupt(const std::string& why) REQUIRES(mu_);

    // qcow2-zoned.cc
    Status ParseZonedExtension(const uint8_t* data, uint32_t len);
    Status ParseSeedZonedExtension(const uint8_t* data, uint32_t len);
    void SerializeZonedExtension(std::vector<uint8_t>* out) const;
    Status ValidateZonedTables() EXCLUDES(mu_);
    Status ZoneAreaIo(uint64_t guest_off, void* buf, uint64_t len, bool write) EXCLUDES(mu_);

    std::unique_ptr<File> file_;
    std::unique_ptr<BlockDriver> backing_;
    // Read without mu_ (read_only(), the fast path of CheckWritable()); written under mu_. The
    // reasons for refusing writes (info_.corrupt, write_failure_) are written once, before
    // writable_ turns false with a release store, so a reader that sees false can read them.
    std::atomic<bool> writable_{false};
    std::atomic<bool> closed_{false};
    // Fixed once Open returns, except corrupt and the feature bits, which change under mu_ (with
    // the header rewrite) and are read without it only by the single-threaded tools.
    ImageInfo info_;

    // The geometry below is fixed once Open returns and read without mu_.
    uint64_t size_ = 0;
    uint32_t cluster_bits_ = 0;
    uint32_t cluster_size_ = 0;
    uint32_t l2_bits_ = 0;  // log2 of entries per L2 table
    uint32_t refcount_order_ = 4;
    uint32_t refblock_bits_ = 0;  // log2 of entries per refcount block
    uint64_t l1_table_offset_ = 0;
    uint32_t l1_size_ = 0;
    uint32_t header_length_ = 0;
    uint64_t snapshots_offset_ = 0;
    uint32_t nb_snapshots_ = 0;
    uint64_t backing_file_offset_ = 0;
    uint32_t backing_file_size_ = 0;
    // Header extensions qzns does not interpret, kept verbatim on rewrite.
    std::vector<std::pair<uint32_t, std::vector<uint8_t>>> unknown_exts_;
    std::vector<uint8_t> feature_table_;
    // The table offsets are fixed once Open returns; flags (the in-use bit) change only in
    // Open and Close, which run alone.
    ZonedExtension zoned_ext_{};
    bool has_zoned_ext_ = false;

    // Guards the metadata below: the mapping and refcount tables, their caches, allocation
    // state and the in-flight claims.
    // Serialises metadata write-backs (FlushMetadata). Taken before mu_, never while holding it.
    util::Mutex flush_mu_;
    util::Mutex mu_;
    // An inflight_alloc_ claim was released, or truncating_ turned false.
    util::CondVar cluster_idle_cv_;
    util::CondVar table_loaded_cv_;  // a table load without mu_ ended (TableCache::loading)
    std::optional<TableMiss> miss_ GUARDED_BY(mu_);  // the table a step missed (FindTable)
    // Above 0, cache misses read the table with mu_ held instead of failing the step: for the
    // phases that run alone (open, create, check, close) and MarkCorrupt.
    int locked_io_ GUARDED_BY(mu_) = 0;
    // FlushMetadata is extending the file to file_end_ with mu_ dropped: no allocation may
    // hand out (and a writer then extend the file with) clusters past that end meanwhile.
    bool truncating_ GUARDED_BY(mu_) = false;
    std::vector<uint64_t> l1_ GUARDED_BY(mu_);  // host-endian copy
    std::set<uint32_t> dirty_l1_ GUARDED_BY(mu_);
    uint64_t refcount_table_offset_ GUARDED_BY(mu_) = 0;
    uint32_t refcount_table_clusters_ GUARDED_BY(mu_) = 0;
    // The refcount table the header on disk points to. It differs from the one above after the
    // table grew (GrowRefcountTable) until a FlushMetadata has written the new table and then
    // the header; until then every header write keeps pointing to the old, still allocated one.
    uint64_t header_reftable_offset_ GUARDED_BY(mu_) = 0;
    uint32_t header_reftable_clusters_ GUARDED_BY(mu_) = 0;
    uint64_t header_writes_ GUARDED_BY(mu_) = 0;  // bumped by every WriteHeader
    std::vector<uint64_t> reftable_ GUARDED_BY(mu_);  // host-endian copy
    bool reftable_dirty_ GUARDED_BY(mu_) = false;
    uint64_t reftable_version_ GUARDED_BY(mu_) = 0;  // bumped by every change of reftable_
    // Guest cluster indexes with an allocating write (or a MapZone) in flight.
    std::set<uint64_t> inflight_alloc_ GUARDED_BY(mu_);
    TableCache l2_cache_ GUARDED_BY(mu_);
    TableCache refblock_cache_ GUARDED_BY(mu_);
    std::vector<std::pair<uint64_t, uint64_t>> pending_frees_ GUARDED_BY(mu_);  // host (offset, length)
    uint64_t free_hint_ GUARDED_BY(mu_) = 0;  // lowest cluster index that may be free
    // End of the last cluster handed out (may exceed the file size).
    uint64_t file_end_ GUARDED_BY(mu_) = 0;
    // Host clusters at or after the file's end at open time read as zeros until written (they
    // were never written, or were punched when freed), so allocating writes there skip the
    // copy-on-write fill.
    uint64_t initial_eof_ GUARDED_BY(mu_) = 0;
    bool metadata_dirty_ GUARDED_BY(mu_) = false;
    // Why writes stopped after a metadata update failed half-way (empty while writable).
    // Written once, under mu_, before writable_ turns false; WriteRefusal reads it without mu_.
    std::string write_failure_ GUARDED_BY(mu_);
};

}  // namespace qzns::qcow2
