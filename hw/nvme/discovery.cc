// The discovery controller. A discovery association has one queue (the admin queue), so the
// queue object is the controller; the target keeps weak references to them for keep-alive and
// Discovery Log Page Change events. Commands run inline: none needs storage.
#include "hw/nvme/discovery.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>

#include "hw/nvme/spec.h"
#include "hw/nvme/status.h"
#include "util/mutex.h"

namespace qzns::nvme {

namespace {

constexpr uint16_t kMqes = 127;      // CAP.MQES, 0's based
constexpr uint32_t kCapTo = 15;      // CAP.TO: 7.5 s to become ready (500 ms units)
constexpr uint32_t kVersion = 0x00010300;  // 1.3: what nvmet's discovery controller reports
constexpr unsigned kAerl = 3;        // 4 outstanding AERs
constexpr uint16_t kKas = 1;         // keep-alive granularity 100 ms

CqeBytes MakeCqe(uint16_t cid, uint16_t status, uint32_t dw0 = 0, uint32_t dw1 = 0) {
    Cqe c{};
    c.dw0.set(dw0);
    c.dw1.set(dw1);
    c.cid.set(cid);
    c.status.set(static_cast<uint16_t>(status << 1));
    CqeBytes out;
    std::memcpy(out.b, &c, sizeof(c));
    return out;
}

int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

template <size_t N>
void CopyString(char (&dst)[N], const std::string& s) {
    std::memset(dst, 0, N);
    std::memcpy(dst, s.data(), std::min(s.size(), N - 1));
}

bool SameRecords(const std::vector<DiscoveryRecord>& a, const std::vector<DiscoveryRecord>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++) {
        if (a[i].subnqn != b[i].subnqn || a[i].traddr != b[i].traddr || a[i].trsvcid != b[i].trsvcid ||
            a[i].portid != b[i].portid || a[i].allowed_hosts != b[i].allowed_hosts)
            return false;
    }
    return true;
}

bool Visible(const DiscoveryRecord& r, const std::string& hostnqn) {
    return r.allowed_hosts.empty() ||
           std::find(r.allowed_hosts.begin(), r.allowed_hosts.end(), hostnqn) != r.allowed_hosts.end();
}

}  // namespace

// One discovery controller: its registers, keep-alive clock, AERs and event mask.
class DiscoveryController {
public:
    DiscoveryController(uint16_t cntlid, std::string hostnqn, uint32_t kato_ms)
        : cntlid_(cntlid), hostnqn_(std::move(hostnqn)), kato_ms_(kato_ms) {
        Touch();
    }

    uint16_t cntlid() const { return cntlid_; }
    const std::string& hostnqn() const { return hostnqn_; }
    void Touch() { last_activity_ns_.store(NowNs()); }

