#include "storage-daemon/vfio-user-export.h"

#include <cstdio>
#include <map>
#include <thread>

#include "hw/nvme/subsystem.h"
#include "hw/vfio-user/nvme-pci.h"
#include "hw/vfio-user/server.h"
#include "util/crc32c.h"
#include "util/mutex.h"

namespace qzns::daemon {
namespace {

// One socket: the subsystem behind it, its PCI controller and the server thread that accepts
// QEMU on it. Shared by every export naming the socket.
struct Endpoint {
    std::string socket;
    std::string nqn;
    std::shared_ptr<nvme::Subsystem> subsys;
    std::unique_ptr<vfu::NvmePciDevice> device;
    std::unique_ptr<vfu::VfioUserServer> server;
    std::thread thread;
    // users and nodes change under VfioUserState::mu while the endpoint is in its map (there
    // is no Endpoint-side name for that mutex to put in GUARDED_BY).
    int users = 0;
    // Nodes stay busy until the endpoint stops: their namespaces cannot leave a controller
    // a guest may still be using.
    std::vector<BlockNode*> nodes;
    std::atomic<uint64_t> connects{0};
};

struct VfioUserState {
    util::Mutex mu;
    std::map<std::string, std::shared_ptr<Endpoint>> endpoints GUARDED_BY(mu);  // by socket path
};

VfioUserState& State() {
    static VfioUserState* s = new VfioUserState();  // lives until exit; exports stop before that
    return *s;
}

// Stable across daemon restarts for the same socket, and different between sockets: Linux
// keys its subsystems on the serial / NQN, and two controllers claiming the same subsystem
// without CMIC would be refused.
std::string SerialFor(const std::string& socket) {
    char buf[24];
    snprintf(buf, sizeof(buf), "QZNSVU%08X", Crc32c(socket.data(), socket.size()));
    return buf;
}

Result<std::shared_ptr<Endpoint>> StartEndpoint(const std::string& socket, const std::string& nqn,
                                                bool shadow_doorbells) {
    auto ep = std::make_shared<Endpoint>();
    ep->socket = socket;
    ep->nqn = nqn;
    nvme::SubsystemConfig sc;
    sc.nqn = nqn;
    sc.serial = SerialFor(socket);
    sc.ctrl.transport = nvme::TransportKind::kPci;
    sc.ctrl.doorbell_buffer = shadow_doorbells;
    sc.ctrl.msix_vectors = 16;
    sc.ctrl.max_io_queues = 64;
    QZNS_ASSIGN(ep->subsys, nvme::Subsystem::Create(sc));
    vfu::NvmePciOptions po;
    po.msix_vectors = sc.ctrl.msix_vectors;
    po.max_queue_pairs = sc.ctrl.max_io_queues + 1u;
    QZNS_ASSIGN(ep->device, vfu::NvmePciDevice::Create(ep->subsys, po));
    vfu::ServerOptions so;
    Endpoint* raw = ep.get();
    so.on_client = [raw](bool connected, const std::string& why) {
        if (connected) raw->connects++;
        fprintf(stderr, "qzns-storage-daemon: vfio-user %s: client %s%s%s\n", raw->socket.c_str(),
                connected ? "connected" : "disconnected", why.empty() ? "" : ": ", why.c_str());
    };
    so.on_refused = [raw] {
        fprintf(stderr, "qzns-storage-daemon: vfio-user %s: refused a second client (one QEMU at a time)\n",
                raw->socket.c_str());
    };
    ep->server = std::make_unique<vfu::VfioUserServer>(ep->device.get(), so);
    Status st = ep->server->Listen(socket);
    if (!st.ok()) return st.Prefix("--export type=vfio-user: cannot listen on " + socket);
    ep->thread = std::thread([raw] {
        Status st = raw->server->Run();
        if (!st.ok())
            fprintf(stderr, "qzns-storage-daemon: vfio-user %s: %s\n", raw->socket.c_str(), st.message().c_str());
    });
    return ep;
}

// The PCI controller's doorbell counters: MMIO doorbell messages against commands, and how
// many commands only a shadow doorbell announced (query-block-exports, and the daemon's log
// when the endpoint stops).
Json DoorbellStats(const vfu::NvmePciStats& s) {
    Json j = Json::MakeObject();
    j.Set("commands", s.commands)
        .Set("sq-mmio-doorbells", s.sq_doorbells)
        .Set("cq-mmio-doorbells", s.cq_doorbells)
        .Set("bad-doorbells", s.bad_doorbells)
        .Set("shadow-doorbell-commands", s.shadow_commands)
        .Set("eventidx-writes", s.eventidx_writes)
        .Set("doorbell-buffer-configs", s.dbbuf_configs)
        .Set("doorbell-buffer-active", s.dbbuf_active);
    return j;
}

// Stops serving (the client's in-flight commands complete first: the server resets the device
// and waits for them), removes the socket and persists every namespace's backend.
Status StopEndpoint(Endpoint& ep) {
    ep.server->Stop();
    if (ep.thread.joinable()) ep.thread.join();
    if (ep.device) {
        vfu::NvmePciStats s = ep.device->stats();
        fprintf(stderr,
                "qzns-storage-daemon: vfio-user %s: %llu commands, MMIO doorbells: %llu SQ %llu CQ; "
                "%llu commands announced only by shadow doorbells (%llu Doorbell Buffer Config)\n",
                ep.socket.c_str(), (unsigned long long)s.commands, (unsigned long long)s.sq_doorbells,
                (unsigned long long)s.cq_doorbells, (unsigned long long)s.shadow_commands,
                (unsigned long long)s.dbbuf_configs);
    }
    ep.server.reset();
    ep.device.reset();
    Status st = ep.subsys->FlushAll();
    for (BlockNode* bn : ep.nodes) bn->users--;
    ep.nodes.clear();
    return st;
}

class VfioUserExport final : public Export {
public:
    VfioUserExport(std::string id, std::string node, std::shared_ptr<Endpoint> ep, std::vector<uint32_t> nsids,
                   AioMode aio)
        : id_(std::move(id)), node_(std::move(node)), ep_(std::move(ep)), nsids_(std::move(nsids)), aio_(aio) {}

