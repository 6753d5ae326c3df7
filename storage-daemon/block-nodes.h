// The daemon's block graph: named nodes (--blockdev / blockdev-add), each an open BlockBackend.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "block/block-backend.h"
#include "util/json.h"
#include "util/mutex.h"
#include "util/options.h"

namespace qzns::daemon {

struct BlockNode {
    std::string node_name;
    std::string driver;
    std::string filename;
    bool read_only = false;
    BlockBackendOptions opts;  // how it was opened: a power cycle opens it again the same way
    int users = 0;  // exports using the node

    // Shared with the NVMe namespaces that export it. Null only while a power cycle
    // (storage-daemon/power-cut.cc) has the image closed, or after it failed to reopen it.
    std::shared_ptr<BlockBackend> backend() const {
        util::MutexLock lk(mu);
        return blk;
    }
    void set_backend(std::shared_ptr<BlockBackend> b) {
        util::MutexLock lk(mu);
        blk = std::move(b);
    }

private:
    mutable util::Mutex mu;
    std::shared_ptr<BlockBackend> blk GUARDED_BY(mu);
};

class BlockNodes {
public:
    // Parses `driver=qcow2,node-name=zns0,file=zns.qcow2[,read-only=on][,cache.direct=on]
    // [,cache.volatile=on[,cache.size=64M]]`
    // (also file.filename=..., and a JSON object as QEMU accepts) and opens the image.
    Status Add(OptionSet opts);
    Status AddJson(const Json& args);
    Status Remove(const std::string& node_name);
    // Null when absent. The node stays owned here.
    BlockNode* Find(const std::string& node_name);
    Json Query() const;
    // Persists every node and closes it (clean shutdown).
    Status CloseAll();

private:
    mutable util::Mutex mu_;
    std::map<std::string, std::unique_ptr<BlockNode>> nodes_ GUARDED_BY(mu_);
};

}  // namespace qzns::daemon
