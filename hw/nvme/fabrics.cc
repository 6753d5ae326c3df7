// NvmeTarget: the FabricsTarget implementation. A queue is a transport connection; its first
// command must be Fabrics Connect, which binds it to a subsystem and controller. Property
// Get/Set reach the controller's registers; Disconnect ends an I/O queue. A thread tears down
// controllers whose keep-alive timer expired.
#include <algorithm>
#include <cstring>

#include "hw/nvme/subsystem.h"
#include "util/mutex.h"

namespace qzns::nvme {

struct NvmeTarget::Core {
    util::Mutex mu;  // with cv: wakes the keep-alive thread (new subsystem, stop)
    util::CondVar cv;
    bool stop GUARDED_BY(mu) = false;
    std::map<std::string, std::shared_ptr<Subsystem>> subsystems GUARDED_BY(mu);
};

namespace {

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

std::string NqnField(const char* f, size_t n) { return std::string(f, strnlen(f, n)); }

class FabricsQueueImpl final : public FabricsQueue {
public:
    FabricsQueueImpl(std::shared_ptr<NvmeTarget::Core> core, std::string peer)
        : core_(std::move(core)), peer_(std::move(peer)), state_(std::make_shared<Shared>()) {}
    ~FabricsQueueImpl() override { Disconnect(); }

    void Submit(const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done) override;
    void Disconnect() override;
    void SetCloseRequest(std::function<void()> close) override {
        util::MutexLock lk(state_->mu);
        state_->close = std::move(close);
    }

private:
    // What the controller's close request reaches; outlives this object if the controller
    // still holds the callback.
    struct Shared {
        util::Mutex mu;
        std::function<void()> close GUARDED_BY(mu);
        bool closed GUARDED_BY(mu) = false;
    };
    void Connect(const SqeBytes& sqe, std::span<uint8_t> data, const CompletionFn& done);
    void Property(const FabricsCmd& cmd, const SqeBytes& sqe, const SqhdCompletion& done);
    std::function<void()> CloseHook() {
        std::weak_ptr<Shared> w = state_;
        return [w] {
            auto s = w.lock();
            if (!s) return;
            std::function<void()> c;
            {
                util::MutexLock lk(s->mu);
                if (s->closed) return;
                s->closed = true;
                c = s->close;
            }
            if (c) c();
        };
    }
    // `sqsize` is sqsize_, read by the caller under mu_. (The TCP host ignores SQHD, but it
    // is what the field means.)
    SqhdCompletion WithSqhd(CompletionFn done, uint16_t sqsize) { return {done, NextSqhd(sqhd_, sqsize)}; }

