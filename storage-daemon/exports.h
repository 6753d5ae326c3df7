// Exports: how a block node is served to hosts. Each export type (nvme-tcp, vfio-user) is a
// factory registered by name; --export and block-export-add create exports through it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "storage-daemon/block-nodes.h"
#include "util/json.h"
#include "util/mutex.h"
#include "util/options.h"

namespace qzns::daemon {

class Export {
public:
    virtual ~Export() = default;
    virtual const std::string& id() const = 0;
    virtual const char* type() const = 0;
    virtual const std::string& node_name() const = 0;
    // query-block-exports entry.
    virtual Json Describe() const = 0;
    // Finishes in-flight I/O and stops serving; the node stays open.
    virtual Status Stop() = 0;
};

struct ExportContext {
    BlockNodes* nodes = nullptr;
    // Hook for exports that report to QMP (events such as NVME_CONTROLLER_CONNECTED).
    std::function<void(const std::string& event, Json data)> emit;
};

using ExportFactory = std::function<Result<std::unique_ptr<Export>>(OptionSet opts, ExportContext& ctx)>;

class Exports {
public:
    explicit Exports(ExportContext ctx) : ctx_(std::move(ctx)) {}
    void RegisterType(const std::string& type, ExportFactory f) { factories_[type] = std::move(f); }
    // Parses `type=...,id=...,node-name=...,...`; allow-host may repeat.
    Status AddFromString(const std::string& spec);
    Status Add(OptionSet opts);
    Status AddJson(const Json& args);
    Status Remove(const std::string& id);
    Json Query() const;
    Export* Find(const std::string& id);
    std::vector<Export*> All();
    Status StopAll();
    // Stops every export of the node (a power cut) and returns the options that recreate them
    // with Add, in the order they were added.
    std::vector<std::vector<Option>> StopForNode(const std::string& node_name);
    ExportContext& context() { return ctx_; }

private:
    ExportContext ctx_;
    std::map<std::string, ExportFactory> factories_;
    mutable util::Mutex mu_;
    std::vector<std::unique_ptr<Export>> exports_ GUARDED_BY(mu_);
    std::map<const Export*, std::vector<Option>> specs_ GUARDED_BY(mu_);  // type=..., id=..., ...
};

}  // namespace qzns::daemon