    std::chrono::steady_clock::time_point KeepAliveDeadline(uint32_t grace_ms) const {
        uint32_t kato = kato_ms_.load();
        if (kato == 0) return std::chrono::steady_clock::time_point::max();
        return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(last_activity_ns_.load())) +
               std::chrono::milliseconds(uint64_t{kato} + grace_ms);
    }

    uint64_t ReadProperty(uint32_t ofst) const {
        util::MutexLock lk(mu_);
        switch (ofst) {
        case reg::kCap:
            // CQR; CSS: NVM command set only, so the host writes CC.CSS = 0; MPSMIN/MPSMAX 0.
            return uint64_t{kMqes} | (1ull << kCapCqrShift) | (uint64_t{kCapTo} << kCapToShift) | kCapCssNvm;
        case reg::kVs: return kVersion;
        case reg::kCc: return cc_;
        case reg::kCsts: return csts_;
        }
        return 0;
    }

    // Property Set CC. Returns the AERs a reset aborted (completed by the caller, unlocked).
    std::deque<std::pair<uint16_t, SqhdCompletion>> WriteCc(uint32_t value) {
        std::deque<std::pair<uint16_t, SqhdCompletion>> aborted;
        util::MutexLock lk(mu_);
        uint32_t old = cc_;
        cc_ = value;
        if (CcEn(value) && !CcEn(old)) {
            // The checks nvmet makes before it sets RDY; a mismatch is Controller Fatal Status.
            bool ok = CcMps(value) == 0 && CcAms(value) == 0 && CcIosqes(value) == 6 && CcIocqes(value) == 4 &&
                      (CcCss(value) == kCcCssNvm || CcCss(value) == kCcCssAllIoSets);
            csts_ = ok ? kCstsRdy : kCstsCfs;
        } else if (!CcEn(value) && CcEn(old)) {
            csts_ = 0;  // controller reset: outstanding AERs end with it
            aborted.swap(aers_);
            masked_ = pending_ = false;
            aec_ = 0;
        }
        if (CcShn(value) != 0 && CcShn(old) == 0) {
            // Nothing to persist: shutdown completes at once.
            csts_ = (csts_ & ~kCstsShstMask) | (kShstComplete << kCstsShstShift);
        } else if (CcShn(value) == 0) {
            csts_ &= ~kCstsShstMask;
        }
        return aborted;
    }

    bool ready() const {
        util::MutexLock lk(mu_);
        return (csts_ & kCstsRdy) && !torn_down_;
    }

    // ---- asynchronous events ----
    // Returns false when the AER limit is exceeded.
    bool AddAer(uint16_t cid, SqhdCompletion done) {
        std::pair<uint16_t, SqhdCompletion> deliver;
        {
            util::MutexLock lk(mu_);
            if (aers_.size() > kAerl) return false;
            if (!pending_) {
                aers_.emplace_back(cid, std::move(done));
                return true;
            }
            pending_ = false;
            deliver = {cid, std::move(done)};
        }
        deliver.second(MakeCqe(deliver.first, sc::kSuccess, EventDw0()), 0);
        return true;
    }

    void PostLogChange() {
        std::pair<uint16_t, SqhdCompletion> deliver;
        {
            util::MutexLock lk(mu_);
            if (torn_down_ || !(aec_ & disc::kAecDiscoveryLogChange) || !(csts_ & kCstsRdy) || masked_) return;
            // One outstanding notice until the host reads the log page with RAE clear.
            masked_ = true;
            if (aers_.empty()) {
                pending_ = true;
                return;
            }
            deliver = std::move(aers_.front());
            aers_.pop_front();
        }
        deliver.second(MakeCqe(deliver.first, sc::kSuccess, EventDw0()), 0);
    }

    void ClearEventMask() {
        util::MutexLock lk(mu_);
        masked_ = pending_ = false;
    }

    void SetAec(uint32_t v) {
        util::MutexLock lk(mu_);
        aec_ = v & disc::kAecDiscoveryLogChange;
    }
    uint32_t aec() const {
        util::MutexLock lk(mu_);
        return aec_;
    }
    void SetKato(uint32_t ms) { kato_ms_.store(ms); }
    uint32_t kato() const { return kato_ms_.load(); }

    void SetClose(std::function<void()> close) {
        util::MutexLock lk(mu_);
        close_ = std::move(close);
    }

    // The association is over: pending AERs end aborted, the transport is asked to close (when
    // `ask_close`), later commands fail.
    void Teardown(bool ask_close) {
        std::deque<std::pair<uint16_t, SqhdCompletion>> aers;
        std::function<void()> close;
        {
            util::MutexLock lk(mu_);
            if (torn_down_) return;
            torn_down_ = true;
            aers.swap(aers_);
            if (ask_close) close = close_;
            close_ = nullptr;
        }
        for (auto& [cid, done] : aers) done(MakeCqe(cid, sc::kAbortSqDeleted), 0);
        if (close) close();
    }
    bool torn_down() const {
        util::MutexLock lk(mu_);
        return torn_down_;
    }

