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
    std::shared_ptr<BlockBackend> blk;  // shared with the NVMe namespaces that export it
    int users = 0;  // exports using the node
};

class BlockNodes {
public:
    // Parses `driver=qcow2,node-name=zns0,file=zns.qcow2[,read-only=on][,cache.direct=on]`
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
