#include "storage-daemon/nvme-tcp-export.h"

#include <arpa/inet.h>

#include <map>

#include "hw/nvme/subsystem.h"
#include "nvmf/tcp/server.h"

namespace qzns::daemon {
namespace {

// Everything the nvme-tcp exports share: one target, subsystems by NQN, listeners by address.
struct TcpState {
    std::mutex mu;
    std::unique_ptr<nvme::NvmeTarget> target;
    struct Listener {
        std::unique_ptr<nvmf::tcp::TcpServer> server;
        int users = 0;
    };
    std::map<std::string, Listener> listeners;  // "addr|port"
    std::map<std::string, int> subsystem_users;  // nqn -> exports
};

TcpState& State() {
    static TcpState* s = new TcpState();  // lives until exit; exports stop before that
    return *s;
}

bool IsLoopback(const std::string& addr) {
    return addr.empty() || addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1" || addr == "[::1]";
}

class NvmeTcpExport final : public Export {
public:
    NvmeTcpExport(std::string id, std::string node, std::string nqn, std::string addr, uint16_t port,
                  std::vector<uint32_t> nsids, BlockNode* bn, BlockNodes* nodes)
        : id_(std::move(id)), node_(std::move(node)), nqn_(std::move(nqn)), addr_(std::move(addr)), port_(port),
          nsids_(std::move(nsids)), bn_(bn), nodes_(nodes) {}

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
            .Set("shutting-down", stopped_)
            .Set("nqn", nqn_)
            .Set("addr", addr_)
            .Set("port", port_)
            .Set("nsids", std::move(ns));
        return j;
    }
    Status Stop() override {
        if (stopped_) return Status::Ok();
        stopped_ = true;
        TcpState& s = State();
        std::unique_ptr<nvmf::tcp::TcpServer> server;
        Status st;
        {
            std::lock_guard<std::mutex> lk(s.mu);
            std::string key = addr_ + "|" + std::to_string(port_);
            auto it = s.listeners.find(key);
            if (it != s.listeners.end() && --it->second.users == 0) {
                server = std::move(it->second.server);
                s.listeners.erase(it);
            }
            if (--s.subsystem_users[nqn_] == 0) {
                s.subsystem_users.erase(nqn_);
                if (auto sub = s.target->FindSubsystem(nqn_)) st = sub->FlushAll();
                s.target->RemoveSubsystem(nqn_);
            }
        }
        // Closing connections completes their in-flight commands first.
        if (server) server->Stop();
        bn_->users--;
        (void)nodes_;
        return st;
    }

private:
    std::string id_, node_, nqn_, addr_;
    uint16_t port_;
    std::vector<uint32_t> nsids_;
    BlockNode* bn_;
    BlockNodes* nodes_;
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
    std::string addr = o.Take("addr").value_or("127.0.0.1");
    if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
    QZNS_ASSIGN(uint64_t port, o.TakeUint("port", 4420));
    if (port == 0 || port > 65535) return Status::Error(EINVAL, "--export type=nvme-tcp: port must be 1-65535");
    QZNS_ASSIGN(uint64_t nsid, o.TakeUint("nsid", 0));
    QZNS_ASSIGN(uint64_t lba, o.TakeUint("lba-size", 512));
    if (lba != 512 && lba != 4096) return Status::Error(EINVAL, "--export type=nvme-tcp: lba-size must be 512 or 4096");
    QZNS_ASSIGN(bool conv, o.TakeBool("export-conventional", true));
    std::vector<std::string> hosts;
    for (int i = 0;; i++) {
        auto h = o.Take("allow-host." + std::to_string(i));
        if (!h) break;
        hosts.push_back(*h);
    }
    QZNS_TRY(o.RejectUnknown("--export type=nvme-tcp"));

    BlockNode* bn = ctx.nodes->Find(*node_name);
    if (!bn) return Status::Error(ENOENT, "--export: no block node named '" + *node_name + "'");

    TcpState& s = State();
    std::lock_guard<std::mutex> lk(s.mu);
    if (!s.target) s.target = std::make_unique<nvme::NvmeTarget>();
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
    nvme::NamespaceOptions no;
    no.nsid = static_cast<uint32_t>(nsid);
    no.lba_size = static_cast<uint32_t>(lba);
    no.export_conventional = conv;
    QZNS_ASSIGN(std::vector<uint32_t> nsids, sub->AddBackend(bn->blk, no));
    if (new_sub) QZNS_TRY(s.target->AddSubsystem(sub));

    std::string key = addr + "|" + std::to_string(port);
    auto it = s.listeners.find(key);
    if (it == s.listeners.end()) {
        nvmf::tcp::TcpServerOptions so;
        so.addr = addr;
        so.port = static_cast<uint16_t>(port);
        so.target = s.target.get();
        so.threads = 2;
        auto server = nvmf::tcp::TcpServer::Start(so);
        if (!server.ok()) {
            if (new_sub) s.target->RemoveSubsystem(*nqn);
            return server.status().Prefix("--export type=nvme-tcp: cannot listen on " + addr + ":" + std::to_string(port));
        }
        it = s.listeners.emplace(key, TcpState::Listener{std::move(server).value(), 0}).first;
    }
    it->second.users++;
    s.subsystem_users[*nqn]++;
    bn->users++;
    if (!IsLoopback(addr) && hosts.empty())
        fprintf(stderr, "qzns-storage-daemon: warning: export '%s' listens on %s and accepts any host NQN; "
                        "restrict it with allow-host=NQN\n", id.c_str(), addr.c_str());
    return std::unique_ptr<Export>(std::make_unique<NvmeTcpExport>(id, *node_name, *nqn, addr,
                                                                    static_cast<uint16_t>(port), nsids, bn, ctx.nodes));
}

Json QueryNvmeControllers() {
    TcpState& s = State();
    std::lock_guard<std::mutex> lk(s.mu);
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
