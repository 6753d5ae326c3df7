// The NVMe controller behind a vfio-user socket, brought up the way Linux's nvme-pci driver
// does it: CC.EN with the admin queue in guest memory, Identify, Set Features Number of Queues,
// Create I/O CQ + SQ per queue (an MSI-X vector each), then Doorbell Buffer Config (Linux
// sends it after creating the queues, nvme_dbbuf_set). Admin commands run one at a time; each
// waits for vector 0's eventfd.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/nvme-cmd.h"
#include "bench/vfio-user-load/client.h"
#include "bench/vfio-user-load/guest-memory.h"
#include "hw/vfio-user/message.h"

namespace qzns::load {

// BAR0 offsets (Base 2.0 §3.1.4) with CAP.DSTRD = 0: SQ y tail at 8y, CQ y head at 8y + 4 from
// 1000h; the shadow and EventIdx pages use the same slots from their start.
inline constexpr uint32_t kDoorbells = 0x1000;
inline uint32_t SqSlot(uint16_t qid) { return 8u * qid; }
inline uint32_t CqSlot(uint16_t qid) { return 8u * qid + 4; }

struct QueueRings {
    uint16_t qid = 0;
    uint32_t entries = 0;
    GuestBuffer sq, cq;
    int eventfd = -1;  // MSI-X vector qid
};

class PciController {
public:
    // Admin queue, Identify data and the shadow doorbell pages come from `mem`, which the
    // server must have mapped already.
    PciController(VfioUserClient& c, GuestMemory& mem) : c_(c), mem_(mem) {}

    // MSI-X eventfds for the admin queue and io_queues I/O queues, bus mastering, CC.EN.
    bool Enable(uint32_t io_queues, std::string* err);
    bool Identify(uint32_t nsid, Geometry* g, std::string* err);
    // Number of Queues; then one CQ + SQ pair per qid 1..n with `entries` entries each, their
    // rings in `rings_mem`.
    bool CreateQueues(uint32_t n, uint32_t entries, GuestMemory& rings_mem, std::vector<QueueRings>* out,
                      std::string* err);
    // Doorbell Buffer Config: false with *err empty when the controller does not offer it.
    bool EnableShadowDoorbells(std::string* err);

    // What Linux does at poweroff once its queues are idle: Delete I/O SQ then CQ for qid
    // 1..n (nvme_disable_io_queues), then a normal shutdown (CC.SHN = 01b) until CSTS.SHST
    // says complete.
    bool Shutdown(uint32_t n, std::string* err);

    uint32_t max_entries() const { return max_entries_; }
    uint8_t* shadow() const { return shadow_.ptr; }
    uint8_t* eventidx() const { return eventidx_.ptr; }

private:
    // Runs one admin command (PRP1 = data page when `data`); status 0 or the reason in *err.
    bool Admin(uint8_t* sqe, const GuestBuffer* data, uint32_t* dw0, std::string* err);

    VfioUserClient& c_;
    GuestMemory& mem_;
    std::vector<vfu::UniqueFd> eventfds_;
    GuestBuffer asq_, acq_, data_, shadow_, eventidx_;
    uint32_t sq_tail_ = 0, cq_head_ = 0;
    uint16_t phase_ = 1, cid_ = 0;
    uint32_t max_entries_ = 0;
    uint16_t oacs_ = 0;
};

}  // namespace qzns::load
