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
// Threading: region accesses (and therefore doorbells) arrive on the vfio-user server thread;
// SQ fetch runs there. Completions come from controller worker threads and are posted under
// mu_. Nothing spins: an idle controller costs nothing until the next doorbell write.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>

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
    uint64_t sq_doorbells = 0, cq_doorbells = 0, bad_doorbells = 0;
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

    struct Sq {
        Sq(uint64_t b, uint32_t n, uint16_t c) : base(b), entries(n), cqid(c) {}
        uint64_t base;
        uint32_t entries;
        uint16_t cqid;
        uint32_t head = 0, tail = 0;
    };
    struct Cq {
        Cq(uint64_t b, uint32_t n, bool ien, uint16_t v)
            : base(b), entries(n), irq_enabled(ien), vector(v) {}
        uint64_t base;
        uint32_t entries;
        bool irq_enabled;
        uint16_t vector;
        uint32_t head = 0, tail = 0;
        bool phase = true;
        std::deque<nvme::CqeBytes> overflow;  // completions waiting for CQ space
    };

    void RingSqDoorbell(uint16_t qid, uint32_t tail);
    void RingCqDoorbell(uint16_t qid, uint32_t head);
    void SubmitOne(uint16_t qid, const nvme::SqeBytes& sqe, uint64_t epoch);
    // Returns the vector to raise (or -1).
    int PostLocked(Cq& cq, const nvme::CqeBytes& cqe) REQUIRES(mu_);
    // with_data: the command went through the data path (counted in data_inflight_).
    void Complete(uint16_t qid, uint64_t epoch, nvme::CqeBytes cqe, bool with_data);
    // Fills in SQ head and ID and posts to the SQ's CQ; returns the vector to raise (or -1).
    int PostCompletionLocked(uint16_t qid, uint64_t epoch, nvme::CqeBytes cqe) REQUIRES(mu_);
    uint32_t page_size() const;

    const NvmePciOptions opts_;
    uint64_t bar0_size_;
    std::shared_ptr<nvme::Controller> ctrl_;
    mutable util::Mutex mu_;  // idle_cv_ signals inflight_ or data_inflight_ reaching 0
    PciConfigSpace cfg_ GUARDED_BY(mu_);
    DmaSpace* dma_ GUARDED_BY(mu_) = nullptr;
    IrqSink* irq_ GUARDED_BY(mu_) = nullptr;
    util::CondVar idle_cv_;
    std::map<uint16_t, Sq> sqs_ GUARDED_BY(mu_);
    std::map<uint16_t, Cq> cqs_ GUARDED_BY(mu_);
    uint64_t epoch_ GUARDED_BY(mu_) = 0;  // bumped by ResetQueues; stale completions are dropped
    uint32_t inflight_ GUARDED_BY(mu_) = 0;
    // Of inflight_, the commands whose data is being copied to or from guest memory, or whose
    // zero-copy span points into it: what a DMA_UNMAP must wait for.
    uint32_t data_inflight_ GUARDED_BY(mu_) = 0;
    NvmePciStats stats_ GUARDED_BY(mu_);
};

}  // namespace qzns::vfu
