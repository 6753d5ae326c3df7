// Controller core: registers and the CC state machine (enable, shutdown, reset), command
// dispatch onto the worker pool, and completion.
#include "hw/nvme/ctrl.h"

#include <algorithm>
#include <cstring>

#include "hw/nvme/subsystem.h"

namespace qzns::nvme {
namespace {

constexpr uint32_t kVersion = 0x00020000;  // NVMe 2.0
constexpr uint32_t kTimeoutUnits = 15;     // CAP.TO, 500 ms units
constexpr uint32_t kMpsMax = 4;            // 2^(12+4) = 64 KiB pages

int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

Controller::Controller(std::shared_ptr<Subsystem> subsys, uint16_t cntlid, const ControllerConfig& cfg)
    : subsys_(std::move(subsys)), cntlid_(cntlid), cfg_(cfg), discovery_(subsys_->config().discovery) {
    feat_.nsqa = feat_.ncqa = static_cast<uint16_t>(cfg_.max_io_queues - 1);
    last_activity_ns_ = NowNs();
    pools_ = std::make_unique<RequestPool[]>(size_t{cfg_.max_io_queues} + 1);
}

// Every request is back in its free list: each one in flight holds a reference to us.
Controller::~Controller() {
    for (size_t q = 0; q <= cfg_.max_io_queues; q++) {
        util::MutexLock lk(pools_[q].mu);
        while (Req* r = pools_[q].free) {
            pools_[q].free = r->next_free;
            delete r;
        }
    }
}

Controller::Req* Controller::NewRequest(uint16_t qid) {
    RequestPool& pool = pools_[std::min<size_t>(qid, cfg_.max_io_queues)];
    Req* r;
    {
        util::MutexLock lk(pool.mu);
        r = pool.free;
        if (r) pool.free = r->next_free;
        else pool.made++;
    }
    if (!r) return new Req();
    *r = Req{};
    return r;
}

void Controller::ReserveRequests(uint16_t qid, uint32_t n) {
    RequestPool& pool = pools_[std::min<size_t>(qid, cfg_.max_io_queues)];
    util::MutexLock lk(pool.mu);
    for (; pool.made < n; pool.made++) {
        Req* r = new Req();
        r->next_free = pool.free;
        pool.free = r;
    }
}

void Controller::FreeRequest(Req* r) {
    RequestPool& pool = pools_[std::min<size_t>(r->qid, cfg_.max_io_queues)];
    util::MutexLock lk(pool.mu);
    r->next_free = pool.free;
    pool.free = r;
}

// ---------------------------------------------------------------------------------------------
// Registers

uint32_t Controller::cc() const {
    util::MutexLock lk(mu_);
    return cc_;
}

uint32_t Controller::MpsMax() const { return discovery_ ? 0 : kMpsMax; }

uint64_t Controller::ReadRegister(uint32_t offset, unsigned size) {
    // A discovery controller: NVM command set only (the host writes CC.CSS = 0), 4 KiB pages.
    uint64_t cap = uint64_t{cfg_.mqes} | (uint64_t{1} << kCapCqrShift) | (uint64_t{kTimeoutUnits} << kCapToShift) |
                   (uint64_t{0} << kCapDstrdShift) | kCapCssNvm | (discovery_ ? 0 : kCapCssIoSets) |
                   (uint64_t{0} << kCapMpsminShift) | (uint64_t{MpsMax()} << kCapMpsmaxShift);
    util::MutexLock lk(mu_);
    uint64_t v = 0;
    switch (offset) {
    case reg::kCap: v = cap; break;
    case reg::kCap + 4: v = cap >> 32; break;
    case reg::kVs: v = discovery_ ? kVersionDiscovery : kVersion; break;
    case reg::kIntms:
    case reg::kIntmc: v = intms_.load(); break;
    case reg::kCc: v = cc_; break;
    case reg::kCsts: v = csts_.load(); break;
    case reg::kAqa: v = aqa_; break;
    case reg::kAsq: v = asq_; break;
    case reg::kAsq + 4: v = asq_ >> 32; break;
    case reg::kAcq: v = acq_; break;
    case reg::kAcq + 4: v = acq_ >> 32; break;
    default: v = 0; break;
    }
    return size == 8 ? v : (v & 0xffffffffu);
}

bool Controller::WriteRegister(uint32_t offset, unsigned size, uint64_t value) {
    if (offset == reg::kCc && size == 4) {
        OnCcWrite(static_cast<uint32_t>(value));
        return true;
    }
    util::MutexLock lk(mu_);
    bool enabled = CcEn(cc_);
    switch (offset) {
    case reg::kIntms:
        if (cfg_.transport != TransportKind::kPci) return false;
        intms_ |= static_cast<uint32_t>(value);
        return true;
    case reg::kIntmc:
        if (cfg_.transport != TransportKind::kPci) return false;
        intms_ &= ~static_cast<uint32_t>(value);
        return true;
    case reg::kAqa:
        if (cfg_.transport != TransportKind::kPci) return false;
        if (!enabled) aqa_ = static_cast<uint32_t>(value) & 0x0fff0fffu;
        return true;
    case reg::kAsq:
    case reg::kAsq + 4:
    case reg::kAcq:
    case reg::kAcq + 4: {
        if (cfg_.transport != TransportKind::kPci) return false;
        if (enabled) return true;
        uint64_t& r = offset < reg::kAcq ? asq_ : acq_;
        bool high = (offset & 7) == 4;
        if (size == 8) r = value & ~0xfffull;
        else if (high) r = (r & 0xffffffffull) | (value << 32);
        else r = (r & ~0xffffffffull) | (value & 0xfffff000u);
        return true;
    }
    case reg::kNssr:
        return true;  // NVM Subsystem Reset not supported (CAP.NSSRS = 0): ignored
    default:
        return false;
    }
}

void Controller::OnCcWrite(uint32_t value) {
    uint32_t old;
    {
        util::MutexLock lk(mu_);
        old = cc_;
        if (CcEn(old) && CcEn(value)) {
            // While enabled only SHN may change (CSS/MPS/AMS/queue entry sizes are fixed).
            cc_ = (old & ~(3u << 14)) | (value & (3u << 14));
        } else {
            cc_ = value;
        }
    }
    if (!CcEn(old) && CcEn(value)) {
        Enable(value);
    } else if (CcEn(old) && !CcEn(value)) {
        Reset();
    }
    uint32_t shn_old = CcShn(old), shn_new = CcShn(value);
    if (shn_new != 0 && shn_old == 0) StartShutdown();
    if (shn_new == 0 && shn_old != 0) {
        // The host cleared SHN (e.g. before re-enabling): shutdown status returns to normal.
        csts_ &= ~kCstsShstMask;
    }
}

void Controller::Enable(uint32_t cc) {
    bool ok = true;
    uint32_t css = CcCss(cc);
    if (css != kCcCssNvm && css != kCcCssAllIoSets && css != kCcCssAdminOnly) ok = false;
    if (CcMps(cc) > MpsMax() || CcAms(cc) != 0) ok = false;
    // Entry sizes may be left 0 by an admin-only host; otherwise they must be 64 / 16 bytes.
    if ((CcIosqes(cc) && CcIosqes(cc) != 6) || (CcIocqes(cc) && CcIocqes(cc) != 4)) ok = false;
    if (cfg_.transport == TransportKind::kFabrics && (CcIosqes(cc) != 6 || CcIocqes(cc) != 4)) ok = false;
    if (ok && cfg_.transport == TransportKind::kPci) {
        util::MutexLock lk(mu_);
        uint32_t sqs = (aqa_ & 0xfff) + 1, cqs = ((aqa_ >> 16) & 0xfff) + 1;
        if (!hooks_ || sqs < 2 || cqs < 2 || !asq_ || !acq_ || !hooks_->EnableAdminQueues(asq_, acq_, sqs, cqs))
            ok = false;
    }
    if (!ok) {
        csts_ |= kCstsCfs;
        return;
    }
    Touch();
    csts_ = (csts_.load() & ~(kCstsCfs | kCstsShstMask)) | kCstsRdy;
}

void Controller::Reset() {
    std::vector<std::function<void()>> closes;
    PciQueueHooks* hooks;
    {
        util::MutexLock lk(mu_);
        for (auto& [qid, close] : io_queues_)
            if (close) closes.push_back(close);
        io_queues_.clear();
        pci_sqs_.clear();
        pci_cqs_.clear();
        events_.clear();
        masked_log_pages_.clear();
        changed_zones_.clear();
        Features fresh;
        fresh.nsqa = fresh.ncqa = static_cast<uint16_t>(cfg_.max_io_queues - 1);
        feat_ = fresh;
        write_cache_ = true;
        hooks = hooks_;
    }
    AbortPendingAers(sc::kAbortSqDeleted);
    if (hooks) hooks->ResetQueues();
    for (auto& c : closes) c();
    csts_ &= ~(kCstsRdy | kCstsCfs);
}

void Controller::StartShutdown() {
    if (discovery_) {  // nothing to persist: shutdown completes at once
        csts_ = (csts_.load() & ~kCstsShstMask) | (kShstComplete << kCstsShstShift);
        return;
    }
    csts_ = (csts_.load() & ~kCstsShstMask) | (kShstOccurring << kCstsShstShift);
    auto self = shared_from_this();
    subsys_->pool().Post([self] {
        // Everything written so far becomes durable, zone state included; the image is marked
        // clean only when the daemon closes the backend.
        (void)self->subsys_->FlushAll();
        self->csts_ = (self->csts_.load() & ~kCstsShstMask) | (kShstComplete << kCstsShstShift);
    });
}

void Controller::SetKeepAliveWake(std::function<void()> wake) {
    util::MutexLock lk(mu_);
    kato_wake_ = std::move(wake);
}

void Controller::WakeKeepAlive() {
    std::function<void()> wake;
    {
        util::MutexLock lk(mu_);
        wake = kato_wake_;
    }
    if (wake) wake();
}

void Controller::SetPciHooks(PciQueueHooks* hooks) {
    util::MutexLock lk(mu_);
    hooks_ = hooks;
}

void Controller::SetHost(const std::string& hostnqn, const std::array<uint8_t, 16>& hostid, uint32_t kato_ms) {
    util::MutexLock lk(mu_);
    hostnqn_ = hostnqn;
    hostid_ = hostid;
    kato_ms_ = kato_ms;
}

std::string Controller::hostnqn() const {
    util::MutexLock lk(mu_);
    return hostnqn_;
}

uint16_t Controller::AttachIoQueue(uint16_t qid, uint16_t sqsize, std::function<void()> close) {
    if (!(csts_.load() & kCstsRdy)) return sc::kCommandSequenceError | sc::kDnr;
    if (qid == 0 || qid > cfg_.max_io_queues) return sc::kConnectInvalidParameters | sc::kDnr;
    if (sqsize == 0 || sqsize > cfg_.mqes) return sc::kConnectInvalidParameters | sc::kDnr;
    util::MutexLock lk(mu_);
    if (io_queues_.count(qid)) return sc::kCommandSequenceError | sc::kDnr;
    io_queues_[qid] = std::move(close);
    return sc::kSuccess;
}

void Controller::DetachIoQueue(uint16_t qid) {
    util::MutexLock lk(mu_);
    io_queues_.erase(qid);
}

void Controller::SetAdminClose(std::function<void()> close) {
    util::MutexLock lk(mu_);
    admin_close_ = std::move(close);
}

void Controller::Teardown(const char* /*why*/) {
    if (torn_down_.exchange(true)) return;
    std::vector<std::function<void()>> closes;
    {
        util::MutexLock lk(mu_);
        for (auto& [qid, close] : io_queues_)
            if (close) closes.push_back(close);
        io_queues_.clear();
        if (admin_close_) closes.push_back(admin_close_);
        admin_close_ = nullptr;
    }
    AbortPendingAers(sc::kAbortSqDeleted);
    csts_ &= ~kCstsRdy;
    for (auto& c : closes) c();
}

void Controller::Touch() { last_activity_ns_ = NowNs(); }

std::chrono::steady_clock::time_point Controller::KeepAliveDeadline() const {
    uint32_t kato = kato_ms_.load();
    if (kato == 0) return std::chrono::steady_clock::time_point::max();
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(last_activity_ns_.load())) +
           std::chrono::milliseconds(uint64_t{kato} + cfg_.kato_grace_ms);
}

bool Controller::KeepAliveExpired(std::chrono::steady_clock::time_point now) const {
    if (torn_down_.load()) return false;
    return now >= KeepAliveDeadline();
}

ControllerStats Controller::stats() const {
    ControllerStats s;
    for (size_t i = 0; i < s.in_state.size(); i++) s.in_state[i] = in_state_[i].load();
    s.completed = completed_.load();
    s.failed = failed_.load();
    return s;
}

// ---------------------------------------------------------------------------------------------
// Namespaces visible under the selected command sets

bool Controller::NamespaceActive(const Namespace& ns) const {
    uint32_t css;
    uint16_t index;
    {
        util::MutexLock lk(mu_);
        css = CcCss(cc_);
        index = feat_.iocs_index;
    }
    if (css == kCcCssAdminOnly) return false;
    if (css == kCcCssNvm) return ns.csi() == kCsiNvm;
    // CSS = 110b: the I/O Command Set Profile picks the vector (index 0: NVM + ZNS, 1: NVM).
    if (ns.csi() == kCsiZns) return index == 0;
    return true;
}

std::shared_ptr<Namespace> Controller::ActiveNamespace(uint32_t nsid) const {
    auto ns = subsys_->GetNamespace(nsid);
    if (!ns || !NamespaceActive(*ns)) return nullptr;
    return ns;
}

uint64_t Controller::MaxTransferBytes() const { return cfg_.mdts ? (uint64_t{4096} << cfg_.mdts) : ~0ull; }

uint32_t Controller::EffectiveZasl() const {
    uint64_t limit = subsys_->MinZonedAppendBytes();  // 0: no backend limit
    if (!limit) return 0;
    uint32_t zasl = 0;
    while ((uint64_t{4096} << (zasl + 1)) <= limit) zasl++;
    if (cfg_.mdts && zasl >= cfg_.mdts) return 0;  // MDTS is the tighter limit: report 0
    return zasl;
}

// ---------------------------------------------------------------------------------------------
// Data sizes

DataTransfer Controller::TransferOf(uint16_t qid, const SqeBytes& raw) const {
    Sqe c = Load<Sqe>(raw.b);
    DataTransfer t;
    auto h2c = [&](uint64_t n) { t = {DataTransfer::kHostToController, static_cast<uint32_t>(std::min<uint64_t>(n, 0xffffffffu))}; };
    auto c2h = [&](uint64_t n) { t = {DataTransfer::kControllerToHost, static_cast<uint32_t>(std::min<uint64_t>(n, 0xffffffffu))}; };
    uint32_t cdw10 = c.cdw10.get(), cdw11 = c.cdw11.get(), cdw12 = c.cdw12.get(), cdw13 = c.cdw13.get();
    if (qid == 0) {
        switch (c.opcode) {
        case opc::kIdentify: c2h(4096); break;
        case opc::kGetLogPage: c2h(((uint64_t{Bits(cdw11, 15, 0)} << 16 | Bits(cdw10, 31, 16)) + 1) * 4); break;
        case opc::kGetFeatures:
            if (Bits(cdw10, 7, 0) == fid::kTimestamp) c2h(8);
            break;
        case opc::kSetFeatures:
            if (Bits(cdw10, 7, 0) == fid::kTimestamp) h2c(8);
            break;
        default: break;
        }
        return t;
    }
    auto ns = subsys_->GetNamespace(c.nsid.get());
    uint64_t lbas = ns ? ns->lba_size() : 512;
    uint64_t nlb = Bits(cdw12, 15, 0) + 1ull;
    switch (c.opcode) {
    case opc::kRead:
    case opc::kCompare: 
        if (c.opcode == opc::kRead) c2h(nlb * lbas);
        else h2c(nlb * lbas);
        break;
    case opc::kWrite:
    case opc::kZoneAppend: h2c(nlb * lbas); break;
    case opc::kDatasetManagement: h2c((Bits(cdw10, 7, 0) + 1ull) * sizeof(DsmRange)); break;
    case opc::kZoneMgmtRecv: c2h((uint64_t{cdw12} + 1) * 4); break;
    case opc::kZoneMgmtSend:
        if (Bits(cdw13, 7, 0) == zsa::kSetZoneDescExt && ns) h2c(uint64_t{ns->zdes()} * 64);
        break;
    default: break;
    }
    return t;
}

bool Controller::CheckData(Req& r, uint64_t need) {
    if (r.data.size() >= need) return true;
    r.status = sc::kDataSglLengthInvalid | sc::kDnr;
    return false;
}

void Controller::ReturnData(Req& r, const void* src, size_t len, size_t want) {
    size_t n = std::min({len, want, r.data.size()});
    std::memcpy(r.data.data(), src, n);
    r.c2h_len = static_cast<uint32_t>(std::min(want, r.data.size()));
    if (r.c2h_len > n) std::memset(r.data.data() + n, 0, r.c2h_len - n);
}

// ---------------------------------------------------------------------------------------------
// Submission and completion

void Controller::SetState(Req& r, RequestState s) {
    in_state_[static_cast<size_t>(r.state)]--;
    r.state = s;
    in_state_[static_cast<size_t>(s)]++;
}

void Controller::Submit(uint16_t qid, const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done,
                        int32_t sqhd) {
    Req* r = NewRequest(qid);
    r->ctrl = shared_from_this();
    r->qid = qid;
    r->cmd = Load<Sqe>(sqe.b);
    r->data = data;
    r->done = done;
    r->sqhd = sqhd;
    in_state_[static_cast<size_t>(RequestState::kQueued)]++;
    Touch();
    if (torn_down_.load()) {
        r->status = sc::kAbortSqDeleted;
        Complete(r);
        return;
    }
    if (!(csts_.load() & kCstsRdy) || (csts_.load() & kCstsShstMask)) {
        // Before CC.EN (or after shutdown) only fabrics commands, handled by the transport's
        // target, are legal.
        r->status = sc::kCommandSequenceError | sc::kDnr;
        Complete(r);
        return;
    }
    Dispatch(r);
}

void Controller::Dispatch(Req* r) {
    if (r->qid == 0) {
        // Commands that need no storage are answered at once; AERs wait for an event.
        switch (r->cmd.opcode) {
        case opc::kAsyncEventRequest:
            AsyncEventRequest(r);
            return;
        case opc::kKeepAlive:
            KeepAlive(*r);
            Complete(r);
            return;
        default:
            break;
        }
    } else if (!(r->cmd.flags & 0x03)) {
        SetState(*r, RequestState::kExecuting);
        if (StartAsyncIo(*r)) return;
    }
    // The pool's task is two words (no allocation inside std::function).
    subsys_->pool().Post([r] {
        if (r->state == RequestState::kQueued) r->ctrl->SetState(*r, RequestState::kExecuting);
        r->ctrl->Execute(*r);
        r->ctrl->Complete(r);
    });
}

void Controller::Execute(Req& r) {
    if (r.cmd.flags & 0x03) {  // fused operations are not supported
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    if (r.qid != 0) {
        ExecuteIo(r);
        return;
    }
    if (discovery_) {
        ExecuteDiscoveryAdmin(r);
        return;
    }
    bool pci = cfg_.transport == TransportKind::kPci;
    switch (r.cmd.opcode) {
    case opc::kIdentify: Identify(r); break;
    case opc::kGetLogPage: GetLogPage(r); break;
    case opc::kGetFeatures: GetFeatures(r); break;
    case opc::kSetFeatures: SetFeatures(r); break;
    case opc::kAbort: Abort(r); break;
    case opc::kCreateIoCq: pci ? CreateIoCq(r) : void(r.status = sc::kInvalidOpcode | sc::kDnr); break;
    case opc::kCreateIoSq: pci ? CreateIoSq(r) : void(r.status = sc::kInvalidOpcode | sc::kDnr); break;
    case opc::kDeleteIoSq: pci ? DeleteIoSq(r) : void(r.status = sc::kInvalidOpcode | sc::kDnr); break;
    case opc::kDeleteIoCq: pci ? DeleteIoCq(r) : void(r.status = sc::kInvalidOpcode | sc::kDnr); break;
    case opc::kDoorbellBufferConfig:
        pci && cfg_.doorbell_buffer ? DoorbellBufferConfig(r) : void(r.status = sc::kInvalidOpcode | sc::kDnr);
        break;
    default: r.status = sc::kInvalidOpcode | sc::kDnr; break;
    }
}

void Controller::Complete(Req* r) {
    Cqe cqe{};
    cqe.dw0.set(r->dw0);
    cqe.dw1.set(r->dw1);
    if (r->sqhd >= 0) cqe.sqhd.set(static_cast<uint16_t>(r->sqhd));
    cqe.sqid.set(r->qid);
    cqe.cid.set(r->cmd.cid.get());
    cqe.status.set(static_cast<uint16_t>(r->status << 1));
    if (r->status != sc::kSuccess) {
        RecordError(*r);
        failed_++;
    }
    completed_++;
    in_state_[static_cast<size_t>(r->state)]--;
    Touch();
    CqeBytes out;
    std::memcpy(out.b, &cqe, sizeof(cqe));
    uint32_t c2h = r->status == sc::kSuccess || r->c2h_len ? r->c2h_len : 0;
    CompletionFn done = r->done;
    r->ns.reset();
    // The controller outlives the callback and the request's return to its free list.
    std::shared_ptr<Controller> keep = std::move(r->ctrl);
    FreeRequest(r);
    if (done) done(out, c2h);
}

}  // namespace qzns::nvme
