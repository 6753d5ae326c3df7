#include "storage-daemon/nvme-tcp-export.h"

#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "hw/nvme/discovery.h"
#include "hw/nvme/subsystem.h"
#include "nvmf/tcp/server.h"
#include "util/mutex.h"

namespace qzns::daemon {
namespace {

// Everything the nvme-tcp exports share: one target, subsystems by NQN, listeners by address.
// Every I/O listener answers the discovery NQN as well (PortTarget); discovery-port=N adds a
// listener that serves only the discovery subsystem. The discovery log lists one record per
// (subsystem, listener) of the current exports.
struct TcpState {
    util::Mutex mu;
    std::unique_ptr<nvme::NvmeTarget> target GUARDED_BY(mu);
    std::unique_ptr<nvme::DiscoveryTarget> discovery GUARDED_BY(mu);
    std::unique_ptr<nvme::PortTarget> port_target GUARDED_BY(mu);
    struct Listener {
        std::unique_ptr<nvmf::tcp::TcpServer> server;
        int users = 0;
        bool discovery_only = false;
        uint16_t portid = 0;
        std::string traddr;  // numeric address the server bound
    };
    std::map<std::string, Listener> listeners GUARDED_BY(mu);  // "addr|port"
    std::map<std::string, int> subsystem_users GUARDED_BY(mu);  // nqn -> exports
    std::map<std::string, std::vector<std::string>> subsystem_hosts GUARDED_BY(mu);  // nqn -> allow-host list
    struct Served {
        std::string nqn, listener;  // listener key
    };
    std::map<const void*, Served> served GUARDED_BY(mu);  // export -> what it serves
    uint16_t next_portid GUARDED_BY(mu) = 1;
};

TcpState& State() {
    static TcpState* s = new TcpState();  // lives until exit; exports stop before that
    return *s;
}

std::string ListenerKey(const std::string& addr, uint64_t port) { return addr + "|" + std::to_string(port); }

// "127.0.0.1:4420" / "[::1]:4420" (TcpServer::address) -> "127.0.0.1" / "::1".
std::string NumericAddress(const std::string& address) {
    std::string a = address.substr(0, address.rfind(':'));
    if (a.size() > 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
    return a;
}

// Rebuilds the discovery log from the exports.
void UpdateDiscoveryLocked(TcpState& s) REQUIRES(s.mu) {
    std::vector<nvme::DiscoveryRecord> recs;
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& [exp, sv] : s.served) {
        if (!seen.insert({sv.nqn, sv.listener}).second) continue;
        auto l = s.listeners.find(sv.listener);
        if (l == s.listeners.end()) continue;
        nvme::DiscoveryRecord r;
        r.subnqn = sv.nqn;
        r.traddr = l->second.traddr;
        r.trsvcid = l->second.server->port();
        r.portid = l->second.portid;
        r.allowed_hosts = s.subsystem_hosts[sv.nqn];
        recs.push_back(std::move(r));
    }
    std::sort(recs.begin(), recs.end(), [](const nvme::DiscoveryRecord& a, const nvme::DiscoveryRecord& b) {
        return std::tie(a.portid, a.subnqn) < std::tie(b.portid, b.subnqn);
    });
    s.discovery->SetRecords(std::move(recs));
}

// Finds or starts the listener `key`; counts one more user.
Status AcquireListenerLocked(TcpState& s, const std::string& addr, uint64_t port, bool discovery_only,
                             const char* what) REQUIRES(s.mu) {
    std::string key = ListenerKey(addr, port);
    auto it = s.listeners.find(key);
    if (it != s.listeners.end()) {
        // An I/O port answers the discovery NQN too, so a discovery port may share it; an I/O
        // export may not use a port that serves only discovery.
        if (it->second.discovery_only && !discovery_only)
            return Status::Error(EADDRINUSE, std::string(what) + ": " + addr + ":" + std::to_string(port) +
                                                 " is a discovery port (discovery-port=) of another export");
        it->second.users++;
        return Status::Ok();
    }
    nvmf::tcp::TcpServerOptions so;
    so.addr = addr;
    so.port = static_cast<uint16_t>(port);
    so.target = discovery_only ? static_cast<nvme::FabricsTarget*>(s.discovery.get()) : s.port_target.get();
    so.threads = discovery_only ? 1 : 2;
    auto server = nvmf::tcp::TcpServer::Start(so);
    if (!server.ok())
        return server.status().Prefix(std::string(what) + ": cannot listen on " + addr + ":" + std::to_string(port));
    TcpState::Listener l;
    l.server = std::move(server).value();
    l.users = 1;
    l.discovery_only = discovery_only;
    l.portid = s.next_portid++;
    l.traddr = NumericAddress(l.server->address());
    s.listeners.emplace(key, std::move(l));
    return Status::Ok();
}

// Counts one user less; returns the server to stop (outside mu) when it was the last.
std::unique_ptr<nvmf::tcp::TcpServer> ReleaseListenerLocked(TcpState& s, const std::string& key) REQUIRES(s.mu) {
    auto it = s.listeners.find(key);
    if (it == s.listeners.end() || --it->second.users > 0) return nullptr;
    auto server = std::move(it->second.server);
    s.listeners.erase(it);
    return server;
}

bool IsLoopback(const std::string& addr) {
    return addr.empty() || addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1" || addr == "[::1]";
}

class NvmeTcpExport final : public Export {
public:
    NvmeTcpExport(std::string id, std::string node, std::string nqn, std::string addr, uint16_t port,
                  uint16_t discovery_port, std::vector<uint32_t> nsids, BlockNode* bn, AioMode aio)
        : id_(std::move(id)), node_(std::move(node)), nqn_(std::move(nqn)), addr_(std::move(addr)), port_(port),
          discovery_port_(discovery_port), nsids_(std::move(nsids)), bn_(bn), aio_(aio) {}

