#include "storage-daemon/block-nodes.h"

namespace qzns::daemon {

namespace {
constexpr uint64_t kDefaultVolatileCache = 64ull << 20;
}  // namespace

Status BlockNodes::Add(OptionSet o) {
    std::string driver = o.Take("driver").value_or("");
    if (driver != "qcow2" && driver != "raw")
        return Status::Error(EINVAL, "--blockdev: driver must be qcow2 or raw, not '" + driver + "'");
    auto name = o.Take("node-name");
    if (!name || name->empty()) return Status::Error(EINVAL, "--blockdev: node-name is required");
    std::string filename;
    if (auto f = o.Take("file")) filename = *f;
    OptionSet file = o.TakeGroup("file");
    if (auto f = file.Take("filename")) filename = *f;
    if (auto d = file.Take("driver"); d && *d != "file")
        return Status::Error(EINVAL, "--blockdev: file.driver must be 'file'");
    if (filename.empty()) return Status::Error(EINVAL, "--blockdev: file (the image's file name) is required");
    QZNS_ASSIGN(bool ro, o.TakeBool("read-only", false));
    OptionSet cache = o.TakeGroup("cache");
    QZNS_ASSIGN(bool direct, cache.TakeBool("direct", false));
    QZNS_TRY(cache.TakeBool("no-flush", false).status());
    // qzns's own: a volatile write cache that power-cut empties (docs/power-cut.rst).
    QZNS_ASSIGN(bool volatile_cache, cache.TakeBool("volatile", false));
    bool size_given = cache.Has("size");
    QZNS_ASSIGN(uint64_t cache_size, cache.TakeSize("size", kDefaultVolatileCache));
    if (size_given && !volatile_cache)
        return Status::Error(EINVAL, "--blockdev: cache.size needs cache.volatile=on");
    if (volatile_cache && cache_size < 64 * 1024)
        return Status::Error(EINVAL, "--blockdev: cache.size must be at least 64K");
    if (volatile_cache && ro) return Status::Error(EINVAL, "--blockdev: cache.volatile=on needs a writable node");
    QZNS_TRY(cache.RejectUnknown("--blockdev cache"));
    std::string locking = o.Take("locking").value_or("on");
    if (locking != "on" && locking != "off" && locking != "auto")
        return Status::Error(EINVAL, "--blockdev: locking must be on, off or auto");
    QZNS_ASSIGN(bool persist, o.TakeBool("x-persist-zones", true));
    // QEMU spells it on the file node (file.aio=); qzns also takes it on the format node.
    AioMode aio = AioMode::kAuto;
    for (auto v : {file.Take("aio"), o.Take("aio")}) {
        if (!v) continue;
        auto m = ParseAioMode(*v);
        if (!m.ok()) return m.status().Prefix("--blockdev");
        aio = *m;
    }
    QZNS_TRY(file.RejectUnknown("--blockdev file"));
    QZNS_TRY(o.RejectUnknown("--blockdev"));

    {
        util::MutexLock lk(mu_);
        if (nodes_.count(*name)) return Status::Error(EEXIST, "Duplicate nodes with node-name='" + *name + "'");
    }
    BlockBackendOptions bo;
    bo.filename = filename;
    bo.format = driver;
    bo.read_only = ro;
    bo.direct = direct;
    bo.lock = locking != "off";
    bo.persist_zones = persist;
    bo.aio = aio;
    bo.volatile_cache = volatile_cache ? cache_size : 0;
    auto blk = BlockBackend::Open(bo);
    if (!blk.ok()) return blk.status().Prefix("Could not open '" + filename + "'");
    auto node = std::make_unique<BlockNode>();
    node->node_name = *name;
    node->driver = driver;
    node->filename = filename;
    node->read_only = ro;
    node->opts = bo;
    node->set_backend(std::move(blk).value());
    util::MutexLock lk(mu_);
    nodes_[*name] = std::move(node);
    return Status::Ok();
}

Status BlockNodes::AddJson(const Json& args) {
    // Flatten {"driver": "qcow2", "file": {"driver": "file", "filename": "x"}} into key=value.
    std::vector<Option> flat;
    std::function<Status(const Json&, const std::string&)> walk = [&](const Json& j, const std::string& prefix) -> Status {
        for (const auto& [k, v] : j.as_object()) {
            std::string key = prefix.empty() ? k : prefix + "." + k;
            if (v.is_object()) {
                QZNS_TRY(walk(v, key));
            } else if (v.is_string()) {
                flat.push_back({key, v.as_string(), false});
            } else if (v.is_bool()) {
                flat.push_back({key, v.as_bool() ? "on" : "off", false});
            } else if (v.is_integer()) {
                flat.push_back({key, std::to_string(v.as_uint64().value_or(0)), false});
            } else {
                return Status::Error(EINVAL, "blockdev-add: unsupported value for '" + key + "'");
            }
        }
        return Status::Ok();
    };
    if (!args.is_object()) return Status::Error(EINVAL, "blockdev-add: arguments must be an object");
    QZNS_TRY(walk(args, ""));
    return Add(OptionSet(std::move(flat)));
}

Status BlockNodes::Remove(const std::string& name) {
    std::unique_ptr<BlockNode> node;
    {
        util::MutexLock lk(mu_);
        auto it = nodes_.find(name);
        if (it == nodes_.end()) return Status::Error(ENOENT, "Failed to find node with node-name='" + name + "'");
        if (it->second->users) return Status::Error(EBUSY, "Node '" + name + "' is busy: it is used by an export");
        node = std::move(it->second);
        nodes_.erase(it);
    }
    auto blk = node->backend();
    return blk ? blk->Close() : Status::Ok();
}

BlockNode* BlockNodes::Find(const std::string& name) {
    util::MutexLock lk(mu_);
    auto it = nodes_.find(name);
    return it == nodes_.end() ? nullptr : it->second.get();
}

Json BlockNodes::Query() const {
    util::MutexLock lk(mu_);
    Json arr = Json::MakeArray();
    for (const auto& [name, n] : nodes_) {
        auto blk = n->backend();
        Json j = Json::MakeObject();
        j.Set("node-name", name).Set("drv", n->driver).Set("file", n->filename).Set("ro", n->read_only);
        if (blk) {
            j.Set("zoned", blk->is_zoned()).Set("aio", AioModeName(blk->aio_mode())).Set("virtual-size", blk->size());
            if (auto* c = blk->volatile_cache(); c && c->capacity())
                j.Set("volatile-cache", c->capacity()).Set("cached-bytes", c->stats().cached_bytes);
        } else {
            j.Set("powered-off", true);
        }
        arr.Push(std::move(j));
    }
    return arr;
}

Status BlockNodes::CloseAll() {
    std::map<std::string, std::unique_ptr<BlockNode>> nodes;
    {
        util::MutexLock lk(mu_);
        nodes.swap(nodes_);
    }
    Status first;
    for (auto& [name, n] : nodes) {
        auto blk = n->backend();
        Status st = blk ? blk->Close() : Status::Ok();
        if (!st.ok() && first.ok()) first = st.Prefix("closing node '" + name + "'");
    }
    return first;
}

}  // namespace qzns::daemon
