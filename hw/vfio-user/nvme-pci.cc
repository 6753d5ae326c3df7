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

uint32_t Distance(uint32_t from, uint32_t to, uint32_t entries) { return (to + entries - from) % entries; }

// The device whose FetchAndSubmit this thread runs: a completion delivered inline by Submit
// then marks its SQ for that loop instead of recursing.
thread_local const void* tls_fetching_device = nullptr;

// Bounce buffers grow in powers of two, so a buffer that carries mixed sizes grows few times.
uint32_t BounceSize(uint32_t bytes) {
    uint64_t p = std::max<uint64_t>(RoundUpPow2(bytes), 4096);
    return p > UINT32_MAX ? bytes : uint32_t(p);
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

NvmePciDevice::RequestPool::RequestPool(uint32_t entries) {
    spare_bounce.reserve(entries);
    for (uint32_t i = 0; i < entries; i++) {
        Request& r = requests.emplace_back(this);
        r.next = free;
        free = &r;
    }
}

NvmePciDevice::NvmePciDevice(NvmePciOptions opts)
    : opts_(opts), bar0_size_(RoundUpPow2(kRegsSize + 8ull * opts.max_queue_pairs)) {
    fetch_wanted_.assign((opts_.max_queue_pairs + 63) / 64, 0);
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
    // MDTS is in units of the minimum page size (4 KiB); 0 (no limit) gets 16 MiB's worth, and
    // a scattered transfer beyond that fails with Data Transfer Error.
    const uint8_t mdts = dev->ctrl_->config().mdts;
    dev->seg_capacity_ = (mdts == 0 || mdts > 12) ? 4097 : (1u << mdts) + 1;
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
    s.dbbuf_active = dbbuf_.slots != 0;
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
    EraseAllSqsLocked();
    cqs_.clear();
    sqs_.insert_or_assign(0, Sq(0, asq, sq_entries, 0));
    cqs_.insert_or_assign(0, Cq(0, acq, cq_entries, true, 0));
    return true;
}

uint16_t NvmePciDevice::CreateIoCq(const nvme::IoCqParams& p) {
    util::MutexLock lk(mu_);
    if (p.qid >= opts_.max_queue_pairs) return nvme::sc::kInvalidQueueIdentifier | nvme::sc::kDnr;
    if (p.interrupts_enabled && p.vector >= opts_.msix_vectors)
        return nvme::sc::kInvalidInterruptVector | nvme::sc::kDnr;
    cqs_.insert_or_assign(p.qid, Cq(p.qid, p.prp1, p.entries, p.interrupts_enabled, p.vector));
    if (ShadowedLocked(p.qid)) {
        // A new queue starts at head 0 whatever an earlier queue left in its slot.
        WriteShadowLocked(8ull * p.qid + 4, 0);
        WriteEventIdxLocked(8ull * p.qid + 4, p.entries - 1);
    }
    return nvme::sc::kSuccess;
}

uint16_t NvmePciDevice::CreateIoSq(const nvme::IoSqParams& p) {
    util::MutexLock lk(mu_);
    if (p.qid >= opts_.max_queue_pairs) return nvme::sc::kInvalidQueueIdentifier | nvme::sc::kDnr;
    if (!cqs_.count(p.cqid)) return nvme::sc::kCompletionQueueInvalid | nvme::sc::kDnr;
    if (auto it = sqs_.find(p.qid); it != sqs_.end()) EraseSqLocked(it);
    sqs_.emplace(p.qid, Sq(p.qid, p.prp1, p.entries, p.cqid));
    if (ShadowedLocked(p.qid)) {
        WriteShadowLocked(8ull * p.qid, 0);
        WriteEventIdxLocked(8ull * p.qid, 0);
    }
    return nvme::sc::kSuccess;
}

void NvmePciDevice::DeleteIoSq(uint16_t qid) {
    util::MutexLock lk(mu_);
    if (auto it = sqs_.find(qid); it != sqs_.end()) EraseSqLocked(it);
}

void NvmePciDevice::DeleteIoCq(uint16_t qid) {
    util::MutexLock lk(mu_);
    cqs_.erase(qid);
}

void NvmePciDevice::ResetQueues() {
    util::MutexLock lk(mu_);
    EraseAllSqsLocked();
    cqs_.clear();
    dbbuf_ = {};  // a reset controller forgets the doorbell buffers (the host sends 7Ch again)
    epoch_++;
}

void NvmePciDevice::EraseSqLocked(std::map<uint16_t, Sq>::iterator it) {
    RequestPool* pool = it->second.pool.get();
    if (pool->outstanding > 0) {
        pool->retired = true;
        retired_pools_.push_back(std::move(it->second.pool));
    }
    sqs_.erase(it);
}

void NvmePciDevice::EraseAllSqsLocked() {
    while (!sqs_.empty()) EraseSqLocked(sqs_.begin());
}

NvmePciDevice::Request* NvmePciDevice::AcquireLocked(RequestPool& pool) {
    if (pool.free == nullptr) {
        Request& r = pool.requests.emplace_back(&pool);  // more in flight than SQ entries
        r.next = pool.free;
        pool.free = &r;
    }
    Request* r = pool.free;
    pool.free = r->next;
    r->next = nullptr;
    pool.outstanding++;
    return r;
}

void NvmePciDevice::ReleaseLocked(Request* r) {
    RequestPool* pool = r->pool;
    if (r->bounce.data) pool->spare_bounce.push_back(std::move(r->bounce));
    r->bounce = {};
    r->next = pool->free;
    pool->free = r;
    if (--pool->outstanding == 0 && pool->retired) {
        std::erase_if(retired_pools_, [pool](const std::unique_ptr<RequestPool>& p) { return p.get() == pool; });
    }
}

uint16_t NvmePciDevice::SetDoorbellBuffer(uint64_t dbs, uint64_t eis, uint32_t page_size) {
    util::MutexLock lk(mu_);
    if (dma_ == nullptr) return nvme::sc::kInternalError;
    // Both pages must be guest memory we can reach: the EventIdx page is ours to write (check
    // by writing back what it holds), the shadow page the host's (read it).
    std::vector<uint8_t> page(page_size);
    if (!dma_->Read(dbs, page.data(), page.size()).ok() || !dma_->Read(eis, page.data(), page.size()).ok() ||
        !dma_->Write(eis, page.data(), page.size()).ok())
        return nvme::sc::kInvalidField | nvme::sc::kDnr;
    dbbuf_.dbs = dbs;
    dbbuf_.eis = eis;
    dbbuf_.slots = std::min<uint32_t>(page_size / 8, opts_.max_queue_pairs);
    stats_.dbbuf_configs++;
    // Queues that already exist continue from where they are: the shadow slots take the values
    // we consumed (as QEMU's hw/nvme does), EventIdx as after going idle.
    for (auto& [qid, sq] : sqs_) {
        if (ShadowedLocked(qid)) WriteShadowLocked(8ull * qid, sq.tail);
        if (qid < dbbuf_.slots) WriteEventIdxLocked(8ull * qid, sq.tail);
    }
    for (auto& [qid, cq] : cqs_) {
        if (ShadowedLocked(qid)) WriteShadowLocked(8ull * qid + 4, cq.head);
        if (qid < dbbuf_.slots)
            WriteEventIdxLocked(8ull * qid + 4, ShadowedLocked(qid) ? (cq.head + cq.entries - 1) % cq.entries : cq.head);
    }
    return nvme::sc::kSuccess;
}

std::optional<uint32_t> NvmePciDevice::ReadShadowLocked(uint64_t slot_off, uint32_t entries) {
    uint32_t v = 0;
    if (!dma_->Read(dbbuf_.dbs + slot_off, &v, 4).ok() || v >= entries) {
        stats_.bad_doorbells++;
        return std::nullopt;
    }
    return v;
}

void NvmePciDevice::WriteEventIdxLocked(uint64_t slot_off, uint32_t value) {
    if (dma_->Write(dbbuf_.eis + slot_off, &value, 4).ok()) stats_.eventidx_writes++;
}

void NvmePciDevice::WriteShadowLocked(uint64_t slot_off, uint32_t value) {
    (void)dma_->Write(dbbuf_.dbs + slot_off, &value, 4);
}

// ---- Submission ------------------------------------------------------------------------------

uint32_t NvmePciDevice::page_size() const { return 4096u << nvme::CcMps(ctrl_->cc()); }

void NvmePciDevice::RingSqDoorbell(uint16_t qid, uint32_t tail) {
    {
        util::MutexLock lk(mu_);
        stats_.sq_doorbells++;
        auto it = sqs_.find(qid);
        if (it == sqs_.end() || tail >= it->second.entries || dma_ == nullptr) {
            stats_.bad_doorbells++;  // Invalid Doorbell Write (an AER would be the spec's answer)
            return;
        }
    }
    FetchAndSubmit(qid, tail);
}

void NvmePciDevice::FetchAndSubmit(uint16_t qid, std::optional<uint32_t> mmio_tail) {
    if (tls_fetching_device == this) {  // inside Submit of an outer call on this thread
        util::MutexLock lk(mu_);
        uint64_t& word = fetch_wanted_[qid / 64];
        if (!(word & (1ull << (qid % 64)))) {
            word |= 1ull << (qid % 64);
            fetch_wanted_count_++;
        }
        return;
    }
    const void* outer = tls_fetching_device;
    tls_fetching_device = this;
    for (bool first = true;; first = false) {
        Batch batch;
        {
            util::MutexLock lk(mu_);
            if (first) {
                auto it = sqs_.find(qid);
                if (it != sqs_.end() && dma_ != nullptr) FetchLocked(it->second, mmio_tail, batch);
            }
            for (size_t w = 0; fetch_wanted_count_ > 0 && w < fetch_wanted_.size(); w++) {
                while (fetch_wanted_[w] != 0) {
                    const int bit = __builtin_ctzll(fetch_wanted_[w]);
                    fetch_wanted_[w] &= fetch_wanted_[w] - 1;
                    fetch_wanted_count_--;
                    auto it = sqs_.find(uint16_t(w * 64 + bit));
                    if (it != sqs_.end() && dma_ != nullptr) FetchLocked(it->second, std::nullopt, batch);
                }
            }
            if (batch.count == 0) break;
            inflight_ += batch.count;
            stats_.commands += batch.count;
        }
        for (Request* r = batch.head; r != nullptr;) {
            Request* next = r->next;  // r may complete inline and be reused
            SubmitOne(r);
            r = next;
        }
    }
    tls_fetching_device = outer;
}

void NvmePciDevice::FetchLocked(Sq& sq, std::optional<uint32_t> mmio_tail, Batch& out) {
    const bool shadow = ShadowedLocked(sq.qid);
    if (!shadow) {
        if (mmio_tail) sq.tail = *mmio_tail;
        sq.mmio_covered = 0;
    } else if (auto t = ReadShadowLocked(8ull * sq.qid, sq.entries)) {
        // The shadow tail is never older than the MMIO value (the host writes it first); an MMIO
        // value beyond it is stale (a late doorbell for entries we already polled).
        sq.tail = *t;
        if (mmio_tail) {
            uint32_t d = Distance(sq.head, *mmio_tail, sq.entries);
            sq.mmio_covered = d <= Distance(sq.head, sq.tail, sq.entries) ? d : 0;
        }
    }
    for (;;) {
        while (sq.head != sq.tail) {
            Request* r = AcquireLocked(*sq.pool);
            if (!dma_->Read(sq.base + uint64_t(sq.head) * 64, r->sqe.b, 64).ok()) {
                ReleaseLocked(r);
                stats_.bad_doorbells++;
                return;  // ring not in guest memory: nothing sane to fetch
            }
            r->qid = sq.qid;
            r->epoch = epoch_;
            if (sq.mmio_covered > 0) sq.mmio_covered--;
            else if (shadow) stats_.shadow_commands++;
            *out.tail = r;
            out.tail = &r->next;
            out.count++;
            sq.head = (sq.head + 1) % sq.entries;
        }
        if (sq.qid < dbbuf_.slots && !shadow) {
            WriteEventIdxLocked(8ull * sq.qid, sq.tail);  // admin: the host always rings
            return;
        }
        if (!shadow) return;
        // Publish how far we got, busy or not, so the host rings for its next command. Left
        // behind while commands were in flight, EventIdx saved doorbells but made what the host
        // queued meanwhile wait for some completion: behind writes and reads that wait on the
        // disk that cost 4K QD32 random writes a third of their IOPS (bench/vfio-user-load).
        // Then look again: store EventIdx, full fence, load the shadow, against the host's store
        // shadow, full barrier, load EventIdx; one of the two sees the other's store, so no
        // update the host did not ring for goes unseen.
        WriteEventIdxLocked(8ull * sq.qid, sq.tail);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        auto t = ReadShadowLocked(8ull * sq.qid, sq.entries);
        if (!t || *t == sq.tail) return;
        sq.tail = *t;
    }
}

void NvmePciDevice::SubmitOne(Request* r) {
    // A copy: once `r` completes (perhaps inside Submit) another command may take it.
    const nvme::SqeBytes sqe = r->sqe;
    const uint16_t qid = r->qid;
    nvme::DataTransfer xfer = ctrl_->TransferOf(qid, sqe);
    DmaSpace* dma;
    {
        util::MutexLock lk(mu_);
        dma = dma_;
    }
    if (xfer.dir == nvme::DataTransfer::kNone || xfer.bytes == 0 || dma == nullptr) {
        ctrl_->Submit(qid, sqe, {}, [this, r](const nvme::CqeBytes& c, uint32_t) { Complete(r, c, false); });
        return;
    }
    nvme::Sqe s;
    std::memcpy(&s, sqe.b, sizeof(s));
    r->c2h = xfer.dir == nvme::DataTransfer::kControllerToHost;
    r->dma = dma;
    r->bytes = xfer.bytes;
    if (!r->segs) r->segs = std::make_unique<DmaSegment[]>(seg_capacity_);  // once per request
    DmaSegmentList segs({r->segs.get(), seg_capacity_});
    uint32_t psdt = (s.flags >> 6) & 3;
    uint16_t walked;
    if (psdt == 0) {
        walked = WalkPrp(*dma, s.dptr1.get(), s.dptr2.get(), xfer.bytes, page_size(), segs);
    } else {
        SglDescriptor sgl;
        std::memcpy(&sgl, sqe.b + 24, sizeof(sgl));
        walked = WalkSgl(*dma, sgl, xfer.bytes, r->c2h, segs);
    }
    if (walked != dptr_sc::kSuccess) {
        {
            util::MutexLock lk(mu_);
            stats_.dptr_errors++;
        }
        Complete(r, ErrorCqe(sqe, walked), false);
        return;
    }
    r->nsegs = uint32_t(segs.size());
    // Zero copy when one mapped segment holds all the data; else a bounce buffer from the SQ's
    // pool. One critical section counts the command's data in flight and does either's bookkeeping.
    uint8_t* direct = (segs.size() == 1 && !segs[0].bit_bucket) ? dma->Translate(segs[0].addr, xfer.bytes, r->c2h)
                                                               : nullptr;
    {
        util::MutexLock lk(mu_);
        data_inflight_++;
        if (direct != nullptr) {
            stats_.zero_copy++;
        } else if (std::vector<BounceBuffer>& spare = r->pool->spare_bounce; !spare.empty()) {
            r->bounce = std::move(spare.back());
            spare.pop_back();
        }
    }
    if (direct != nullptr) {
        ctrl_->Submit(qid, sqe, std::span<uint8_t>(direct, xfer.bytes),
                      [this, r](const nvme::CqeBytes& c, uint32_t) { Complete(r, c, true); });
        return;
    }
    if (r->bounce.capacity < xfer.bytes) {
        r->bounce.capacity = BounceSize(xfer.bytes);
        r->bounce.data = std::make_unique_for_overwrite<uint8_t[]>(r->bounce.capacity);
    }
    uint8_t* const buf = r->bounce.data.get();
    if (r->c2h) {
        std::memset(buf, 0, xfer.bytes);  // the controller's seam promises zeroes
    } else {
        uint16_t st = CopyFromGuest(*dma, segs.segments(), buf, xfer.bytes);
        if (st != dptr_sc::kSuccess) {
            Complete(r, ErrorCqe(sqe, st), true);
            return;
        }
    }
    {
        util::MutexLock lk(mu_);
        stats_.bounced++;
    }
    ctrl_->Submit(qid, sqe, std::span<uint8_t>(buf, xfer.bytes),
                  [this, r](const nvme::CqeBytes& c, uint32_t c2h_len) {
                      nvme::CqeBytes out = c;
                      if (r->c2h && c2h_len > 0) {
                          uint16_t st = CopyToGuest(*r->dma, {r->segs.get(), r->nsegs}, r->bounce.data.get(),
                                                    std::min<uint64_t>(c2h_len, r->bytes));
                          if (st != dptr_sc::kSuccess) {
                              nvme::SqeBytes fake{};
                              std::memcpy(fake.b + 2, c.b + 12, 2);  // cid
                              out = ErrorCqe(fake, st);
                              std::memcpy(out.b, c.b, 8);
                          }
                      }
                      Complete(r, out, true);
                  });
}

// ---- Completion ------------------------------------------------------------------------------

bool NvmePciDevice::CqFullLocked(Cq& cq) {
    if ((cq.tail + 1) % cq.entries != cq.head) return false;
    if (!ShadowedLocked(cq.qid)) return true;
    // The head we know may be old: the host moves it in the shadow page without ringing.
    const uint64_t slot = 8ull * cq.qid + 4;
    if (auto h = ReadShadowLocked(slot, cq.entries)) cq.head = *h;
    if ((cq.tail + 1) % cq.entries != cq.head) {
        WriteEventIdxLocked(slot, (cq.head + cq.entries - 1) % cq.entries);  // still no ring wanted
        return false;
    }
    // Full: ask for a ring at the host's next head move, then look again (same race as SQs).
    WriteEventIdxLocked(slot, cq.head);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (auto h = ReadShadowLocked(slot, cq.entries)) cq.head = *h;
    return (cq.tail + 1) % cq.entries == cq.head;
}

int NvmePciDevice::PostLocked(Cq& cq, const nvme::CqeBytes& in) {
    if (CqFullLocked(cq)) {
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

void NvmePciDevice::Complete(Request* r, nvme::CqeBytes cqe, bool with_data) {
    const uint16_t qid = r->qid;
    const uint64_t epoch = r->epoch;
    int vector = -1;
    IrqSink* irq = nullptr;
    bool poll = false;
    {
        util::MutexLock lk(mu_);
        poll = epoch == epoch_ && sqs_.count(qid) && ShadowedLocked(qid);
        ReleaseLocked(r);
        vector = PostCompletionLocked(qid, epoch, cqe);
        irq = irq_;
    }
    if (vector >= 0 && irq != nullptr) irq->Trigger(uint32_t(vector));
    // Look at the shadow tail now: a command the host queued since the last look starts
    // without waiting for its doorbell message (which then finds nothing new). The command
    // still counts in flight, so the device cannot go away meanwhile.
    if (poll) FetchAndSubmit(qid, std::nullopt);
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
        if (ShadowedLocked(qid)) {
            // The shadow head is never older than the MMIO value; ring again only when full.
            if (auto h = ReadShadowLocked(8ull * qid + 4, cq.entries)) cq.head = *h;
            WriteEventIdxLocked(8ull * qid + 4, (cq.head + cq.entries - 1) % cq.entries);
        } else {
            cq.head = head;
            if (qid < dbbuf_.slots) WriteEventIdxLocked(8ull * qid + 4, head);
        }
        while (!cq.overflow.empty() && !CqFullLocked(cq)) {
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
