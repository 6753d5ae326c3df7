// A cache of cluster-sized metadata tables (L2 tables, refcount blocks), kept in their on-disk
// big-endian form. Dirty tables stay until written back by the owner's flush, which is where the
// write ordering rules of qcow2.h are applied; clean tables are evicted least-recently-used.
// Not thread-safe: the owning image serialises access with its metadata lock. The cache does no
// I/O on its own except Get() and WriteDirty(), which the owner calls only where it may hold its
// lock across I/O; on the data path it reads a missing table with the lock dropped between
// BeginLoad() and EndLoad(), and writes back copies (CopyDirty(), MarkClean()).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "block/file.h"
#include "util/endian.h"

namespace qzns::qcow2 {

struct CachedTable {
    uint64_t offset = 0;
    std::vector<uint8_t> data;
    bool dirty = false;
    uint64_t last_use = 0;
    // Bumped by every MarkDirty: a write-back of an older copy must leave the table dirty.
    uint64_t version = 0;

    uint64_t Get64(size_t i) const { return load_be64(&data[i * 8]); }
    void Set64(size_t i, uint64_t v) { store_be64(&data[i * 8], v); }
};
// Holding a TablePtr pins the table: eviction skips tables someone else holds.
using TablePtr = std::shared_ptr<CachedTable>;

class TableCache {
public:
    void Init(File* file, uint32_t table_size, size_t max_tables) {
        file_ = file;
        table_size_ = table_size;
        max_tables_ = max_tables < 4 ? 4 : max_tables;
    }
    uint32_t table_size() const { return table_size_; }
    // The cached table at a host offset (counts as a use), or null.
    TablePtr Find(uint64_t offset);
    // Loads the table at a host offset, reading it on a miss: only for callers that may hold
    // the owner's lock across I/O.
    Status Get(uint64_t offset, TablePtr* out);

    // Reading a missing table without the owner's lock: BeginLoad, read, EndLoad. While a load
    // is in progress nobody else may start one for the offset (they wait for it instead), so a
    // table can never be cached twice or replaced by an older copy from disk.
    bool loading(uint64_t offset) const { return loading_.count(offset) > 0; }
    void BeginLoad(uint64_t offset) { loading_[offset] = false; }
    // Inserts what was read (null `data`: the read failed) and returns the table, or null when
    // the offset was dropped or made a new table meanwhile (the caller looks it up again).
    TablePtr EndLoad(uint64_t offset, std::vector<uint8_t>* data);

    // A new table at a host offset, all zeros, already marked dirty.
    TablePtr NewZeroed(uint64_t offset);
    void MarkDirty(const TablePtr& t);

    // Write-back without the owner's lock: copy the dirty tables, write the copies, then mark
    // clean each table that was not changed since its copy was taken.
    struct DirtyCopy {
        uint64_t offset;
        uint64_t version;
        std::vector<uint8_t> data;
    };
    std::vector<DirtyCopy> CopyDirty() const;
    void MarkClean(const DirtyCopy& c);
    // Writes every dirty table (no sync) and leaves them dirty: a write-back running
    // concurrently without the lock may still put an older copy on disk after this one, so only
    // its MarkClean may declare the disk current.
    Status WriteDirty();

    size_t dirty_count() const { return dirty_; }
    // Forgets a table whose cluster was freed; a dirty copy is discarded.
    void Drop(uint64_t offset);
    void Clear() {
        tables_.clear();
        dirty_ = 0;
    }

private:
    void EvictIfNeeded();

    File* file_ = nullptr;
    uint32_t table_size_ = 0;
    size_t max_tables_ = 64;
    size_t dirty_ = 0;
    uint64_t clock_ = 0;
    std::map<uint64_t, TablePtr> tables_;
    std::map<uint64_t, bool> loading_;  // offset -> dropped or replaced while loading
};

}  // namespace qzns::qcow2
