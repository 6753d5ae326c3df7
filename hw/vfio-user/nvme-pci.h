// The PCI front end of a qzns NVMe controller, served over vfio-user: PCI config space
// (class 01 08 02, PM / MSI-X / PCIe capabilities), BAR0 = controller registers + doorbells
// (CAP.DSTRD = 0, stride 4), BAR4 = MSI-X table and PBA. It owns the queues that live in guest
// memory: SQ/CQ rings, PRP/SGL walking, completion posting with the phase tag, and MSI-X.
// Everything NVMe-semantic (registers, admin and I/O commands) is nvme::Controller's.
//
// IDs: vendor 0x5a4e ("NZ", not in pci.ids 2023.04.11), device 0x0001. Linux's nvme driver
// binds by class code, so no quirk entry applies. Pass real IDs through NvmePciOptions if a
// registered pair becomes available.
//
// Shadow doorbells (Doorbell Buffer Config, OACS bit 8): once the host gives a Shadow Doorbell
// page and an EventIdx page, an I/O queue's SQ tail / CQ head are read from the shadow page and
// the MMIO doorbell is only a wake-up the host sends when the EventIdx we publish says so
// (Linux nvme_dbbuf_update_and_check_event: MMIO iff EventIdx lies in [old, new) ). Each time
// we fetch from an SQ we publish EventIdx = the tail we consumed, then (full fence) read the
// shadow again: a host that wrote the shadow after our read but read the old EventIdx did not
// ring, and this second read sees its write (the host does the mirror image: shadow store, full
// barrier, EventIdx load). So the host rings once for the first command after each fetch, and a
// command never waits for another's completion to be seen. We also look at the shadow tail after
// every completion, which starts a command queued meanwhile before its doorbell message arrives
// (the message then finds nothing new). A CQ's EventIdx sits one behind the head we know, so
// the host never rings for it, except while completions wait for CQ space (EventIdx = head,
// the same publish-then-re-read). The admin queue keeps MMIO doorbells: Linux 6.1 never sets
// up shadow slots for qid 0 (nvme_dbbuf_init skips it); we publish its EventIdx = the value
// consumed so a host that did use them would still ring.
//
// Threading: region accesses (and therefore MMIO doorbells) arrive on the vfio-user server
// thread; SQ fetch runs there, and on a completing thread when shadow doorbells are on.
// Completions come from controller worker threads and are posted under mu_. Nothing spins: an
// idle controller costs nothing until the next doorbell write.
//
// Memory: an SQ gets one request per entry when it is created, and a request keeps what its
// data path needs (segment array sized for MDTS, bounce buffers pooled per SQ and grown to the
// largest transfer), so steady-state I/O allocates nothing (tests/vfio-user/alloc_test.cc).
// What stays allocated is bounded by the commands a host had in flight at once.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "hw/nvme/ctrl.h"
#include "hw/vfio-user/device.h"
#include "hw/vfio-user/nvme-dptr.h"
#include "hw/vfio-user/pci-config.h"
#include "util/mutex.h"

namespace qzns::vfu {

struct NvmePciOptions {
    uint16_t vendor_id = 0x5a4e;
    uint16_t device_id = 0x0001;
    uint16_t subsys_vendor_id = 0x5a4e;
    uint16_t subsys_id = 0x0001;
    uint32_t msix_vectors = 16;     // <= 128 (PBA at BAR4 + 0x800)
    uint32_t max_queue_pairs = 65;  // admin + 64 I/O; sizes the doorbell area
    // Called (from any thread) for every completion with a non-zero status, for debugging.
    std::function<void(uint16_t qid, uint16_t cid, uint16_t status)> on_error;
};

struct NvmePciStats {
    uint64_t sq_doorbells = 0, cq_doorbells = 0, bad_doorbells = 0;  // MMIO doorbell writes
    // Shadow doorbells: commands fetched that no MMIO doorbell announced (the host only wrote
    // the shadow tail), EventIdx values written, Doorbell Buffer Config commands accepted.
    uint64_t shadow_commands = 0, eventidx_writes = 0, dbbuf_configs = 0;
    bool dbbuf_active = false;
    uint64_t commands = 0, completions = 0, error_completions = 0, completions_dropped = 0, cq_overflow = 0;
    uint64_t dptr_errors = 0, zero_copy = 0, bounced = 0;
    uint32_t inflight = 0;  // fetched and not completed yet, AERs waiting for an event included
};

class NvmePciDevice final : public VfioUserDevice, private nvme::PciQueueHooks {
public:
    // Creates the PCI controller in `subsys`.
    static Result<std::unique_ptr<NvmePciDevice>> Create(std::shared_ptr<nvme::Subsystem> subsys,
                                                         NvmePciOptions opts = {});
    ~NvmePciDevice() override;

