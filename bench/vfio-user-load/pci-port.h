// An I/O queue pair in guest memory, driven as Linux's nvme-pci driver drives one: the SQE
// goes into the SQ ring with PRPs to a per-command buffer, the new tail goes to the shadow
// doorbell and the MMIO doorbell (a posted REGION_WRITE) is rung only when the EventIdx the
// controller published asks for it (nvme_dbbuf_update_and_check_event), or always without
// shadow doorbells. Completions are awaited on the queue's MSI-X eventfd, as a guest waits for
// its interrupt, then taken from the CQ by phase tag, and the CQ head is written back the same
// way as the SQ tail.
#pragma once

#include <string>
#include <vector>

#include "bench/load/queue-port.h"
#include "bench/vfio-user-load/pci-controller.h"

namespace qzns::load {

class PciQueuePort final : public QueuePort {
public:
    // shadow / eventidx: the Doorbell Buffer Config pages, or nullptr for MMIO doorbells only.
    PciQueuePort(VfioUserClient& c, const QueueRings& rings, uint8_t* shadow, uint8_t* eventidx)
        : c_(c), q_(rings), shadow_(shadow), eventidx_(eventidx) {}
    // Buffers for CIDs [0, slots), each up to max_bytes (at most 2 MiB: one PRP list page).
    bool Init(GuestMemory& mem, uint32_t slots, uint32_t max_bytes, std::string* err);

    void Submit(uint8_t* sqe, uint32_t len, DataDir dir, QueueSink& sink) override;
    bool Poll(int timeout_ms, QueueSink& sink) override;
    const std::string& error() const override { return err_; }

    uint64_t mmio_doorbells() const { return mmio_doorbells_; }
    // Completions found in the CQ after a wait for the eventfd timed out: the controller
    // posted them without raising their interrupt.
    uint64_t missed_interrupts() const { return missed_interrupts_; }

private:
    struct Command {
        GuestBuffer buf, prp_list;
        uint32_t len = 0;
        DataDir dir = DataDir::kNone;
    };
    // Publishes a new SQ tail or CQ head in doorbell slot `slot`.
    bool Ring(uint32_t slot, uint32_t value);
    // Returns how many completions it took.
    uint32_t Reap(QueueSink& sink);

    VfioUserClient& c_;
    QueueRings q_;
    uint8_t* shadow_;
    uint8_t* eventidx_;
    std::vector<Command> cmds_;
    uint32_t sq_tail_ = 0, sq_rung_ = 0, cq_head_ = 0;
    uint16_t phase_ = 1;
    uint64_t mmio_doorbells_ = 0, missed_interrupts_ = 0;
    std::string err_;
};

}  // namespace qzns::load
