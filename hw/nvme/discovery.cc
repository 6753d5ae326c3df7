// DiscoveryTarget: the discovery subsystem behind its own NvmeTarget, and PortTarget, which
// sends a Connect for the discovery NQN on an I/O port to it.
#include "hw/nvme/discovery.h"

#include <cstring>

#include "hw/nvme/spec.h"
#include "hw/nvme/status.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {
namespace {

CqeBytes MakeCqe(uint16_t cid, uint16_t status) {
    Cqe c{};
    c.cid.set(cid);
    c.status.set(static_cast<uint16_t>(status << 1));
    CqeBytes out;
    std::memcpy(out.b, &c, sizeof(c));
    return out;
}

// Routes on the SUBNQN of the first command (a Connect); everything after goes to the chosen
// target's queue. The transport calls Submit and Disconnect from one thread.
class RoutedQueue final : public FabricsQueue {
public:
    RoutedQueue(FabricsTarget* nvm, FabricsTarget* discovery, std::string peer)
        : nvm_(nvm), discovery_(discovery), peer_(std::move(peer)) {}

    void Submit(const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done) override {
        if (!inner_) {
            bool to_discovery = sqe.b[0] == opc::kFabrics && sqe.b[4] == fctype::kConnect &&
                                data.size() >= sizeof(ConnectData) &&
                                strnlen(reinterpret_cast<const char*>(data.data()) + offsetof(ConnectData, subnqn),
                                        256) == sizeof(kDiscoveryNqn) - 1 &&
                                std::memcmp(data.data() + offsetof(ConnectData, subnqn), kDiscoveryNqn,
                                            sizeof(kDiscoveryNqn) - 1) == 0;
            inner_ = (to_discovery ? discovery_ : nvm_)->NewQueue(peer_);
            if (!inner_) {
                done(MakeCqe(Load<Sqe>(sqe.b).cid.get(), sc::kConnectControllerBusy), 0);
                return;
            }
            if (close_) inner_->SetCloseRequest(close_);
        }
        inner_->Submit(sqe, data, std::move(done));
    }
    void Disconnect() override {
        if (inner_) inner_->Disconnect();
    }
    void SetCloseRequest(std::function<void()> close) override {
        close_ = std::move(close);
        if (inner_) inner_->SetCloseRequest(close_);
    }

private:
    FabricsTarget* nvm_;
    FabricsTarget* discovery_;
    std::string peer_;
    std::function<void()> close_;
    std::unique_ptr<FabricsQueue> inner_;
};

}  // namespace

DiscoveryTarget::DiscoveryTarget(DiscoveryOptions opts) : target_(std::make_unique<NvmeTarget>()) {
    SubsystemConfig cfg;
    cfg.nqn = kDiscoveryNqn;
    cfg.discovery = true;
    cfg.serial = opts.serial;
    cfg.model = opts.model;
    cfg.firmware = opts.firmware;
    cfg.worker_threads = 1;  // Identify, Get Log Page, Features: small and never blocked on storage
    cfg.allow_any_host = true;  // the log page itself shows each host only what it may use
    cfg.ctrl.mqes = 127;
    cfg.ctrl.max_io_queues = 1;  // Connect refuses every I/O queue
    cfg.ctrl.kato_grace_ms = opts.kato_grace_ms;
    auto s = Subsystem::Create(cfg);
    // The configuration above is fixed and valid.
    subsys_ = std::move(s).value();
    (void)target_->AddSubsystem(subsys_);
}

DiscoveryTarget::~DiscoveryTarget() = default;

void DiscoveryTarget::SetRecords(std::vector<DiscoveryRecord> records) {
    if (!subsys_->discovery_log()->SetRecords(std::move(records))) return;
    for (auto& c : subsys_->Controllers()) c->OnDiscoveryLogChanged();
}

uint64_t DiscoveryTarget::genctr() const { return subsys_->discovery_log()->genctr(); }

std::vector<uint8_t> DiscoveryTarget::LogPage(const std::string& hostnqn) const {
    return subsys_->discovery_log()->Page(hostnqn);
}

std::unique_ptr<FabricsQueue> DiscoveryTarget::NewQueue(const std::string& peer) { return target_->NewQueue(peer); }

void DiscoveryTarget::CheckKeepAlive() { target_->CheckKeepAlive(); }

size_t DiscoveryTarget::controller_count() const {
    size_t n = 0;
    for (auto& c : subsys_->Controllers()) n += !c->torn_down();
    return n;
}

std::unique_ptr<FabricsQueue> PortTarget::NewQueue(const std::string& peer) {
    return std::make_unique<RoutedQueue>(nvm_, discovery_, peer);
}

}  // namespace qzns::nvme