    // VfioUserDevice
    RegionDesc Region(uint32_t index) const override;
    IrqDesc Irq(uint32_t index) const override;
    Status RegionRead(uint32_t index, uint64_t offset, std::span<uint8_t> data) override;
    Status RegionWrite(uint32_t index, uint64_t offset, std::span<const uint8_t> data) override;
    void Reset() override;
    void Attach(DmaSpace* dma, IrqSink* irq) override;
    void DmaUnmapping(uint64_t iova, uint64_t size) override;

    nvme::Controller& controller() { return *ctrl_; }
    NvmePciStats stats() const;
    uint64_t bar0_size() const { return bar0_size_; }

private:
    NvmePciDevice(NvmePciOptions opts);

    // nvme::PciQueueHooks
    bool EnableAdminQueues(uint64_t asq, uint64_t acq, uint32_t sq_entries,
                           uint32_t cq_entries) override;
    uint16_t CreateIoCq(const nvme::IoCqParams& p) override;
    uint16_t CreateIoSq(const nvme::IoSqParams& p) override;
    void DeleteIoSq(uint16_t qid) override;
    void DeleteIoCq(uint16_t qid) override;
    void ResetQueues() override;
    uint16_t SetDoorbellBuffer(uint64_t dbs, uint64_t eis, uint32_t page_size) override;

    // One command from fetch to completion, and the memory its data path reuses, so a steady
    // stream of I/O allocates nothing. Taken from its SQ's pool at fetch (under mu_), owned by
    // the thread carrying the command until Complete gives it back (under mu_), before the CQE
    // is posted: the host may send a new command the moment it sees the CQE.
    struct RequestPool;
    struct BounceBuffer {
        std::unique_ptr<uint8_t[]> data;
        uint32_t capacity = 0;
    };
    struct Request {
        explicit Request(RequestPool* p) : pool(p) {}
        RequestPool* const pool;
        Request* next = nullptr;  // the pool's free list, or the batch being submitted
        uint16_t qid = 0;
        bool c2h = false;
        uint64_t epoch = 0;
        nvme::SqeBytes sqe{};
        DmaSpace* dma = nullptr;
        uint32_t bytes = 0;  // data transfer length
        uint32_t nsegs = 0;
        std::unique_ptr<DmaSegment[]> segs;  // seg_capacity_ entries, from its first data command on
        BounceBuffer bounce;                 // borrowed from the pool while the command bounces
    };
    // An SQ's requests: one per SQ entry, made with the SQ. A host may reuse an entry once it is
    // fetched, before the command completes; more commands in flight than entries grow the
    // pool, which never shrinks while the SQ lives. Bounce buffers are pooled apart from the
    // requests (only some commands bounce): as many as bounced at once, each grown to the
    // largest transfer it carried. The fields are mu_'s.
    struct RequestPool {
        explicit RequestPool(uint32_t entries);
        std::deque<Request> requests;  // addresses stay put as it grows
        Request* free = nullptr;
        std::vector<BounceBuffer> spare_bounce;  // capacity for one per entry, reserved
        uint32_t outstanding = 0;
        bool retired = false;  // its SQ is gone: freed when the last request comes back
    };
    struct Sq {
        Sq(uint16_t q, uint64_t b, uint32_t n, uint16_t c)
            : qid(q), base(b), entries(n), cqid(c), pool(std::make_unique<RequestPool>(n)) {}
        uint16_t qid;
        uint64_t base;
        uint32_t entries;
        uint16_t cqid;
        uint32_t head = 0, tail = 0;
        uint32_t mmio_covered = 0;    // fetched-to-be entries an MMIO doorbell announced
        std::unique_ptr<RequestPool> pool;
    };
    struct Cq {
        Cq(uint16_t q, uint64_t b, uint32_t n, bool ien, uint16_t v)
            : qid(q), base(b), entries(n), irq_enabled(ien), vector(v) {}
        uint16_t qid;
        uint64_t base;
        uint32_t entries;
        bool irq_enabled;
        uint16_t vector;
        uint32_t head = 0, tail = 0;
        bool phase = true;
        std::deque<nvme::CqeBytes> overflow;  // completions waiting for CQ space
    };
    // Requests fetched under mu_ and submitted after it is released, in SQ order.
    struct Batch {
        Request* head = nullptr;
        Request** tail = &head;
        uint32_t count = 0;
    };