    const std::string& id() const override { return id_; }
    const char* type() const override { return "vfio-user"; }
    const std::string& node_name() const override { return node_; }
    Json Describe() const override {
        Json ns = Json::MakeArray();
        for (uint32_t n : nsids_) ns.Push(n);
        Json j = Json::MakeObject();
        j.Set("id", id_)
            .Set("type", "vfio-user")
            .Set("node-name", node_)
            .Set("aio", AioModeName(aio_))
            .Set("shutting-down", stopped_)
            .Set("socket", ep_->socket)
            .Set("nqn", ep_->nqn)
            .Set("nsids", std::move(ns))
            .Set("connected", !stopped_ && ep_->server && ep_->server->client_connected())
            .Set("connections", ep_->connects.load());
        if (!stopped_ && ep_->device) j.Set("doorbells", DoorbellStats(ep_->device->stats()));
        return j;
    }
    Status Stop() override {
        if (stopped_) return Status::Ok();
        stopped_ = true;
        VfioUserState& s = State();
        {
            util::MutexLock lk(s.mu);
            if (--ep_->users > 0) return Status::Ok();  // the socket's last export stops it
            s.endpoints.erase(ep_->socket);
        }
        return StopEndpoint(*ep_);
    }

private:
    std::string id_, node_;
    std::shared_ptr<Endpoint> ep_;
    std::vector<uint32_t> nsids_;
    AioMode aio_;
    bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Export>> CreateVfioUserExport(OptionSet o, ExportContext& ctx) {
    const char* ctx_name = "--export type=vfio-user";
    std::string id = o.Take("id").value_or("");
    auto node_name = o.Take("node-name");
    if (!node_name) return Status::Error(EINVAL, std::string(ctx_name) + ": node-name is required");
    auto socket = o.Take("socket");
    if (!socket || socket->empty())
        return Status::Error(EINVAL, std::string(ctx_name) + ": socket is required (the path QEMU's vfio-user-pci connects to)");
    std::optional<std::string> nqn = o.Take("nqn");
    if (nqn && (nqn->empty() || nqn->size() > 223))
        return Status::Error(EINVAL, std::string(ctx_name) + ": nqn must be 1 to 223 characters");
    QZNS_ASSIGN(uint64_t nsid, o.TakeUint("nsid", 0));
    QZNS_ASSIGN(uint64_t lba, o.TakeUint("lba-size", 512));
    if (lba != 512 && lba != 4096) return Status::Error(EINVAL, std::string(ctx_name) + ": lba-size must be 512 or 4096");
    QZNS_ASSIGN(bool conv, o.TakeBool("export-conventional", true));
    std::optional<bool> shadow;
    if (o.Has("shadow-doorbells")) {
        QZNS_ASSIGN(shadow, o.TakeBool("shadow-doorbells", true));
    }
    QZNS_TRY(o.RejectUnknown(ctx_name));

    BlockNode* bn = ctx.nodes->Find(*node_name);
    if (!bn) return Status::Error(ENOENT, "--export: no block node named '" + *node_name + "'");

    VfioUserState& s = State();
    util::MutexLock lk(s.mu);
    std::shared_ptr<Endpoint> ep;
    bool fresh = false;
    if (auto it = s.endpoints.find(*socket); it != s.endpoints.end()) {
        ep = it->second;
        if (shadow)
            return Status::Error(EINVAL, std::string(ctx_name) + ": shadow-doorbells is a controller setting; give it "
                                                                 "only on the socket's first export");
        if (nqn && *nqn != ep->nqn)
            return Status::Error(EINVAL, std::string(ctx_name) + ": socket " + *socket + " already serves subsystem " +
                                             ep->nqn + "; give nqn only on its first export");
    } else {
        QZNS_ASSIGN(ep, StartEndpoint(*socket, nqn.value_or("nqn.2026-11.io.qzns:vfio-user:" + id),
                                      shadow.value_or(true)));
        fresh = true;
    }
    nvme::NamespaceOptions no;
    no.nsid = static_cast<uint32_t>(nsid);
    no.lba_size = static_cast<uint32_t>(lba);
    no.export_conventional = conv;
    auto blk = bn->backend();
    if (!blk) {
        if (fresh) (void)StopEndpoint(*ep);
        return Status::Error(EIO, "--export: block node '" + *node_name + "' is powered off");
    }
    auto nsids = ep->subsys->AddBackend(blk, no);
    if (!nsids.ok()) {
        if (fresh) (void)StopEndpoint(*ep);
        return nsids.status().Prefix(std::string(ctx_name) + " id=" + id);
    }
    if (fresh) s.endpoints[*socket] = ep;
    ep->users++;
    ep->nodes.push_back(bn);
    bn->users++;
    return std::unique_ptr<Export>(std::make_unique<VfioUserExport>(id, *node_name, ep, std::move(nsids).value(),
                                                                            blk->aio_mode()));
}

}  // namespace qzns::daemon