    std::shared_ptr<NvmeTarget::Core> core_;
    std::string peer_;
    std::shared_ptr<Shared> state_;
    util::Mutex mu_;  // the binding made by Connect
    std::shared_ptr<Subsystem> subsys_ GUARDED_BY(mu_);
    std::shared_ptr<Controller> ctrl_ GUARDED_BY(mu_);
    uint16_t qid_ GUARDED_BY(mu_) = 0;
    uint16_t sqsize_ GUARDED_BY(mu_) = 0;
    std::atomic<uint32_t> sqhd_{0};
    bool connected_ GUARDED_BY(mu_) = false;
};

void FabricsQueueImpl::Submit(const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done) {
    FabricsCmd cmd = Load<FabricsCmd>(sqe.b);
    uint16_t cid = cmd.cid.get();
    std::shared_ptr<Controller> ctrl;
    bool connected;
    uint16_t qid, sqsize;
    {
        util::MutexLock lk(mu_);
        ctrl = ctrl_;
        connected = connected_;
        qid = qid_;
        sqsize = sqsize_;
    }
    if (cmd.opcode == opc::kFabrics) {
        switch (cmd.fctype) {
        case fctype::kConnect:
            if (connected) {
                done(MakeCqe(cid, sc::kCommandSequenceError | sc::kDnr), 0);
                return;
            }
            Connect(sqe, data, done);
            return;
        case fctype::kPropertyGet:
        case fctype::kPropertySet:
            if (!connected) break;
            if (qid != 0) {
                done(MakeCqe(cid, sc::kInvalidOpcode | sc::kDnr), 0);
                return;
            }
            ctrl->Touch();  // fabrics commands count as host activity for keep-alive
            Property(cmd, sqe, WithSqhd(done, sqsize));
            return;
        case fctype::kDisconnect:
            if (!connected) break;
            if (qid == 0) {
                // Disconnect names an I/O queue; the admin queue ends with its connection.
                done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
                return;
            }
            WithSqhd(done, sqsize)(MakeCqe(cid, sc::kSuccess), 0);
            Disconnect();
            return;
        default:
            if (!connected) break;
            done(MakeCqe(cid, sc::kInvalidOpcode | sc::kDnr), 0);
            return;
        }
        done(MakeCqe(cid, sc::kCommandSequenceError | sc::kDnr), 0);
        return;
    }
    if (!connected || !ctrl) {
        done(MakeCqe(cid, sc::kCommandSequenceError | sc::kDnr), 0);
        return;
    }
    ctrl->Submit(qid, sqe, data, done, NextSqhd(sqhd_, sqsize));
}

void FabricsQueueImpl::Connect(const SqeBytes& sqe, std::span<uint8_t> data, const CompletionFn& done) {
    ConnectCmd cmd = Load<ConnectCmd>(sqe.b);
    uint16_t cid = cmd.cid.get();
    auto fail = [&](uint16_t st, uint32_t dw0 = 0) { done(MakeCqe(cid, st, dw0), 0); };
    if (data.size() < sizeof(ConnectData)) return fail(sc::kDataSglLengthInvalid | sc::kDnr);
    ConnectData cd = Load<ConnectData>(data.data());
    if (cmd.recfmt.get() != 0) return fail(sc::kConnectIncompatibleFormat | sc::kDnr);
    std::string subnqn = NqnField(cd.subnqn, sizeof(cd.subnqn));
    std::string hostnqn = NqnField(cd.hostnqn, sizeof(cd.hostnqn));
    std::shared_ptr<Subsystem> subsys;
    {
        util::MutexLock lk(core_->mu);
        auto it = core_->subsystems.find(subnqn);
        if (it != core_->subsystems.end()) subsys = it->second;
    }
    if (!subsys)
        return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoData(offsetof(ConnectData, subnqn)));
    if (!subsys->HostAllowed(hostnqn))
        return fail(sc::kConnectInvalidHost | sc::kDnr, ConnectIpoData(offsetof(ConnectData, hostnqn)));
    uint16_t qid = cmd.qid.get(), sqsize = cmd.sqsize.get();
    // A discovery controller has only the admin queue.
    if (subsys->config().discovery && qid != 0)
        return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoSqe(offsetof(ConnectCmd, qid)));
    const ControllerConfig& limits = subsys->config().ctrl;
    if (sqsize == 0 || sqsize > limits.mqes)
        return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoSqe(offsetof(ConnectCmd, sqsize)));
    std::shared_ptr<Controller> ctrl;
    if (qid == 0) {
        if (cd.cntlid.get() != 0xffff)  // only the dynamic controller model
            return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoData(offsetof(ConnectData, cntlid)));
        auto made = subsys->CreateController(TransportKind::kFabrics);
        if (!made.ok()) return fail(sc::kConnectControllerBusy);
        ctrl = *made;
        std::array<uint8_t, 16> hostid;
        std::memcpy(hostid.data(), cd.hostid, 16);
        ctrl->SetHost(hostnqn, hostid, cmd.kato.get());
        ctrl->SetAdminClose(CloseHook());
        std::weak_ptr<NvmeTarget::Core> w = core_;
        auto wake = [w] {  // the keep-alive thread picks up a new deadline
            if (auto core = w.lock()) {
                util::MutexLock lk(core->mu);
                core->cv.NotifyAll();
            }
        };
        ctrl->SetKeepAliveWake(wake);
        wake();
    } else {
        ctrl = subsys->FindController(cd.cntlid.get());
        if (!ctrl)
            return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoData(offsetof(ConnectData, cntlid)));
        if (ctrl->hostnqn() != hostnqn)
            return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoData(offsetof(ConnectData, hostnqn)));
        if (qid > limits.max_io_queues)
            return fail(sc::kConnectInvalidParameters | sc::kDnr, ConnectIpoSqe(offsetof(ConnectCmd, qid)));
        uint16_t st = ctrl->AttachIoQueue(qid, sqsize, CloseHook());
        if (st != sc::kSuccess) {
            uint32_t dw0 = StatusNoDnr(st) == sc::kConnectInvalidParameters ? ConnectIpoSqe(offsetof(ConnectCmd, qid)) : 0;
            return fail(st, dw0);
        }
    }
    {
        util::MutexLock lk(mu_);
        subsys_ = subsys;
        ctrl_ = ctrl;
        qid_ = qid;
        sqsize_ = sqsize;
        connected_ = true;
    }
    // DW0: CNTLID in bits 15:0; AUTHREQ (bits 17:16) stays 0: no in-band authentication.
    WithSqhd(done, sqsize)(MakeCqe(cid, sc::kSuccess, ctrl->cntlid()), 0);
}