    void RingSqDoorbell(uint16_t qid, uint32_t tail);
    void RingCqDoorbell(uint16_t qid, uint32_t head);
    // Fetches what SQ `qid` holds (tail from `mmio_tail` or the shadow page) and submits it.
    // Re-entered from an inline completion, it only marks the SQ in fetch_wanted_ for the
    // outer call's loop.
    void FetchAndSubmit(uint16_t qid, std::optional<uint32_t> mmio_tail);
    void FetchLocked(Sq& sq, std::optional<uint32_t> mmio_tail, Batch& out) REQUIRES(mu_);
    void SubmitOne(Request* r);
    Request* AcquireLocked(RequestPool& pool) REQUIRES(mu_);
    void ReleaseLocked(Request* r) REQUIRES(mu_);
    // Forget SQs; a pool with requests still out moves to retired_pools_ until they return.
    void EraseSqLocked(std::map<uint16_t, Sq>::iterator it) REQUIRES(mu_);
    void EraseAllSqsLocked() REQUIRES(mu_);
    // Returns the vector to raise (or -1).
    int PostLocked(Cq& cq, const nvme::CqeBytes& cqe) REQUIRES(mu_);
    // True when the CQ has no free entry, after looking at the shadow head if there is one.
    bool CqFullLocked(Cq& cq) REQUIRES(mu_);
    // Gives `r` back and posts its completion. with_data: the command went through the data
    // path (counted in data_inflight_).
    void Complete(Request* r, nvme::CqeBytes cqe, bool with_data);
    // Fills in SQ head and ID and posts to the SQ's CQ; returns the vector to raise (or -1).
    int PostCompletionLocked(uint16_t qid, uint64_t epoch, nvme::CqeBytes cqe) REQUIRES(mu_);
    uint32_t page_size() const;

    // Shadow doorbell slots: SQ y at 8y, CQ y at 8y + 4 in both pages (CAP.DSTRD = 0).
    bool ShadowedLocked(uint16_t qid) const REQUIRES(mu_) { return qid != 0 && qid < dbbuf_.slots; }
    // The shadow value of a slot, or nullopt when unreadable or >= entries (a host bug: we
    // keep what we had and count a bad doorbell).
    std::optional<uint32_t> ReadShadowLocked(uint64_t slot_off, uint32_t entries) REQUIRES(mu_);
    void WriteEventIdxLocked(uint64_t slot_off, uint32_t value) REQUIRES(mu_);
    void WriteShadowLocked(uint64_t slot_off, uint32_t value) REQUIRES(mu_);

    const NvmePciOptions opts_;
    uint64_t bar0_size_;
    std::shared_ptr<nvme::Controller> ctrl_;
    // Segments a request holds: enough for any PRP transfer within MDTS (n pages, n + 1
    // pieces); set by Create.
    uint32_t seg_capacity_ = 0;
    mutable util::Mutex mu_;  // idle_cv_ signals inflight_ or data_inflight_ reaching 0
    PciConfigSpace cfg_ GUARDED_BY(mu_);
    DmaSpace* dma_ GUARDED_BY(mu_) = nullptr;
    IrqSink* irq_ GUARDED_BY(mu_) = nullptr;
    util::CondVar idle_cv_;
    std::map<uint16_t, Sq> sqs_ GUARDED_BY(mu_);
    std::vector<std::unique_ptr<RequestPool>> retired_pools_ GUARDED_BY(mu_);
    // SQs an inline completion asked to fetch (bit per qid, max_queue_pairs bits): the
    // FetchAndSubmit loop running on that thread (or any other) fetches them.
    std::vector<uint64_t> fetch_wanted_ GUARDED_BY(mu_);
    uint32_t fetch_wanted_count_ GUARDED_BY(mu_) = 0;
    std::map<uint16_t, Cq> cqs_ GUARDED_BY(mu_);
    uint64_t epoch_ GUARDED_BY(mu_) = 0;  // bumped by ResetQueues; stale completions are dropped
    uint32_t inflight_ GUARDED_BY(mu_) = 0;
    // Of inflight_, the commands whose data is being copied to or from guest memory, or whose
    // zero-copy span points into it: what a DMA_UNMAP must wait for.
    uint32_t data_inflight_ GUARDED_BY(mu_) = 0;
    NvmePciStats stats_ GUARDED_BY(mu_);
    struct DoorbellBuffer {
        uint64_t dbs = 0, eis = 0;  // guest addresses of the Shadow Doorbell and EventIdx pages
        uint32_t slots = 0;         // queue pairs with a slot in the page; 0 = shadow doorbells off
    };
    DoorbellBuffer dbbuf_ GUARDED_BY(mu_);
};

}  // namespace qzns::vfu