private:
    static uint32_t EventDw0() {
        return uint32_t{kAenTypeNotice} | (uint32_t{disc::kAenInfoDiscoveryLogChange} << 8) |
               (uint32_t{kLidDiscovery} << 16);
    }

    const uint16_t cntlid_;
    const std::string hostnqn_;
    std::atomic<uint32_t> kato_ms_;
    std::atomic<int64_t> last_activity_ns_{0};
    mutable util::Mutex mu_;
    uint32_t cc_ GUARDED_BY(mu_) = 0;
    uint32_t csts_ GUARDED_BY(mu_) = 0;
    uint32_t aec_ GUARDED_BY(mu_) = 0;
    bool masked_ GUARDED_BY(mu_) = false;   // a notice is outstanding
    bool pending_ GUARDED_BY(mu_) = false;  // ... and waits for an AER
    bool torn_down_ GUARDED_BY(mu_) = false;
    std::deque<std::pair<uint16_t, SqhdCompletion>> aers_ GUARDED_BY(mu_);
    std::function<void()> close_ GUARDED_BY(mu_);
};

struct DiscoveryTarget::Core {
    DiscoveryOptions opts;
    mutable util::Mutex mu;  // with cv: wakes the keep-alive thread (new controller, stop)
    util::CondVar cv;
    bool stop GUARDED_BY(mu) = false;
    std::vector<DiscoveryRecord> records GUARDED_BY(mu);
    uint64_t genctr GUARDED_BY(mu) = 0;
    std::map<uint16_t, std::weak_ptr<DiscoveryController>> controllers GUARDED_BY(mu);
    uint16_t next_cntlid GUARDED_BY(mu) = 1;

    std::vector<std::shared_ptr<DiscoveryController>> Live() const {
        std::vector<std::shared_ptr<DiscoveryController>> out;
        util::MutexLock lk(mu);
        for (auto& [id, w] : controllers)
            if (auto c = w.lock()) out.push_back(std::move(c));
        return out;
    }

    std::vector<uint8_t> LogPage(const std::string& hostnqn) const {
        util::MutexLock lk(mu);
        std::vector<const DiscoveryRecord*> visible;
        for (const auto& r : records)
            if (Visible(r, hostnqn)) visible.push_back(&r);
        std::vector<uint8_t> page(sizeof(DiscoveryLogHeader) + visible.size() * sizeof(DiscoveryLogEntry), 0);
        DiscoveryLogHeader h{};
        h.genctr.set(genctr);
        h.numrec.set(visible.size());
        h.recfmt.set(0);
        std::memcpy(page.data(), &h, sizeof(h));
        for (size_t i = 0; i < visible.size(); i++) {
            const DiscoveryRecord& r = *visible[i];
            DiscoveryLogEntry e{};
            e.trtype = disc::kTrtypeTcp;
            e.adrfam = r.traddr.find(':') != std::string::npos ? disc::kAdrfamIpv6 : disc::kAdrfamIpv4;
            e.subtype = disc::kSubtypeNvm;
            e.treq = disc::kTreqSecureChannelNotRequired;
            e.portid.set(r.portid);
            e.cntlid.set(0xffff);
            e.asqsz.set(disc::kAsqsz);
            e.eflags.set(0);
            CopyString(e.trsvcid, std::to_string(r.trsvcid));
            CopyString(e.subnqn, r.subnqn);
            CopyString(e.traddr, r.traddr);
            e.tsas[0] = disc::kSectypeNone;
            std::memcpy(page.data() + sizeof(DiscoveryLogHeader) + i * sizeof(DiscoveryLogEntry), &e, sizeof(e));
        }
        return page;
    }
};

namespace {

class DiscoveryQueue final : public FabricsQueue {
public:
    DiscoveryQueue(std::shared_ptr<DiscoveryTarget::Core> core) : core_(std::move(core)) {}
    ~DiscoveryQueue() override { Disconnect(); }

