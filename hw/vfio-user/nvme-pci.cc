#include "hw/vfio-user/nvme-pci.h"

#include <atomic>
#include <chrono>
#include <cstring>

#include "hw/nvme/spec.h"
#include "hw/nvme/status.h"
#include "hw/nvme/subsystem.h"

namespace qzns::vfu {

namespace {
constexpr uint64_t kBar4Size = 0x1000;
constexpr uint32_t kPbaOffset = 0x800;
constexpr uint32_t kRegsSize = nvme::reg::kDoorbellBase;

uint64_t RoundUpPow2(uint64_t v) {
    uint64_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

nvme::CqeBytes ErrorCqe(const nvme::SqeBytes& sqe, uint16_t status) {
    nvme::CqeBytes c{};
    nvme::Cqe cqe{};
    std::memcpy(&cqe.cid, sqe.b + 2, 2);
    cqe.status.set(uint16_t((status | nvme::sc::kDnr) << 1));
    std::memcpy(c.b, &cqe, sizeof(cqe));
    return c;
}
}  // namespace

NvmePciDevice::NvmePciDevice(NvmePciOptions opts)
    : opts_(opts), bar0_size_(RoundUpPow2(kRegsSize + 8ull * opts.max_queue_pairs)) {
    cfg_.SetIds(opts_.vendor_id, opts_.device_id, opts_.subsys_vendor_id, opts_.subsys_id, 0);
    cfg_.SetClass(0x010802);  // mass storage, non-volatile memory, NVMe I/O controller
    cfg_.SetMemoryBar(0, bar0_size_, true, false);
    cfg_.SetMemoryBar(4, kBar4Size, false, false);
    cfg_.SetInterruptPin(1);
    cfg_.AddPmCap();
    cfg_.AddMsixCap(uint16_t(opts_.msix_vectors), 4, 0, 4, kPbaOffset);
    cfg_.AddPcieCap();
}

Result<std::unique_ptr<NvmePciDevice>> NvmePciDevice::Create(
    std::shared_ptr<nvme::Subsystem> subsys, NvmePciOptions opts) {
    if (opts.msix_vectors == 0 || opts.msix_vectors > 128)
        return Status::Error(EINVAL, "msix_vectors must be 1..128");
    if (opts.max_queue_pairs < 2 || opts.max_queue_pairs > 4096)
        return Status::Error(EINVAL, "max_queue_pairs must be 2..4096");
    std::unique_ptr<NvmePciDevice> dev(new NvmePciDevice(opts));
    QZNS_ASSIGN(dev->ctrl_, subsys->CreatePciController(dev.get()));
    return dev;
}

NvmePciDevice::~NvmePciDevice() {
    if (!ctrl_) return;
    ctrl_->WriteRegister(nvme::reg::kCc, 4, 0);
    {
        util::MutexLock lk(mu_);
        idle_cv_.WaitFor(mu_, std::chrono::seconds(30), [&]() REQUIRES(mu_) { return inflight_ == 0; });
    }
    ctrl_->SetPciHooks(nullptr);
    ctrl_->Teardown("PCI device removed");
    ctrl_->subsystem().RemoveController(ctrl_->cntlid());
}

NvmePciStats NvmePciDevice::stats() const {
    util::MutexLock lk(mu_);
    NvmePciStats s = stats_;
    s.inflight = inflight_;
    return s;
}

// ---- VfioUserDevice --------------------------------------------------------------------------

RegionDesc NvmePciDevice::Region(uint32_t index) const {
    RegionDesc d;
    if (index == kPciConfigRegionIndex) {
        util::MutexLock lk(mu_);
        d.size = cfg_.size();
    } else if (index == 0) {
        d.size = bar0_size_;
    } else if (index == 4) {
        d.size = kBar4Size;
    } else {
        return d;
    }
    d.flags = kRegionFlagRead | kRegionFlagWrite;
    return d;
}

IrqDesc NvmePciDevice::Irq(uint32_t index) const {
    if (index == kPciIntxIrqIndex)
        return {1, kIrqInfoFlagEventfd | kIrqInfoFlagMaskable | kIrqInfoFlagAutomasked};
    if (index == kPciMsixIrqIndex)
        return {opts_.msix_vectors, kIrqInfoFlagEventfd | kIrqInfoFlagNoresize};
    return {};
}

Status NvmePciDevice::RegionRead(uint32_t index, uint64_t offset, std::span<uint8_t> data) {
    if (index == kPciConfigRegionIndex) {
        util::MutexLock lk(mu_);
        cfg_.Read(offset, data);
        return Status::Ok();
    }
    std::memset(data.data(), 0, data.size());
    if (index != 0 || offset >= kRegsSize) return Status::Ok();  // PBA, doorbells read as 0
    // Registers, a dword at a time (the controller's registers are dword-addressed).
    for (size_t i = 0; i < data.size();) {
        uint64_t off = offset + i;
        uint32_t dword_off = uint32_t(off & ~3ull);
        uint32_t v = uint32_t(ctrl_->ReadRegister(dword_off, 4));
        size_t in = off - dword_off;
        size_t n = std::min(data.size() - i, 4 - in);
        for (size_t k = 0; k < n; k++) data[i + k] = uint8_t(v >> (8 * (in + k)));
        i += n;
    }
    return Status::Ok();
}

Status NvmePciDevice::RegionWrite(uint32_t index, uint64_t offset,
                                  std::span<const uint8_t> data) {
    if (index == kPciConfigRegionIndex) {
        util::MutexLock lk(mu_);
        cfg_.Write(offset, data);
        return Status::Ok();
    }
    if (index != 0) return Status::Ok();  // MSI-X table is the client's; PBA is read-only
    uint64_t v = 0;
    std::memcpy(&v, data.data(), std::min<size_t>(data.size(), 8));
    if (offset < kRegsSize) {
        // Registers take aligned dword or qword writes; anything else is ignored, like
        // a real controller ignores writes it does not decode.
        if ((data.size() == 4 && offset % 4 == 0) || (data.size() == 8 && offset % 8 == 0)) {
            if (data.size() == 8 && offset != nvme::reg::kAsq && offset != nvme::reg::kAcq) {
                (void)ctrl_->WriteRegister(uint32_t(offset), 4, uint32_t(v));
                (void)ctrl_->WriteRegister(uint32_t(offset + 4), 4, v >> 32);
            } else {
                (void)ctrl_->WriteRegister(uint32_t(offset), unsigned(data.size()), v);
            }
        }
        return Status::Ok();
    }
    if (data.size() != 4 || offset % 4 != 0) {
        util::MutexLock lk(mu_);
        stats_.bad_doorbells++;
        return Status::Ok();
    }
    uint64_t idx = (offset - kRegsSize) / 4;  // CAP.DSTRD = 0
    uint64_t qid = idx / 2;
    if (qid >= opts_.max_queue_pairs) {
        util::MutexLock lk(mu_);
        stats_.bad_doorbells++;
        return Status::Ok();
    }
    if (idx % 2 == 0) RingSqDoorbell(uint16_t(qid), uint32_t(v));
    else RingCqDoorbell(uint16_t(qid), uint32_t(v));
    return Status::Ok();
}

void NvmePciDevice::Reset() {
    // Function-level reset: controller reset (ResetQueues drops our queues) and config space.
    ctrl_->WriteRegister(nvme::reg::kCc, 4, 0);
    util::MutexLock lk(mu_);
    cfg_.Reset();
}

void NvmePciDevice::Attach(DmaSpace* dma, IrqSink* irq) {
    util::MutexLock lk(mu_);
    // Detaching (the client is gone, the server may go next): after a reset only commands
    // already executing remain, and their completions still use dma_ and irq_.
    if (dma == nullptr)
        idle_cv_.WaitFor(mu_, std::chrono::seconds(30), [&]() REQUIRES(mu_) { return inflight_ == 0; });
    dma_ = dma;
    irq_ = irq;
}

void NvmePciDevice::DmaUnmapping(uint64_t, uint64_t) {
    // Commands in flight may hold pointers into guest memory (zero-copy) or still copy to it.
    // Commands without data (an AER waits for an event as long as the host runs) only post a
    // completion, through the DMA table and under mu_, which is safe after the unmap.
    util::MutexLock lk(mu_);
    idle_cv_.WaitFor(mu_, std::chrono::seconds(30), [&]() REQUIRES(mu_) { return data_inflight_ == 0; });
}

// ---- Queue hooks (called by the controller) -------------------------------------------------

bool NvmePciDevice::EnableAdminQueues(uint64_t asq, uint64_t acq, uint32_t sq_entries,
                                      uint32_t cq_entries) {
    util::MutexLock lk(mu_);
    if (dma_ == nullptr) return false;
    sqs_.clear();
    cqs_.clear();
    sqs_.insert_or_assign(0, Sq(asq, sq_entries, 0));
    cqs_.insert_or_assign(0, Cq(acq, cq_entries, true, 0));
    return true;
}

uint16_t NvmePciDevice::CreateIoCq(const nvme::IoCqParams& p) {
    util::MutexLock lk(mu_);
    if (p.qid >= opts_.max_queue_pairs) return nvme::sc::kInvalidQueueIdentifier | nvme::sc::kDnr;
    if (p.interrupts_enabled && p.vector >= opts_.msix_vectors)
        return nvme::sc::kInvalidInterruptVector | nvme::sc::kDnr;
    cqs_.insert_or_assign(p.qid, Cq(p.prp1, p.entries, p.interrupts_enabled, p.vector));
    return nvme::sc::kSuccess;
}

uint16_t NvmePciDevice::CreateIoSq(const nvme::IoSqParams& p) {
    util::MutexLock lk(mu_);
    if (p.qid >= opts_.max_queue_pairs) return nvme::sc::kInvalidQueueIdentifier | nvme::sc::kDnr;
    if (!cqs_.count(p.cqid)) return nvme::sc::kCompletionQueueInvalid | nvme::sc::kDnr;
    sqs_.insert_or_assign(p.qid, Sq(p.prp1, p.entries, p.cqid));
    return nvme::sc::kSuccess;
}

void NvmePciDevice::DeleteIoSq(uint16_t qid) {
    util::MutexLock lk(mu_);
    sqs_.erase(qid);
}

void NvmePciDevice::DeleteIoCq(uint16_t qid) {
    util::MutexLock lk(mu_);
    cqs_.erase(qid);
}

void NvmePciDevice::ResetQueues() {
    util::MutexLock lk(mu_);
    sqs_.clear();
    cqs_.clear();
    epoch_++;
}

// ---- Submission ------------------------------------------------------------------------------

uint32_t NvmePciDevice::page_size() const { return 4096u << nvme::CcMps(ctrl_->cc()); }

void NvmePciDevice::RingSqDoorbell(uint16_t qid, uint32_t tail) {
    std::vector<nvme::SqeBytes> fetched;
    uint64_t epoch;
    {
        util::MutexLock lk(mu_);
        stats_.sq_doorbells++;
        auto it = sqs_.find(qid);
        if (it == sqs_.end() || tail >= it->second.entries || dma_ == nullptr) {
            stats_.bad_doorbells++;  // Invalid Doorbell Write (an AER would be the spec's answer)
            return;
        }
        Sq& sq = it->second;
        sq.tail = tail;
        while (sq.head != sq.tail) {
            nvme::SqeBytes sqe;
            if (!dma_->Read(sq.base + uint64_t(sq.head) * 64, sqe.b, 64).ok()) {
                stats_.bad_doorbells++;
                break;  // ring not in guest memory: nothing sane to fetch
            }
            fetched.push_back(sqe);
            sq.head = (sq.head + 1) % sq.entries;
        }
        epoch = epoch_;
        inflight_ += uint32_t(fetched.size());
        stats_.commands += fetched.size();
    }
    for (const auto& sqe : fetched) SubmitOne(qid, sqe, epoch);
}

void NvmePciDevice::SubmitOne(uint16_t qid, const nvme::SqeBytes& sqe, uint64_t epoch) {
    nvme::DataTransfer xfer = ctrl_->TransferOf(qid, sqe);
    DmaSpace* dma;
    {
        util::MutexLock lk(mu_);
        dma = dma_;
    }
    if (xfer.dir == nvme::DataTransfer::kNone || xfer.bytes == 0 || dma == nullptr) {
        ctrl_->Submit(qid, sqe, {}, [this, qid, epoch](const nvme::CqeBytes& c, uint32_t) {
            Complete(qid, epoch, c, false);
        });
        return;
    }
    nvme::Sqe s;
    std::memcpy(&s, sqe.b, sizeof(s));
    bool c2h = xfer.dir == nvme::DataTransfer::kControllerToHost;
    uint32_t psdt = (s.flags >> 6) & 3;
    DptrWalk walk;
    if (psdt == 0) {
        walk = WalkPrp(*dma, s.dptr1.get(), s.dptr2.get(), xfer.bytes, page_size());
    } else {
        SglDescriptor sgl;
        std::memcpy(&sgl, sqe.b + 24, sizeof(sgl));
        walk = WalkSgl(*dma, sgl, xfer.bytes, c2h);
    }
    if (!walk.ok()) {
        {
            util::MutexLock lk(mu_);
            stats_.dptr_errors++;
        }
        Complete(qid, epoch, ErrorCqe(sqe, walk.status), false);
        return;
    }
    {
        util::MutexLock lk(mu_);
        data_inflight_++;
    }
    // Zero copy when one mapped segment holds all the data; else a bounce buffer.
    if (walk.segments.size() == 1 && !walk.segments[0].bit_bucket) {
        if (uint8_t* p = dma->Translate(walk.segments[0].addr, xfer.bytes, c2h)) {
            {
                util::MutexLock lk(mu_);
                stats_.zero_copy++;
            }
            ctrl_->Submit(qid, sqe, std::span<uint8_t>(p, xfer.bytes),
                          [this, qid, epoch](const nvme::CqeBytes& c, uint32_t) {
                              Complete(qid, epoch, c, true);
                          });
            return;
        }
    }
    // The bounce buffer and segments live until the completion (one allocation: this path
    // copies anyway).
    struct Bounce {
        std::vector<uint8_t> buf;
        std::vector<DmaSegment> segs;
        DmaSpace* dma;
        bool c2h;
    };
    auto* bounce = new Bounce{std::vector<uint8_t>(xfer.bytes), std::move(walk.segments), dma, c2h};
    if (!c2h) {
        uint16_t st = CopyFromGuest(*dma, bounce->segs, bounce->buf.data(), xfer.bytes);
        if (st != dptr_sc::kSuccess) {
            delete bounce;
            Complete(qid, epoch, ErrorCqe(sqe, st), true);
            return;
        }
    }
    {
        util::MutexLock lk(mu_);
        stats_.bounced++;
    }
    ctrl_->Submit(qid, sqe, std::span<uint8_t>(bounce->buf),
                  [this, qid, epoch, bounce](const nvme::CqeBytes& c, uint32_t c2h_len) {
                      std::unique_ptr<Bounce> b(bounce);
                      nvme::CqeBytes out = c;
                      if (b->c2h && c2h_len > 0) {
                          uint16_t st = CopyToGuest(*b->dma, b->segs, b->buf.data(),
                                                    std::min<uint64_t>(c2h_len, b->buf.size()));
                          if (st != dptr_sc::kSuccess) {
                              nvme::SqeBytes fake{};
                              std::memcpy(fake.b + 2, c.b + 12, 2);  // cid
                              out = ErrorCqe(fake, st);
                              std::memcpy(out.b, c.b, 8);
                          }
                      }
                      Complete(qid, epoch, out, true);
                  });
}

// ---- Completion ------------------------------------------------------------------------------

int NvmePciDevice::PostLocked(Cq& cq, const nvme::CqeBytes& in) {
    if ((cq.tail + 1) % cq.entries == cq.head) {
        cq.overflow.push_back(in);
        stats_.cq_overflow++;
        return -1;
    }
    nvme::Cqe cqe;
    std::memcpy(&cqe, in.b, sizeof(cqe));
    uint16_t status = uint16_t((cqe.status.get() & ~1u) | (cq.phase ? 1u : 0u));
    cqe.status.set(status);
    uint64_t at = cq.base + uint64_t(cq.tail) * sizeof(cqe);
    // The phase tag is what the host polls: write the rest of the entry first.
    bool ok = dma_ != nullptr && dma_->Write(at, &cqe, offsetof(nvme::Cqe, status)).ok();
    std::atomic_thread_fence(std::memory_order_release);
    ok = ok && dma_->Write(at + offsetof(nvme::Cqe, status), &cqe.status, 2).ok();
    if (!ok) {
        stats_.completions_dropped++;
        return -1;
    }
    stats_.completions++;
    if (++cq.tail == cq.entries) {
        cq.tail = 0;
        cq.phase = !cq.phase;
    }
    return cq.irq_enabled ? int(cq.vector) : -1;
}

void NvmePciDevice::Complete(uint16_t qid, uint64_t epoch, nvme::CqeBytes cqe, bool with_data) {
    int vector = -1;
    IrqSink* irq = nullptr;
    {
        util::MutexLock lk(mu_);
        vector = PostCompletionLocked(qid, epoch, cqe);
        irq = irq_;
    }
    if (vector >= 0 && irq != nullptr) irq->Trigger(uint32_t(vector));
    // Only now is the command done with irq_ (and dma_): a detach, which lets the server that
    // owns them go away, and the destructor wait for inflight_ to reach 0.
    util::MutexLock lk(mu_);
    if (inflight_ > 0) inflight_--;
    if (with_data && data_inflight_ > 0) data_inflight_--;
    if (inflight_ == 0 || data_inflight_ == 0) idle_cv_.NotifyAll();
}

int NvmePciDevice::PostCompletionLocked(uint16_t qid, uint64_t epoch, nvme::CqeBytes cqe) {
    auto sq = sqs_.find(qid);
    if (epoch != epoch_ || sq == sqs_.end()) {
        stats_.completions_dropped++;
        return -1;
    }
    auto cq = cqs_.find(sq->second.cqid);
    if (cq == cqs_.end()) {
        stats_.completions_dropped++;
        return -1;
    }
    nvme::Cqe c;
    std::memcpy(&c, cqe.b, sizeof(c));
    if (uint16_t st = uint16_t(c.status.get() >> 1)) {
        stats_.error_completions++;
        if (opts_.on_error) opts_.on_error(qid, c.cid.get(), st);
    }
    c.sqhd.set(uint16_t(sq->second.head));
    c.sqid.set(qid);
    std::memcpy(cqe.b, &c, sizeof(c));
    return PostLocked(cq->second, cqe);
}

void NvmePciDevice::RingCqDoorbell(uint16_t qid, uint32_t head) {
    int vector = -1;
    IrqSink* irq = nullptr;
    {
        util::MutexLock lk(mu_);
        stats_.cq_doorbells++;
        auto it = cqs_.find(qid);
        if (it == cqs_.end() || head >= it->second.entries) {
            stats_.bad_doorbells++;
            return;
        }
        Cq& cq = it->second;
        cq.head = head;
        while (!cq.overflow.empty() && (cq.tail + 1) % cq.entries != cq.head) {
            nvme::CqeBytes c = cq.overflow.front();
            cq.overflow.pop_front();
            int v = PostLocked(cq, c);
            if (v >= 0) vector = v;
        }
        irq = irq_;
    }
    if (vector >= 0 && irq != nullptr) irq->Trigger(uint32_t(vector));
}

}  // namespace qzns::vfu
