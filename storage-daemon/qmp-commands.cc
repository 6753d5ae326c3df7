#include "storage-daemon/qmp-commands.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "block/zoned/zone-names.h"
#include "block/zoned/zone-state-machine.h"
#include "storage-daemon/nvme-tcp-export.h"

namespace qzns::daemon {
namespace {

using qmp::CommandResult;
using qmp::QmpError;

QmpError Err(const Status& st, const char* klass = "GenericError") { return QmpError{klass, st.message()}; }
QmpError Err(const std::string& msg, const char* klass = "GenericError") { return QmpError{klass, msg}; }


}  // namespace

void RegisterQmpCommands(qmp::QmpServer& qmp, BlockNodes& nodes, Exports& exports) {
    qmp.Register("query-version", [](const Json&) -> CommandResult {
        Json q = Json::MakeObject();
        q.Set("major", 0).Set("minor", 1).Set("micro", 0);
        Json r = Json::MakeObject();
        r.Set("qemu", std::move(q)).Set("package", "qzns");
        return r;
    });
    qmp.Register("query-commands", [&qmp](const Json&) -> CommandResult {
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
    });
    qmp.Register("query-named-block-nodes", [&nodes](const Json&) -> CommandResult { return nodes.Query(); });
    qmp.Register("blockdev-add", [&nodes](const Json& a) -> CommandResult {
        Status st = nodes.AddJson(a);
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    });
    qmp.Register("blockdev-del", [&nodes](const Json& a) -> CommandResult {
        const Json* n = a.get("node-name");
        if (!n || !n->is_string()) return Err("Parameter 'node-name' is missing");
        Status st = nodes.Remove(n->as_string());
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    });
    qmp.Register("block-export-add", [&exports](const Json& a) -> CommandResult {
        Status st = exports.AddJson(a);
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    });
    qmp.Register("block-export-del", [&exports](const Json& a) -> CommandResult {
        const Json* id = a.get("id");
        if (!id || !id->is_string()) return Err("Parameter 'id' is missing");
        Status st = exports.Remove(id->as_string());
        if (!st.ok()) return Err(st);
        return Json::MakeObject();
    });
    qmp.Register("query-nvme-controllers", [](const Json&) -> CommandResult { return QueryNvmeControllers(); });
    qmp.Register("query-block-exports", [&exports](const Json&) -> CommandResult { return exports.Query(); });
    qmp.Register("query-zones", [&nodes](const Json& a) -> CommandResult {
        const Json* n = a.get("node-name");
        if (!n || !n->is_string()) return Err("Parameter 'node-name' is missing");
        BlockNode* node = nodes.Find(n->as_string());
        if (!node) return Err("Cannot find node '" + n->as_string() + "'", "DeviceNotFound");
        if (!node->blk->is_zoned()) return Err("Node '" + n->as_string() + "' is not zoned");
        uint64_t start = 0;
        uint32_t max = node->blk->nr_zones();
        if (const Json* z = a.get("start-zone")) {
            auto v = z->as_uint64();
            if (!v || *v >= node->blk->nr_zones()) return Err("start-zone is out of range");
            start = *v * node->blk->zone_size();
        }
        if (const Json* c = a.get("count")) max = static_cast<uint32_t>(std::min<uint64_t>(c->as_uint64().value_or(0), max));
        auto zones = node->blk->ReportZones(start, max);
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
    });
    qmp.Register("zone-inject", [&nodes](const Json& a) -> CommandResult {
        const Json* n = a.get("node-name");
        const Json* z = a.get("zone");
        const Json* s = a.get("state");
        if (!n || !n->is_string() || !z || !z->is_integer() || !s || !s->is_string())
            return Err("zone-inject needs node-name (string), zone (integer) and state (read-only|offline)");
        BlockNode* node = nodes.Find(n->as_string());
        if (!node) return Err("Cannot find node '" + n->as_string() + "'", "DeviceNotFound");
        ZoneState st;
        if (s->as_string() == "read-only") st = ZoneState::kReadOnly;
        else if (s->as_string() == "offline") st = ZoneState::kOffline;
        else return Err("state must be read-only or offline");
        if (!node->blk->is_zoned()) return Err("Node '" + n->as_string() + "' is not zoned");
        auto zone = z->as_uint64();
        if (!zone || *zone >= node->blk->nr_zones()) return Err("zone is out of range");
        BlkResult r = node->blk->InjectZoneFault(static_cast<uint32_t>(*zone), st);
        if (!r.ok()) return Err(r.message());
        return Json::MakeObject();
    });
    qmp.Register("quit", [](const Json&) -> CommandResult {
        // The main thread performs the clean shutdown, exactly as for SIGTERM; the signal is
        // raised a moment later so the reply reaches the client before the SHUTDOWN event.
        std::thread([] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            kill(getpid(), SIGTERM);
        }).detach();
        return Json::MakeObject();
    });
}

}  // namespace qzns::daemon