    void Submit(const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done) override;
    void Disconnect() override;
    void SetCloseRequest(std::function<void()> close) override {
        util::MutexLock lk(mu_);
        close_ = std::move(close);
        if (ctrl_) ctrl_->SetClose(close_);
    }

private:
    void Connect(const SqeBytes& sqe, std::span<uint8_t> data, const CompletionFn& done);
    void Property(DiscoveryController& c, const SqeBytes& sqe, const SqhdCompletion& done);
    void Identify(DiscoveryController& c, const Sqe& cmd, std::span<uint8_t> data, const SqhdCompletion& done);
    void GetLogPage(DiscoveryController& c, const Sqe& cmd, std::span<uint8_t> data, const SqhdCompletion& done);
    void Features(DiscoveryController& c, const Sqe& cmd, const SqhdCompletion& done);

    // `sqsize` is sqsize_, read by the caller under mu_.
    SqhdCompletion WithSqhd(CompletionFn done, uint16_t sqsize) { return {done, NextSqhd(sqhd_, sqsize)}; }

    std::shared_ptr<DiscoveryTarget::Core> core_;
    util::Mutex mu_;  // the transport's close request and the controller Connect made
    std::function<void()> close_ GUARDED_BY(mu_);
    std::shared_ptr<DiscoveryController> ctrl_ GUARDED_BY(mu_);
    uint16_t sqsize_ GUARDED_BY(mu_) = 0;
    std::atomic<uint32_t> sqhd_{0};
};

void DiscoveryQueue::Submit(const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done) {
    Sqe cmd = Load<Sqe>(sqe.b);
    const uint16_t cid = cmd.cid.get();
    std::shared_ptr<DiscoveryController> ctrl;
    uint16_t sqsize;
    {
        util::MutexLock lk(mu_);
        ctrl = ctrl_;
        sqsize = sqsize_;
    }
    if (cmd.opcode == opc::kFabrics) {
        uint8_t fct = sqe.b[4];
        if (fct == fctype::kConnect) {
            if (ctrl) return done(MakeCqe(cid, sc::kCommandSequenceError | sc::kDnr), 0);
            return Connect(sqe, data, done);
        }
        if (!ctrl || ctrl->torn_down()) return done(MakeCqe(cid, sc::kCommandSequenceError | sc::kDnr), 0);
        ctrl->Touch();
        if (fct == fctype::kPropertyGet || fct == fctype::kPropertySet) return Property(*ctrl, sqe, WithSqhd(done, sqsize));
        // Disconnect names an I/O queue, and a discovery controller has none.
        return WithSqhd(done, sqsize)(MakeCqe(cid, (fct == fctype::kDisconnect ? sc::kInvalidField : sc::kInvalidOpcode) |
                                               sc::kDnr), 0);
    }
    if (!ctrl || !ctrl->ready()) return done(MakeCqe(cid, sc::kCommandSequenceError | sc::kDnr), 0);
    ctrl->Touch();
    SqhdCompletion d = WithSqhd(std::move(done), sqsize);
    switch (cmd.opcode) {
    case opc::kIdentify: return Identify(*ctrl, cmd, data, d);
    case opc::kGetLogPage: return GetLogPage(*ctrl, cmd, data, d);
    case opc::kSetFeatures:
    case opc::kGetFeatures: return Features(*ctrl, cmd, d);
    case opc::kKeepAlive: return d(MakeCqe(cid, sc::kSuccess), 0);
    case opc::kAsyncEventRequest:
        if (!ctrl->AddAer(cid, d)) d(MakeCqe(cid, sc::kAsyncEventRequestLimitExceeded | sc::kDnr), 0);
        return;
    default: return d(MakeCqe(cid, sc::kInvalidOpcode | sc::kDnr), 0);
    }
}

void DiscoveryQueue::Connect(const SqeBytes& sqe, std::span<uint8_t> data, const CompletionFn& done) {
    ConnectCmd cmd = Load<ConnectCmd>(sqe.b);
    const uint16_t cid = cmd.cid.get();
    auto fail = [&](uint16_t st, uint32_t dw0 = 0) { done(MakeCqe(cid, st, dw0), 0); };
    if (data.size() < sizeof(ConnectData)) return fail(sc::kDataSglLengthInvalid | sc::kDnr);
    ConnectData cd = Load<ConnectData>(data.data());
    if (cmd.recfmt.get() != 0) return fail(sc::kConnectIncompatibleFormat | sc::kDnr);
    std::string subnqn(cd.subnqn, strnlen(cd.subnqn, sizeof(cd.subnqn)));
    std::string hostnqn(cd.hostnqn, strnlen(cd.hostnqn, sizeof(cd.hostnqn)));
    if (subnqn != kDiscoveryNqn)
        return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoData(offsetof(ConnectData, subnqn)));
    // A discovery controller has only the admin queue, in the dynamic controller model.
    if (cmd.qid.get() != 0)
        return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoSqe(offsetof(ConnectCmd, qid)));
    if (cd.cntlid.get() != 0xffff)
        return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoData(offsetof(ConnectData, cntlid)));
    const uint16_t sqsize = cmd.sqsize.get();
    if (sqsize == 0 || sqsize > kMqes)
        return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoSqe(offsetof(ConnectCmd, sqsize)));
    std::shared_ptr<DiscoveryController> ctrl;
    {
        util::MutexLock lk(core_->mu);
        // CNTLIDs 1..FFEFh; skip ones still held by live controllers.
        for (int tries = 0; tries < 0xffef && !ctrl; tries++) {
            uint16_t id = core_->next_cntlid;
            core_->next_cntlid = static_cast<uint16_t>(id >= 0xffef ? 1 : id + 1);
            auto it = core_->controllers.find(id);
            if (it != core_->controllers.end() && !it->second.expired()) continue;
            ctrl = std::make_shared<DiscoveryController>(id, hostnqn, cmd.kato.get());
            core_->controllers[id] = ctrl;
        }
        core_->cv.NotifyAll();  // the keep-alive thread picks up the new deadline
    }
    if (!ctrl) return fail(sc::kConnectControllerBusy);
    {
        util::MutexLock lk(mu_);
        ctrl_ = ctrl;
        sqsize_ = sqsize;
        ctrl->SetClose(close_);
    }
    WithSqhd(done, sqsize)(MakeCqe(cid, sc::kSuccess, ctrl->cntlid()), 0);
}

