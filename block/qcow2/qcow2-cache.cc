#include "block/qcow2/qcow2-cache.h"

#include <vector>

namespace qzns::qcow2 {

TablePtr TableCache::Find(uint64_t offset) {
    auto it = tables_.find(offset);
    if (it == tables_.end()) return nullptr;
    it->second->last_use = ++clock_;
    return it->second;
}

Status TableCache::Get(uint64_t offset, TablePtr* out) {
    if ((*out = Find(offset))) return Status::Ok();
    std::vector<uint8_t> data(table_size_);
    QZNS_TRY(file_->Pread(data.data(), table_size_, offset));
    EvictIfNeeded();
    auto t = std::make_shared<CachedTable>();
    t->offset = offset;
    t->data = std::move(data);
    t->last_use = ++clock_;
    tables_[offset] = t;
    *out = std::move(t);
    return Status::Ok();
}

TablePtr TableCache::EndLoad(uint64_t offset, std::vector<uint8_t>* data) {
    auto it = loading_.find(offset);
    bool stale = it == loading_.end() || it->second;
    if (it != loading_.end()) loading_.erase(it);
    if (!data || stale) return nullptr;
    if (TablePtr t = Find(offset)) return t;  // not reachable while loads exclude each other
    EvictIfNeeded();
    auto t = std::make_shared<CachedTable>();
    t->offset = offset;
    t->data = std::move(*data);
    t->last_use = ++clock_;
    tables_[offset] = t;
    return t;
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
    t->version++;
    if (!t->dirty) {
        t->dirty = true;
        dirty_++;
    }
}

std::vector<TableCache::DirtyCopy> TableCache::CopyDirty() const {
    std::vector<DirtyCopy> out;
    out.reserve(dirty_);
    for (const auto& [off, t] : tables_)
        if (t->dirty) out.push_back(DirtyCopy{off, t->version, t->data});
    return out;
}

void TableCache::MarkClean(const DirtyCopy& c) {
    auto it = tables_.find(c.offset);
    if (it == tables_.end()) return;
    CachedTable& t = *it->second;
    if (!t.dirty || t.version != c.version) return;
    t.dirty = false;
    dirty_--;
}

Status TableCache::WriteDirty() {
    for (auto& [off, t] : tables_) {
        if (!t->dirty) continue;
        QZNS_TRY(file_->Pwrite(t->data.data(), table_size_, off));
    }
    return Status::Ok();
}

void TableCache::Drop(uint64_t offset) {
    auto l = loading_.find(offset);
    if (l != loading_.end()) l->second = true;
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
