// A cache of cluster-sized metadata tables (L2 tables, refcount blocks), kept in their on-disk
// big-endian form. Dirty tables stay until written back by the owner's flush, which is where the
// write ordering rules of qcow2.h are applied; clean tables are evicted least-recently-used.
// Not thread-safe: the owning image serialises access with its metadata lock.
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

    uint64_t Get64(size_t i) const { return load_be64(&data[i * 8]); }
    void Set64(size_t i, uint64_t v) { store_be64(&data[i * 8], v); }
};
using TablePtr = std::shared_ptr<CachedTable>;

class TableCache {
public:
    void Init(File* file, uint32_t table_size, size_t max_tables) {
        file_ = file;
        table_size_ = table_size;
        max_tables_ = max_tables < 4 ? 4 : max_tables;
    }
    // Loads the table at a host offset (from disk on a miss).
    Status Get(uint64_t offset, TablePtr* out);
    // A new table at a host offset, all zeros, already marked dirty.
    TablePtr NewZeroed(uint64_t offset);
    void MarkDirty(const TablePtr& t);
    // Writes every dirty table (no sync) and marks them clean.
    Status WriteDirty();
    size_t dirty_count() const { return dirty_; }
    // Forgets a table whose cluster was freed; a dirty copy is discarded.
    void Drop(uint64_t offset);
    void Clear() { tables_.clear(); dirty_ = 0; }

private:
    void EvictIfNeeded();

    File* file_ = nullptr;
    uint32_t table_size_ = 0;
    size_t max_tables_ = 64;
    size_t dirty_ = 0;
    uint64_t clock_ = 0;
    std::map<uint64_t, TablePtr> tables_;
};

}  // namespace qzns::qcow2
