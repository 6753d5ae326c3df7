#include "block/qcow2/qcow2-cache.h"

#include <vector>

namespace qzns::qcow2 {

Status TableCache::Get(uint64_t offset, TablePtr* out) {
    auto it = tables_.find(offset);
    if (it != tables_.end()) {
        it->second->last_use = ++clock_;
        *out = it->second;
        return Status::Ok();
    }
    EvictIfNeeded();
    auto t = std::make_shared<CachedTable>();
    t->offset = offset;
    t->data.resize(table_size_);
    QZNS_TRY(file_->Pread(t->data.data(), table_size_, offset));
    t->last_use = ++clock_;
    tables_[offset] = t;
    *out = std::move(t);
    return Status::Ok();
}

TablePtr TableCache::NewZeroed(uint64_t offset) {
    Drop(offset);
    EvictIfNeeded();
    auto t = std::make_shared<CachedTable>();
    t->offset = offset;
    t->data.assign(table_size_, 0);
    t->last_use = ++clock_;
    tables_[offset] = t;
    MarkDirty(t);
    return t;
}

void TableCache::MarkDirty(const TablePtr& t) {
    if (!t->dirty) {
        t->dirty = true;
        dirty_++;
    }
}

Status TableCache::WriteDirty() {
    for (auto& [off, t] : tables_) {
        if (!t->dirty) continue;
        QZNS_TRY(file_->Pwrite(t->data.data(), table_size_, off));
        t->dirty = false;
        dirty_--;
    }
    return Status::Ok();
}

void TableCache::Drop(uint64_t offset) {
    auto it = tables_.find(offset);
    if (it == tables_.end()) return;
    if (it->second->dirty) dirty_--;
    it->second->dirty = false;
    tables_.erase(it);
}

void TableCache::EvictIfNeeded() {
    while (tables_.size() >= max_tables_) {
        // Evict the least recently used clean table nobody else holds.
        auto victim = tables_.end();
        for (auto it = tables_.begin(); it != tables_.end(); ++it) {
            if (it->second->dirty || it->second.use_count() > 1) continue;
            if (victim == tables_.end() || it->second->last_use < victim->second->last_use) victim = it;
        }
        if (victim == tables_.end()) return;  // everything is dirty or in use: grow for now
        tables_.erase(victim);
    }
}

}  // namespace qzns::qcow2
