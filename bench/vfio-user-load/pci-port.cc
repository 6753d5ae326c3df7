#include "bench/vfio-user-load/pci-port.h"

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "hw/nvme/spec.h"
#include "hw/vfio-user/protocol.h"

namespace qzns::load {

namespace {

constexpr uint32_t kPage = 4096;

}  // namespace

bool PciQueuePort::Init(GuestMemory& mem, uint32_t slots, uint32_t max_bytes, std::string* err) {
    if (slots >= q_.entries || max_bytes > kPage / 8 * kPage) {
        *err = "queue of " + std::to_string(q_.entries) + " entries cannot take " + std::to_string(slots) +
               " commands of " + std::to_string(max_bytes) + " bytes";
        return false;
    }
    cmds_.resize(slots);
    for (Command& c : cmds_) {
        c.buf = mem.Alloc(max_bytes);
        c.prp_list = mem.Alloc(kPage);
        if (!c.buf.ptr || !c.prp_list.ptr) {
            *err = "guest memory too small";
            return false;
        }
        // The buffer is contiguous in IOVA space: its PRP list never changes.
        for (uint32_t i = 1; i < c.buf.size / kPage; i++) PutLe(c.prp_list.ptr + 8 * (i - 1), c.buf.iova + i * kPage, 8);
    }
    return true;
}

void PciQueuePort::Submit(uint8_t* sqe, uint32_t len, DataDir dir, QueueSink& sink) {
    const uint16_t cid = static_cast<uint16_t>(GetLe(sqe + 2, 2));
    Command& c = cmds_.at(cid);
    c.len = len;
    c.dir = dir;
    if (len) {
        if (dir == DataDir::kToController) sink.FillData(cid, 0, len, c.buf.ptr);
        const uint32_t pages = (len + kPage - 1) / kPage;
        PutLe(sqe + 24, c.buf.iova, 8);
        PutLe(sqe + 32, pages == 1 ? 0 : pages == 2 ? c.buf.iova + kPage : c.prp_list.iova, 8);
    }
    std::memcpy(q_.sq.ptr + 64 * sq_tail_, sqe, 64);
    sq_tail_ = (sq_tail_ + 1) % q_.entries;
}

bool PciQueuePort::Ring(uint32_t slot, uint32_t value) {
    if (shadow_) {
        auto* db = reinterpret_cast<uint32_t*>(shadow_ + slot);
        const uint32_t old = __atomic_load_n(db, __ATOMIC_RELAXED);
        // Release: the SQEs (or the CQ slots we are done with) before the new value.
        __atomic_store_n(db, value, __ATOMIC_RELEASE);
        // Full barrier between the shadow store and the EventIdx load, the mirror of the
        // controller's EventIdx store then shadow load (nvme-pci.h): one of the two sees the
        // other's write, so a doorbell is never lost.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        const uint32_t ei = __atomic_load_n(reinterpret_cast<uint32_t*>(eventidx_ + slot), __ATOMIC_RELAXED);
        if (!nvme::ShadowDoorbellNeedsMmio(static_cast<uint16_t>(ei), static_cast<uint16_t>(value), static_cast<uint16_t>(old)))
            return true;
    }
    mmio_doorbells_++;
    return c_.Write32(vfu::kPciBar0RegionIndex, kDoorbells + slot, value, true, &err_);
}

uint32_t PciQueuePort::Reap(QueueSink& sink) {
    uint32_t taken = 0;
    for (;;) {
        uint8_t* e = q_.cq.ptr + 16 * cq_head_;
        const uint16_t st = __atomic_load_n(reinterpret_cast<uint16_t*>(e + 14), __ATOMIC_ACQUIRE);
        if ((st & 1) != phase_) break;
        const uint16_t cid = static_cast<uint16_t>(GetLe(e + 12, 2));
        const uint16_t status = StatusOf(e);
        if (cid < cmds_.size()) {
            const Command& c = cmds_[cid];
            if (status == 0 && c.dir == DataDir::kFromController && c.len) sink.ReadData(cid, 0, c.buf.ptr, c.len);
        }
        sink.Complete(cid, status, GetLe(e, 8));
        if (++cq_head_ == q_.entries) {
            cq_head_ = 0;
            phase_ ^= 1;
        }
        taken++;
    }
    if (taken) (void)Ring(CqSlot(q_.qid), cq_head_);
    return taken;
}

bool PciQueuePort::Poll(int timeout_ms, QueueSink& sink) {
    if (sq_tail_ != sq_rung_) {
        if (!Ring(SqSlot(q_.qid), sq_tail_)) return false;
        sq_rung_ = sq_tail_;
    }
    if (!err_.empty()) return false;
    pollfd p{q_.eventfd, POLLIN, 0};
    const int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno != EINTR) {
        err_ = std::string("poll: ") + std::strerror(errno);
        return false;
    }
    if (n == 1) {
        uint64_t count;
        (void)!::read(q_.eventfd, &count, sizeof(count));
    }
    // After a timeout too, so an interrupt the controller failed to raise is counted rather
    // than hanging the queue.
    const uint32_t taken = Reap(sink);
    if (n == 0) missed_interrupts_ += taken;
    return err_.empty();
}

}  // namespace qzns::load
