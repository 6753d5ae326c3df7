// Subsystem: namespaces, controllers, zone-change fan-out and the RRL/FRL timer.
#include "hw/nvme/subsystem.h"

#include <algorithm>
#include <set>

namespace qzns::nvme {

Result<std::shared_ptr<Subsystem>> Subsystem::Create(SubsystemConfig cfg) {
    if (cfg.nqn.empty() || cfg.nqn.size() > 223)
        return Status::Error(EINVAL, "the subsystem NQN must be 1 to 223 characters");
    if (cfg.ctrl.max_io_queues == 0 || cfg.ctrl.mqes < 1)
        return Status::Error(EINVAL, "a controller needs at least one I/O queue of two entries");
    if (cfg.max_nsid == 0 || cfg.max_nsid >= 0xfffffffeu) return Status::Error(EINVAL, "max_nsid out of range");
    if (cfg.discovery && cfg.nqn != kDiscoveryNqn)
        return Status::Error(EINVAL, std::string("the discovery subsystem's NQN is ") + kDiscoveryNqn);
    if (!cfg.discovery && cfg.nqn == kDiscoveryNqn)
        return Status::Error(EINVAL, std::string(kDiscoveryNqn) + " names the discovery subsystem");
    return std::shared_ptr<Subsystem>(new Subsystem(std::move(cfg)));
}

Subsystem::Subsystem(SubsystemConfig cfg)
    : cfg_(std::move(cfg)),
      discovery_log_(cfg_.discovery ? std::make_unique<DiscoveryLog>() : nullptr),
      pool_(std::make_shared<WorkerPool>(cfg_.worker_threads)),
      timer_(std::make_shared<TimerState>()) {}

Subsystem::~Subsystem() {
    {
        util::MutexLock lk(timer_->mu);
        timer_->stop = true;
    }
    timer_->cv.NotifyAll();
    if (timer_thread_.joinable()) {
        if (timer_thread_.get_id() == std::this_thread::get_id()) timer_thread_.detach();
        else timer_thread_.join();
    }
    util::MutexLock lk(mu_);
    for (auto& [nsid, ns] : namespaces_) ns->backend().SetZoneChangedCallback(nullptr);
}

uint32_t Subsystem::FreeNsidLocked(uint32_t from) const {
    for (uint32_t n = std::max<uint32_t>(from, 1); n <= cfg_.max_nsid; n++)
        if (!namespaces_.count(n)) return n;
    return 0;
}

Result<std::vector<uint32_t>> Subsystem::AddBackend(std::shared_ptr<BlockBackend> be, const NamespaceOptions& opts) {
    if (cfg_.discovery) return Status::Error(EINVAL, "the discovery subsystem has no namespaces");
    std::vector<std::shared_ptr<Namespace>> made;
    bool timers = false;
    {
        util::MutexLock lk(mu_);
        uint32_t nsid = opts.nsid ? opts.nsid : FreeNsidLocked(1);
        if (nsid == 0 || nsid > cfg_.max_nsid) return Status::Error(ENOSPC, "no free namespace ID");
        if (namespaces_.count(nsid)) return Status::Error(EEXIST, "namespace " + std::to_string(nsid) + " exists");
        bool has_seq = be->is_zoned() && be->nr_conv_zones() < be->nr_zones();
        if (has_seq) {
            QZNS_ASSIGN(auto zns, Namespace::MakeZoned(be, nsid, opts));
            made.push_back(std::move(zns));
            if (be->nr_conv_zones() && opts.export_conventional) {
                uint32_t conv_nsid = FreeNsidLocked(nsid + 1);
                if (!conv_nsid) return Status::Error(ENOSPC, "no free namespace ID for the conventional zones");
                QZNS_ASSIGN(auto conv, Namespace::MakeConventional(be, conv_nsid, opts, 0,
                                                                   uint64_t{be->nr_conv_zones()} * be->zone_size()));
                made.push_back(std::move(conv));
            }
        } else {
            uint64_t bytes = be->size() / opts.lba_size * opts.lba_size;
            QZNS_ASSIGN(auto conv, Namespace::MakeConventional(be, nsid, opts, 0, bytes));
            made.push_back(std::move(conv));
        }
        for (auto& ns : made) {
            ns->AssignIds(cfg_.nqn);
            namespaces_[ns->nsid()] = ns;
            if (ns->rrl_seconds() || ns->frl_seconds()) timers = true;
        }
        if (timers && !timer_thread_.joinable()) {
            // The thread holds only a weak reference: it never keeps the subsystem alive, and
            // if it drops the last reference it finds `stop` set in the shared state and exits.
            std::weak_ptr<Subsystem> weak = weak_from_this();
            std::shared_ptr<TimerState> ts = timer_;
            timer_thread_ = std::thread([weak, ts] {
                util::MutexLock lk(ts->mu);
                while (!ts->stop) {
                    ts->cv.WaitFor(ts->mu, std::chrono::seconds(1));
                    if (ts->stop) break;
                    lk.Unlock();
                    if (auto s = weak.lock()) s->ScanRecommendedLimits();
                    lk.Lock();
                }
            });
        }
    }
    if (be->is_zoned()) {
        BlockBackend* raw = be.get();
        std::weak_ptr<Subsystem> weak = weak_from_this();
        be->SetZoneChangedCallback([weak, raw](uint32_t zone) {
            if (auto s = weak.lock()) s->OnBackendZoneChanged(raw, zone);
        });
    }
    std::vector<uint32_t> ids;
    for (auto& ns : made) ids.push_back(ns->nsid());
    return ids;
}

std::shared_ptr<Namespace> Subsystem::GetNamespace(uint32_t nsid) const {
    util::MutexLock lk(mu_);
    auto it = namespaces_.find(nsid);
    return it == namespaces_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Namespace>> Subsystem::Namespaces() const {
    util::MutexLock lk(mu_);
    std::vector<std::shared_ptr<Namespace>> v;
    for (auto& [nsid, ns] : namespaces_) v.push_back(ns);
    return v;
}

uint64_t Subsystem::MinZonedAppendBytes() const {
    util::MutexLock lk(mu_);
    uint64_t limit = 0;
    for (auto& [nsid, ns] : namespaces_) {
        if (!ns->zoned()) continue;
        uint64_t m = ns->max_append_bytes();
        if (m && (!limit || m < limit)) limit = m;
    }
    return limit;
}

Status Subsystem::InjectZoneFault(uint32_t nsid, uint64_t zslba, ZoneState state) {
    auto ns = GetNamespace(nsid);
    if (!ns) return Status::Error(ENOENT, "no namespace " + std::to_string(nsid));
    if (!ns->backend().is_zoned()) return Status::Error(EINVAL, "namespace " + std::to_string(nsid) + " has no zones");
    auto zone = ns->BackendZoneOfLba(zslba);
    if (!zone) return Status::Error(EINVAL, "LBA beyond the end of the namespace");
    if (ns->zoned() && zslba % ns->zsze())
        return Status::Error(EINVAL, "LBA " + std::to_string(zslba) + " is not the start of a zone");
    BlkResult r = ns->backend().InjectZoneFault(*zone, state);
    if (r.ok()) return Status::Ok();
    if (r.zone_error != ZoneError::kNone)
        return Status::Error(EINVAL, std::string("zone cannot change to that state: ") + ZoneErrorName(r.zone_error));
    return r.status;
}

Status Subsystem::FlushAll() {
    std::set<BlockBackend*> seen;
    Status first;
    for (auto& ns : Namespaces()) {
        if (!seen.insert(&ns->backend()).second) continue;
        BlkResult r = ns->backend().Flush();
        if (!r.ok() && first.ok()) first = r.status;
    }
    return first;
}

void Subsystem::OnBackendZoneChanged(BlockBackend* be, uint32_t zone) {
    for (auto& ns : Namespaces()) {
        if (&ns->backend() != be || !ns->zoned()) continue;
        if (auto zslba = ns->ZslbaOfBackendZone(zone)) NotifyZoneChanged(ns->nsid(), *zslba);
    }
}

void Subsystem::NotifyZoneChanged(uint32_t nsid, uint64_t zslba) {
    for (auto& c : Controllers()) c->OnZoneChanged(nsid, zslba);
}

bool Subsystem::HostAllowed(const std::string& hostnqn) const {
    if (cfg_.allow_any_host) return true;
    return std::find(cfg_.allowed_hosts.begin(), cfg_.allowed_hosts.end(), hostnqn) != cfg_.allowed_hosts.end();
}

Result<std::shared_ptr<Controller>> Subsystem::CreateController(TransportKind transport) {
    util::MutexLock lk(mu_);
    // Drop entries of controllers nobody holds any more.
    for (auto it = controllers_.begin(); it != controllers_.end();)
        it = it->second.expired() ? controllers_.erase(it) : std::next(it);
    if (controllers_.size() >= 0xffef) return Status::Error(EBUSY, "too many controllers");
    uint16_t id = next_cntlid_;
    while (controllers_.count(id)) id = static_cast<uint16_t>(id >= 0xffef ? 1 : id + 1);
    next_cntlid_ = static_cast<uint16_t>(id >= 0xffef ? 1 : id + 1);
    ControllerConfig cc = cfg_.ctrl;
    cc.transport = transport;
    auto c = std::make_shared<Controller>(shared_from_this(), id, cc);
    controllers_[id] = c;
    return c;
}

Result<std::shared_ptr<Controller>> Subsystem::CreatePciController(PciQueueHooks* hooks) {
    QZNS_ASSIGN(auto c, CreateController(TransportKind::kPci));
    c->SetPciHooks(hooks);
    return c;
}

std::shared_ptr<Controller> Subsystem::FindController(uint16_t cntlid) const {
    util::MutexLock lk(mu_);
    auto it = controllers_.find(cntlid);
    if (it == controllers_.end()) return nullptr;
    auto c = it->second.lock();
    return c && !c->torn_down() ? c : nullptr;
}

std::vector<std::shared_ptr<Controller>> Subsystem::Controllers() const {
    util::MutexLock lk(mu_);
    std::vector<std::shared_ptr<Controller>> v;
    for (auto& [id, w] : controllers_)
        if (auto c = w.lock()) v.push_back(c);
    return v;
}

void Subsystem::RemoveController(uint16_t cntlid) {
    util::MutexLock lk(mu_);
    controllers_.erase(cntlid);
}

void Subsystem::ScanRecommendedLimits() {
    auto now = std::chrono::steady_clock::now();
    for (auto& ns : Namespaces())
        for (uint64_t zslba : ns->ScanRecommendedLimits(now)) NotifyZoneChanged(ns->nsid(), zslba);
}

}  // namespace qzns::nvme