void DiscoveryQueue::Property(DiscoveryController& c, const SqeBytes& sqe, const SqhdCompletion& done) {
    PropertyCmd p = Load<PropertyCmd>(sqe.b);
    const uint16_t cid = p.cid.get();
    const unsigned size = (p.attrib & 0x7) == 1 ? 8 : (p.attrib & 0x7) == 0 ? 4 : 0;
    const uint32_t ofst = p.ofst.get();
    if (size == 0) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    if (p.fctype == fctype::kPropertyGet) {
        bool ok = (ofst == reg::kCap && size == 8) ||
                  (size == 4 && (ofst == reg::kCap || ofst == reg::kCap + 4 || ofst == reg::kVs || ofst == reg::kCc ||
                                 ofst == reg::kCsts));
        if (!ok) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
        uint64_t v = c.ReadProperty(ofst == reg::kCap + 4 ? reg::kCap : ofst);
        if (ofst == reg::kCap + 4) v >>= 32;
        else if (size == 4) v &= 0xffffffffu;
        return done(MakeCqe(cid, sc::kSuccess, static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)), 0);
    }
    if (size != 4 || ofst != reg::kCc) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    auto aborted = c.WriteCc(static_cast<uint32_t>(p.value.get()));
    done(MakeCqe(cid, sc::kSuccess), 0);
    for (auto& [acid, adone] : aborted) adone(MakeCqe(acid, sc::kAbortSqDeleted), 0);
}