    const std::string& id() const override { return id_; }
    const char* type() const override { return "nvme-tcp"; }
    const std::string& node_name() const override { return node_; }
    Json Describe() const override {
        Json j = Json::MakeObject();
        Json ns = Json::MakeArray();
        for (uint32_t n : nsids_) ns.Push(n);
        j.Set("id", id_)
            .Set("type", "nvme-tcp")
            .Set("node-name", node_)
            .Set("aio", AioModeName(aio_))
            .Set("shutting-down", stopped_)
            .Set("nqn", nqn_)
            .Set("addr", addr_)
            .Set("port", port_)
            .Set("nsids", std::move(ns));
        if (discovery_port_) j.Set("discovery-port", discovery_port_);
        return j;
    }
    Status Stop() override {
        if (stopped_) return Status::Ok();
        stopped_ = true;
        TcpState& s = State();
        std::vector<std::unique_ptr<nvmf::tcp::TcpServer>> servers;
        Status st;
        {
            util::MutexLock lk(s.mu);
            s.served.erase(this);
            servers.push_back(ReleaseListenerLocked(s, ListenerKey(addr_, port_)));
            if (discovery_port_) servers.push_back(ReleaseListenerLocked(s, ListenerKey(addr_, discovery_port_)));
            if (--s.subsystem_users[nqn_] == 0) {
                s.subsystem_users.erase(nqn_);
                s.subsystem_hosts.erase(nqn_);
                if (auto sub = s.target->FindSubsystem(nqn_)) st = sub->FlushAll();
                s.target->RemoveSubsystem(nqn_);
            }
            UpdateDiscoveryLocked(s);
        }
        // Closing connections completes their in-flight commands first.
        for (auto& server : servers)
            if (server) server->Stop();
        bn_->users--;
        return st;
    }

private:
    std::string id_, node_, nqn_, addr_;
    uint16_t port_;
    uint16_t discovery_port_;
    std::vector<uint32_t> nsids_;
    BlockNode* bn_;
    AioMode aio_;
    bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Export>> CreateNvmeTcpExport(OptionSet o, ExportContext& ctx) {
    std::string id = o.Take("id").value_or("");
    auto node_name = o.Take("node-name");
    if (!node_name) return Status::Error(EINVAL, "--export type=nvme-tcp: node-name is required");
    auto nqn = o.Take("nqn");
    if (!nqn || nqn->empty() || nqn->size() > 223)
        return Status::Error(EINVAL, "--export type=nvme-tcp: nqn is required (e.g. nqn.2026-11.io.qzns:zns0)");
    if (*nqn == nvme::kDiscoveryNqn)
        return Status::Error(EINVAL, std::string("--export type=nvme-tcp: ") + nvme::kDiscoveryNqn +
                                         " is the discovery subsystem; choose another nqn");
    std::string addr = o.Take("addr").value_or("127.0.0.1");
    if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
    QZNS_ASSIGN(uint64_t port, o.TakeUint("port", 4420));
    if (port == 0 || port > 65535) return Status::Error(EINVAL, "--export type=nvme-tcp: port must be 1-65535");
    QZNS_ASSIGN(uint64_t disc_port, o.TakeUint("discovery-port", 0));
    if (disc_port > 65535) return Status::Error(EINVAL, "--export type=nvme-tcp: discovery-port must be 1-65535");
    QZNS_ASSIGN(uint64_t nsid, o.TakeUint("nsid", 0));
    QZNS_ASSIGN(uint64_t lba, o.TakeUint("lba-size", 512));
    if (lba != 512 && lba != 4096) return Status::Error(EINVAL, "--export type=nvme-tcp: lba-size must be 512 or 4096");
    QZNS_ASSIGN(bool conv, o.TakeBool("export-conventional", true));
    std::vector<std::string> hosts;
    for (int i = 0;; i++) {
        auto h = o.Take("allow-host." + std::to_string(i));
        if (!h) break;
        // An empty entry would admit a Connect whose HOSTNQN field is blank, and one longer
        // than an NQN can be (NVMe base spec 4.5) could never match: both are typos.
        if (h->empty() || h->size() > 223)
            return Status::Error(EINVAL, "--export type=nvme-tcp: allow-host must be a host NQN of 1 to 223 "
                                         "characters (see 'nvme show-hostnqn' on the host), not '" + *h + "'");
        hosts.push_back(*h);
    }
    QZNS_TRY(o.RejectUnknown("--export type=nvme-tcp"));

    BlockNode* bn = ctx.nodes->Find(*node_name);
    if (!bn) return Status::Error(ENOENT, "--export: no block node named '" + *node_name + "'");

    TcpState& s = State();
    util::MutexLock lk(s.mu);
    if (!s.target) {
        s.target = std::make_unique<nvme::NvmeTarget>();
        s.discovery = std::make_unique<nvme::DiscoveryTarget>();
        s.port_target = std::make_unique<nvme::PortTarget>(s.target.get(), s.discovery.get());
    }
    std::shared_ptr<nvme::Subsystem> sub = s.target->FindSubsystem(*nqn);
    bool new_sub = !sub;
    if (!sub) {
        nvme::SubsystemConfig cfg;
        cfg.nqn = *nqn;
        cfg.allow_any_host = hosts.empty();
        cfg.allowed_hosts = hosts;
        QZNS_ASSIGN(sub, nvme::Subsystem::Create(cfg));
    } else if (!hosts.empty()) {
        return Status::Error(EINVAL, "--export: allow-host must be given on the first export of subsystem " + *nqn);
    }
    // Listeners first: a port that cannot be used must not leave a namespace behind in a shared
    // subsystem (namespaces are not removable).
    QZNS_TRY(AcquireListenerLocked(s, addr, port, false, "--export type=nvme-tcp"));
    auto release = [&]() REQUIRES(s.mu) {
        std::vector<std::unique_ptr<nvmf::tcp::TcpServer>> servers;
        servers.push_back(ReleaseListenerLocked(s, ListenerKey(addr, port)));
        if (disc_port) servers.push_back(ReleaseListenerLocked(s, ListenerKey(addr, disc_port)));
        for (auto& server : servers)
            if (server) server->Stop();
    };
    if (disc_port) {
        Status ds = AcquireListenerLocked(s, addr, disc_port, true, "--export type=nvme-tcp discovery-port");
        if (!ds.ok()) {
            if (auto server = ReleaseListenerLocked(s, ListenerKey(addr, port))) server->Stop();
            return ds;
        }
    }
    nvme::NamespaceOptions no;
    no.nsid = static_cast<uint32_t>(nsid);
    no.lba_size = static_cast<uint32_t>(lba);
    no.export_conventional = conv;
    auto blk = bn->backend();
    if (!blk) return Status::Error(EIO, "--export: block node '" + *node_name + "' is powered off");
    auto nsids = sub->AddBackend(blk, no);
    if (!nsids.ok()) {
        release();
        return nsids.status();
    }
    if (new_sub) {
        Status st = s.target->AddSubsystem(sub);
        if (!st.ok()) {
            release();
            return st;
        }
    }
    s.subsystem_users[*nqn]++;
    if (new_sub) s.subsystem_hosts[*nqn] = hosts;
    bn->users++;
    if (!IsLoopback(addr) && hosts.empty())
        fprintf(stderr, "qzns-storage-daemon: warning: export '%s' listens on %s and accepts any host NQN; "
                        "restrict it with allow-host=NQN\n", id.c_str(), addr.c_str());
    auto exp = std::make_unique<NvmeTcpExport>(id, *node_name, *nqn, addr, static_cast<uint16_t>(port),
                                               static_cast<uint16_t>(disc_port), std::move(nsids).value(), bn,
                                               blk->aio_mode());
    s.served[exp.get()] = TcpState::Served{*nqn, ListenerKey(addr, port)};
    UpdateDiscoveryLocked(s);
    return std::unique_ptr<Export>(std::move(exp));
}

Json QueryNvmeControllers() {
    TcpState& s = State();
    util::MutexLock lk(s.mu);
    Json arr = Json::MakeArray();
    if (!s.target) return arr;
    for (const auto& [nqn, users] : s.subsystem_users) {
        auto sub = s.target->FindSubsystem(nqn);
        if (!sub) continue;
        for (const auto& c : sub->Controllers()) {
            Json j = Json::MakeObject();
            j.Set("subsystem", nqn).Set("cntlid", c->cntlid()).Set("hostnqn", c->hostnqn()).Set("transport", "tcp");
            arr.Push(std::move(j));
        }
    }
    return arr;
}

}  // namespace qzns::daemon
