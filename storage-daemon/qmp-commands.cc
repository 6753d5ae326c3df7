#include "storage-daemon/qmp-commands.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <vector>
#include <thread>

#include "block/zone-prefix.h"
#include "block/zoned/zone-names.h"
#include "block/zoned/zone-state-machine.h"
#include "storage-daemon/nvme-tcp-export.h"
#include "storage-daemon/power-cut.h"

namespace qzns::daemon {
namespace {

using qmp::CommandResult;
using qmp::QmpError;

std::atomic<bool> quit_requested{false};

QmpError Err(const Status& st, const char* klass = "GenericError") { return QmpError{klass, st.message()}; }
QmpError Err(const std::string& msg, const char* klass = "GenericError") { return QmpError{klass, msg}; }

// The arguments a command takes (qapi/qzns.json), checked before it runs, with QEMU's wording
// for the three ways arguments go wrong.
enum class ArgType { kString, kInteger };
struct ArgSpec {
    const char* name;
    ArgType type;
    bool optional;
};

std::optional<QmpError> CheckArgs(const Json& a, const std::vector<ArgSpec>& spec) {
    for (const ArgSpec& s : spec) {
        const Json* v = a.get(s.name);
        if (!v) {
            if (s.optional) continue;
            return Err(std::string("Parameter '") + s.name + "' is missing");
        }
        bool ok = s.type == ArgType::kString ? v->is_string() : v->is_integer();
        if (!ok)
            return Err(std::string("Invalid parameter type for '") + s.name +
                       "', expected: " + (s.type == ArgType::kString ? "string" : "integer"));
    }
    for (const auto& [k, v] : a.as_object()) {
        bool known = false;
        for (const ArgSpec& s : spec) known = known || k == s.name;
        if (!known) return Err("Parameter '" + k + "' is unexpected");
    }
    return std::nullopt;
}

qmp::CommandHandler Checked(std::vector<ArgSpec> spec, qmp::CommandHandler h) {
    return [spec = std::move(spec), h = std::move(h)](const Json& a) -> CommandResult {
        if (auto e = CheckArgs(a, spec)) return *e;
        return h(a);
    };
}

}  // namespace

void RegisterQmpCommands(qmp::QmpDispatcher& qmp, BlockNodes& nodes, Exports& exports) {
    qmp.Register("query-version", Checked({}, [](const Json&) -> CommandResult {
        Json q = Json::MakeObject();
        q.Set("major", 0).Set("minor", 1).Set("micro", 0);
        Json r = Json::MakeObject();
        r.Set("qemu", std::move(q)).Set("package", "qzns");
        return r;
    }));
    qmp.Register("query-commands", Checked({}, [&qmp](const Json&) -> CommandResult {
        Json arr = Json::MakeArray();
        for (const auto& n : qmp.CommandNames()) {
            Json c = Json::MakeObject();
            c.Set("name", n);
            arr.Push(std::move(c));
        }
        Json c = Json::MakeObject();
        c.Set("name", "qmp_capabilities");
        arr.Push(std::move(c));
        return arr;
    }));
    qmp.Register("query-named-block-nodes",
                 Checked({}, [&nodes](const Json&) -> CommandResult { return nodes.Query(); }));
    qmp.Register("blockdev-add", [&nodes](const Json& a) -> CommandResult {
        Status st = nodes.AddJson(a);
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    });
    qmp.Register("blockdev-del", Checked({{"node-name", ArgType::kString, false}},
                                         [&nodes](const Json& a) -> CommandResult {
        Status st = nodes.Remove(a.get("node-name")->as_string());
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    }));
    qmp.Register("block-export-add", [&exports](const Json& a) -> CommandResult {
        Status st = exports.AddJson(a);
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    });
    qmp.Register("block-export-del", Checked({{"id", ArgType::kString, false}},
                                             [&exports](const Json& a) -> CommandResult {
        Status st = exports.Remove(a.get("id")->as_string());
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    }));
    qmp.Register("query-nvme-controllers",
                 Checked({}, [](const Json&) -> CommandResult { return QueryNvmeControllers(); }));
    qmp.Register("query-block-exports",
                 Checked({}, [&exports](const Json&) -> CommandResult { return exports.Query(); }));
    const std::vector<ArgSpec> query_zones_args = {
        {"node-name", ArgType::kString, false},
        {"start-zone", ArgType::kInteger, true},
        {"count", ArgType::kInteger, true}};
    qmp.Register("query-zones", Checked(query_zones_args, [&nodes](const Json& a) -> CommandResult {
        const Json* n = a.get("node-name");
        BlockNode* node = nodes.Find(n->as_string());
        if (!node) return Err("Cannot find node '" + n->as_string() + "'", "DeviceNotFound");
        auto blk = node->backend();
        if (!blk) return Err("Node '" + n->as_string() + "' is powered off");
        if (!blk->is_zoned()) return Err("Node '" + n->as_string() + "' is not zoned");
        uint64_t start = 0;
        uint32_t max = blk->nr_zones();
        if (const Json* z = a.get("start-zone")) {
            auto v = z->as_uint64();
            if (!v || *v >= blk->nr_zones()) return Err("start-zone is out of range");
            start = *v * blk->zone_size();
        }
        if (const Json* c = a.get("count")) {
            auto v = c->as_uint64();
            if (!v) return Err("count must not be negative");
            if (*v == 0) return Json::MakeArray();
            max = static_cast<uint32_t>(std::min<uint64_t>(*v, max));
        }
        auto zones = blk->ReportZones(start, max);
        if (!zones.ok()) return Err(zones.status());
        Json arr = Json::MakeArray();
        for (const ZoneInfo& z : *zones) {
            Json j = Json::MakeObject();
            j.Set("start", z.start)
                .Set("length", z.len)
                .Set("capacity", z.cap)
                .Set("write-pointer", z.wp)
                .Set("state", ZoneStateLabel(z.state))
                .Set("type", z.type == ZoneType::kConventional ? "conventional" : "sequential-write-required")
                .Set("attributes", z.attrs);
            arr.Push(std::move(j));
        }
        return arr;
    }));
    const std::vector<ArgSpec> zone_inject_args = {
        {"node-name", ArgType::kString, false}, {"zone", ArgType::kInteger, false}, {"state", ArgType::kString, false}};
    qmp.Register("zone-inject", Checked(zone_inject_args, [&nodes](const Json& a) -> CommandResult {
        const Json* n = a.get("node-name");
        const Json* z = a.get("zone");
        const Json* s = a.get("state");
        BlockNode* node = nodes.Find(n->as_string());
        if (!node) return Err("Cannot find node '" + n->as_string() + "'", "DeviceNotFound");
        ZoneState st;
        if (s->as_string() == "read-only") st = ZoneState::kReadOnly;
        else if (s->as_string() == "offline") st = ZoneState::kOffline;
        else return Err("state must be read-only or offline");
        auto blk = node->backend();
        if (!blk) return Err("Node '" + n->as_string() + "' is powered off");
        if (!blk->is_zoned()) return Err("Node '" + n->as_string() + "' is not zoned");
        auto zone = z->as_uint64();
        if (!zone || *zone >= blk->nr_zones()) return Err("zone is out of range");
        BlkResult r = blk->InjectZoneFault(static_cast<uint32_t>(*zone), st);
        if (!r.ok()) return Err(r.message());
        return Json::MakeObject();
    }));
    const std::vector<ArgSpec> power_cut_args = {
        {"node-name", ArgType::kString, false}, {"mode", ArgType::kString, true}, {"seed", ArgType::kInteger, true},
        {"atomic-unit", ArgType::kInteger, true}};
    qmp.Register("power-cut", Checked(power_cut_args, [&nodes, &exports](const Json& a) -> CommandResult {
        const std::string& name = a.get("node-name")->as_string();
        PowerCutMode mode = PowerCutMode::kLoseUnflushed;
        if (const Json* m = a.get("mode")) {
            auto pm = ParsePowerCutMode(m->as_string());
            if (!pm.ok()) return Err(pm.status());
            mode = *pm;
        }
        uint64_t seed = 0;
        if (const Json* sd = a.get("seed")) {
            auto v = sd->as_uint64();
            if (!v) return Err("seed must not be negative");
            seed = *v;
        }
        uint64_t unit = 512;
        if (const Json* u = a.get("atomic-unit")) {
            auto v = u->as_uint64();
            if (!v) return Err("atomic-unit must not be negative");
            // Checked before the node: a bad argument must not cut anything.
            if (Status st = CheckAtomicUnit(*v); !st.ok()) return Err(st);
            unit = *v;
        }
        if (!nodes.Find(name)) return Err("Cannot find node '" + name + "'", "DeviceNotFound");
        auto r = PowerCycleNode(nodes, exports, name, mode, seed, unit);
        if (!r.ok()) return Err(r.status());
        if (exports.context().emit) exports.context().emit("POWER_CUT", *r);
        return std::move(r).value();
    }));
    qmp.Register("quit", Checked({}, [](const Json&) -> CommandResult {
        quit_requested = true;
        // The main thread performs the clean shutdown, exactly as for SIGTERM; the signal is
        // raised a moment later so the reply reaches the client before the SHUTDOWN event.
        std::thread([] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            kill(getpid(), SIGTERM);
        }).detach();
        return Json::MakeObject();
    }));
}

bool QuitRequested() { return quit_requested.load(); }

}  // namespace qzns::daemon