void DiscoveryQueue::Identify(DiscoveryController& c, const Sqe& cmd, std::span<uint8_t> data,
                              const SqhdCompletion& done) {
    const uint16_t cid = cmd.cid.get();
    if (Bits(cmd.cdw10.get(), 7, 0) != cns::kController) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    if (data.size() < sizeof(IdCtrl)) return done(MakeCqe(cid, sc::kDataSglLengthInvalid | sc::kDnr), 0);
    const DiscoveryOptions& o = core_->opts;
    IdCtrl id{};
    SetAscii(id.sn, o.serial.c_str(), ' ');
    SetAscii(id.mn, o.model.c_str(), ' ');
    SetAscii(id.fr, o.firmware.c_str(), ' ');
    id.mdts = 0;  // no limit: the log page grows with the number of exports
    id.cntlid.set(c.cntlid());
    id.ver.set(kVersion);
    id.oaes.set(disc::kAecDiscoveryLogChange);
    id.cntrltype = 2;  // discovery controller
    id.aerl = kAerl;
    id.lpa = kLpaExtendedData;  // NUMDU and LPO: libnvme reads the log page in pieces
    id.kas.set(kKas);
    id.sqes = 0x66;
    id.cqes = 0x44;
    id.maxcmd.set(kMqes + 1);
    id.sgls.set(kSglsSupported | kSglsOffset);
    CopyString(id.subnqn, kDiscoveryNqn);
    // IOCCSZ / IORCSZ stay 0: no I/O queues (Linux skips its capsule-size checks for discovery).
    id.msdbd = 1;
    std::memcpy(data.data(), &id, sizeof(id));
    done(MakeCqe(cid, sc::kSuccess), sizeof(id));
}

void DiscoveryQueue::GetLogPage(DiscoveryController& c, const Sqe& cmd, std::span<uint8_t> data,
                                const SqhdCompletion& done) {
    const uint16_t cid = cmd.cid.get();
    const uint32_t cdw10 = cmd.cdw10.get();
    const uint8_t lid = static_cast<uint8_t>(Bits(cdw10, 7, 0));
    const bool rae = Bit(cdw10, 15);
    const uint64_t numd = ((uint64_t{cmd.cdw11.get() & 0xffff} << 16) | Bits(cdw10, 31, 16)) + 1;
    const uint64_t len = numd * 4;
    const uint64_t offset = uint64_t{cmd.cdw12.get()} | (uint64_t{cmd.cdw13.get()} << 32);
    if (lid != kLidDiscovery) return done(MakeCqe(cid, sc::kInvalidLogPage | sc::kDnr), 0);
    if (offset & 3) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    if (data.size() < len) return done(MakeCqe(cid, sc::kDataSglLengthInvalid | sc::kDnr), 0);
    std::vector<uint8_t> page = core_->LogPage(c.hostnqn());
    if (offset > page.size()) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    // Bytes past the end of the page read as zeros (the buffer arrives zeroed).
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, page.size() - offset));
    std::memcpy(data.data(), page.data() + offset, n);
    if (!rae) c.ClearEventMask();
    done(MakeCqe(cid, sc::kSuccess), static_cast<uint32_t>(len));
}