void FabricsQueueImpl::Property(const FabricsCmd& cmd, const SqeBytes& sqe, const SqhdCompletion& done) {
    PropertyCmd p = Load<PropertyCmd>(sqe.b);
    uint16_t cid = cmd.cid.get();
    unsigned size = (p.attrib & 0x7) == 1 ? 8 : (p.attrib & 0x7) == 0 ? 4 : 0;
    uint32_t ofst = p.ofst.get();
    std::shared_ptr<Controller> ctrl;
    {
        util::MutexLock lk(mu_);
        ctrl = ctrl_;
    }
    if (size == 0) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    if (cmd.fctype == fctype::kPropertyGet) {
        // CAP is the only 8-byte property; VS, CC, CSTS are 4 bytes (NVMe-oF property map).
        bool ok = (ofst == reg::kCap && size == 8) ||
                  (size == 4 && (ofst == reg::kVs || ofst == reg::kCc || ofst == reg::kCsts || ofst == reg::kCap ||
                                 ofst == reg::kCap + 4));
        if (!ok) return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
        uint64_t v = ctrl->ReadRegister(ofst, size);
        return done(MakeCqe(cid, sc::kSuccess, static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)), 0);
    }
    if (size != 4 || (ofst != reg::kCc && ofst != reg::kNssr) || !ctrl->WriteRegister(ofst, 4, p.value.get()))
        return done(MakeCqe(cid, sc::kInvalidField | sc::kDnr), 0);
    done(MakeCqe(cid, sc::kSuccess), 0);
}

void FabricsQueueImpl::Disconnect() {
    std::shared_ptr<Controller> ctrl;
    std::shared_ptr<Subsystem> subsys;
    uint16_t qid;
    {
        util::MutexLock lk(mu_);
        if (!connected_) return;
        connected_ = false;
        ctrl = std::move(ctrl_);
        subsys = std::move(subsys_);
        qid = qid_;
    }
    {
        util::MutexLock lk(state_->mu);
        state_->closed = true;  // the controller must not ask a gone connection to close
    }
    if (qid != 0) {
        ctrl->DetachIoQueue(qid);
        return;
    }
    // Losing the admin queue ends the association (the host reconnects with a new controller).
    ctrl->Teardown("admin queue disconnected");
    subsys->RemoveController(ctrl->cntlid());
}

}  // namespace

NvmeTarget::NvmeTarget() : core_(std::make_shared<Core>()) {
    ka_thread_ = std::thread([this] { KeepAliveLoop(); });
}

NvmeTarget::~NvmeTarget() {
    {
        util::MutexLock lk(core_->mu);
        core_->stop = true;
    }
    core_->cv.NotifyAll();
    ka_thread_.join();
}

Status NvmeTarget::AddSubsystem(std::shared_ptr<Subsystem> subsys) {
    util::MutexLock lk(core_->mu);
    if (core_->subsystems.count(subsys->nqn())) return Status::Error(EEXIST, "subsystem " + subsys->nqn() + " exists");
    core_->subsystems[subsys->nqn()] = std::move(subsys);
    core_->cv.NotifyAll();
    return Status::Ok();
}

void NvmeTarget::RemoveSubsystem(const std::string& nqn) {
    std::shared_ptr<Subsystem> s;
    {
        util::MutexLock lk(core_->mu);
        auto it = core_->subsystems.find(nqn);
        if (it == core_->subsystems.end()) return;
        s = std::move(it->second);
        core_->subsystems.erase(it);
    }
    for (auto& c : s->Controllers()) {
        c->Teardown("subsystem removed");
        s->RemoveController(c->cntlid());
    }
}

std::shared_ptr<Subsystem> NvmeTarget::FindSubsystem(const std::string& nqn) const {
    util::MutexLock lk(core_->mu);
    auto it = core_->subsystems.find(nqn);
    return it == core_->subsystems.end() ? nullptr : it->second;
}

std::unique_ptr<FabricsQueue> NvmeTarget::NewQueue(const std::string& peer) {
    return std::make_unique<FabricsQueueImpl>(core_, peer);
}

void NvmeTarget::CheckKeepAlive() {
    std::vector<std::shared_ptr<Subsystem>> subs;
    {
        util::MutexLock lk(core_->mu);
        for (auto& [nqn, s] : core_->subsystems) subs.push_back(s);
    }
    auto now = std::chrono::steady_clock::now();
    for (auto& s : subs) {
        for (auto& c : s->Controllers()) {
            if (c->config().transport != TransportKind::kFabrics || !c->KeepAliveExpired(now)) continue;
            c->Teardown("keep alive timeout");
            s->RemoveController(c->cntlid());
        }
    }
}

void NvmeTarget::KeepAliveLoop() {
    util::MutexLock lk(core_->mu);
    while (!core_->stop) {
        // Sleep until the earliest keep-alive deadline; no wake-ups at all while no controller
        // has a KATO (Connect and Set Features KATO wake the thread).
        auto next = std::chrono::steady_clock::time_point::max();
        for (auto& [nqn, s] : core_->subsystems)
            for (auto& c : s->Controllers())
                if (c->config().transport == TransportKind::kFabrics && !c->torn_down())
                    next = std::min(next, c->KeepAliveDeadline());
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

}  // namespace qzns::nvme