void DiscoveryQueue::Features(DiscoveryController& c, const Sqe& cmd, const SqhdCompletion& done) {
    const uint16_t cid = cmd.cid.get();
    const uint8_t fid_ = static_cast<uint8_t>(Bits(cmd.cdw10.get(), 7, 0));
    const bool set = cmd.opcode == opc::kSetFeatures;
    if (set && Bit(cmd.cdw10.get(), 31)) return done(MakeCqe(cid, sc::kFeatureNotSaveable | sc::kDnr), 0);
    switch (fid_) {
    case fid::kAsyncEventConfig:
        if (set) c.SetAec(cmd.cdw11.get());
        return done(MakeCqe(cid, sc::kSuccess, c.aec()), 0);
    case fid::kKeepAliveTimer:
        if (set) c.SetKato(cmd.cdw11.get());
        return done(MakeCqe(cid, sc::kSuccess, c.kato()), 0);
    default: return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    }
}

void DiscoveryQueue::Disconnect() {
    std::shared_ptr<DiscoveryController> ctrl;
    {
        util::MutexLock lk(mu_);
        ctrl = std::move(ctrl_);
        ctrl_ = nullptr;
    }
    if (!ctrl) return;
    ctrl->Teardown(false);
    util::MutexLock lk(core_->mu);
    auto it = core_->controllers.find(ctrl->cntlid());
    if (it != core_->controllers.end() && it->second.lock() == ctrl) core_->controllers.erase(it);
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

DiscoveryTarget::DiscoveryTarget(DiscoveryOptions opts) : core_(std::make_shared<Core>()) {
    core_->opts = std::move(opts);
    ka_thread_ = std::thread([this] { KeepAliveLoop(); });
}

DiscoveryTarget::~DiscoveryTarget() {
    {
        util::MutexLock lk(core_->mu);
        core_->stop = true;
    }
    core_->cv.NotifyAll();
    ka_thread_.join();
}

void DiscoveryTarget::SetRecords(std::vector<DiscoveryRecord> records) {
    {
        util::MutexLock lk(core_->mu);
        if (SameRecords(core_->records, records)) return;
        core_->records = std::move(records);
        core_->genctr++;
    }
    for (auto& c : core_->Live()) c->PostLogChange();
}

uint64_t DiscoveryTarget::genctr() const {
    util::MutexLock lk(core_->mu);
    return core_->genctr;
}

std::vector<uint8_t> DiscoveryTarget::LogPage(const std::string& hostnqn) const { return core_->LogPage(hostnqn); }

std::unique_ptr<FabricsQueue> DiscoveryTarget::NewQueue(const std::string&) {
    return std::make_unique<DiscoveryQueue>(core_);
}

size_t DiscoveryTarget::controller_count() const { return core_->Live().size(); }

void DiscoveryTarget::CheckKeepAlive() {
    auto now = std::chrono::steady_clock::now();
    for (auto& c : core_->Live()) {
        if (c->torn_down() || now < c->KeepAliveDeadline(core_->opts.kato_grace_ms)) continue;
        c->Teardown(true);
        util::MutexLock lk(core_->mu);
        core_->controllers.erase(c->cntlid());
    }
}

void DiscoveryTarget::KeepAliveLoop() {
    util::MutexLock lk(core_->mu);
    while (!core_->stop) {
        // Sleep until the earliest keep-alive deadline (at most a second, so Set Features KATO
        // changes are picked up); no wake-ups at all while no controller exists.
        auto now = std::chrono::steady_clock::now();
        auto next = core_->controllers.empty() ? std::chrono::steady_clock::time_point::max()
                                               : now + std::chrono::seconds(1);
        for (auto& [id, w] : core_->controllers)
            if (auto c = w.lock()) next = std::min(next, c->KeepAliveDeadline(core_->opts.kato_grace_ms));
        if (next == std::chrono::steady_clock::time_point::max())
            core_->cv.Wait(core_->mu);
        else
            core_->cv.WaitUntil(core_->mu, next);
        if (core_->stop) break;
        lk.Unlock();
        CheckKeepAlive();
        lk.Lock();
    }
}

std::unique_ptr<FabricsQueue> PortTarget::NewQueue(const std::string& peer) {
    return std::make_unique<RoutedQueue>(nvm_, discovery_, peer);
}

}  // namespace qzns::nvme
