// A small PCI device for vfio-user tests and for attaching to real QEMU: NVMe-like config
// space (class 01 08 02, PM, MSI-X, PCIe caps), BAR0 = 16 KiB of plain read/write registers,
// BAR4 = MSI-X table + PBA. It records what it was asked to do.
#pragma once

#include <atomic>
#include <cstring>
#include <vector>

#include "hw/vfio-user/device.h"
#include "hw/vfio-user/pci-config.h"
#include "util/mutex.h"

namespace qzns::vfu::testing {

class TestPciDevice : public VfioUserDevice {
public:
    static constexpr uint64_t kBar0Size = 0x4000;
    static constexpr uint64_t kBar4Size = 0x1000;
    static constexpr uint32_t kMsixVectors = 8;
    static constexpr uint32_t kPbaOffset = 0x800;

    TestPciDevice() : bar0_(kBar0Size, 0) {
        cfg_.SetIds(0x5a4e, 0x00fe, 0x5a4e, 0x00fe, 0);
        cfg_.SetClass(0x010802);
        cfg_.SetMemoryBar(0, kBar0Size, true, false);
        cfg_.SetMemoryBar(4, kBar4Size, false, false);
        cfg_.SetInterruptPin(1);
        cfg_.AddPmCap();
        cfg_.AddMsixCap(kMsixVectors, 4, 0, 4, kPbaOffset);
        cfg_.AddPcieCap();
    }

    RegionDesc Region(uint32_t index) const override {
        RegionDesc d;
        if (index == kPciConfigRegionIndex) {
            util::MutexLock lk(mu_);
            d.size = cfg_.size();
        } else if (index == 0) {
            d.size = kBar0Size;
        } else if (index == 4) {
            d.size = kBar4Size;
        } else {
            return d;
        }
        d.flags = kRegionFlagRead | kRegionFlagWrite;
        if (index == 0 && mmap_fd_ >= 0) {
            d.mmap_fd = mmap_fd_;
            d.sparse.push_back({0x1000, 0x1000});
        }
        return d;
    }
    IrqDesc Irq(uint32_t index) const override {
        if (index == kPciIntxIrqIndex)
            return {1, kIrqInfoFlagEventfd | kIrqInfoFlagMaskable | kIrqInfoFlagAutomasked};
        if (index == kPciMsixIrqIndex) return {kMsixVectors, kIrqInfoFlagEventfd | kIrqInfoFlagNoresize};
        return {};
    }
    Status RegionRead(uint32_t index, uint64_t offset, std::span<uint8_t> data) override {
        util::MutexLock lk(mu_);
        if (index == kPciConfigRegionIndex) cfg_.Read(offset, data);
        else if (index == 0) std::memcpy(data.data(), bar0_.data() + offset, data.size());
        else std::memset(data.data(), 0, data.size());  // PBA: nothing pending
        reads++;
        return Status::Ok();
    }
    Status RegionWrite(uint32_t index, uint64_t offset, std::span<const uint8_t> data) override {
        util::MutexLock lk(mu_);
        if (index == kPciConfigRegionIndex) cfg_.Write(offset, data);
        else if (index == 0) std::memcpy(bar0_.data() + offset, data.data(), data.size());
        writes++;
        return Status::Ok();
    }
    void Reset() override {
        util::MutexLock lk(mu_);
        resets++;
        std::fill(bar0_.begin(), bar0_.end(), 0);
        cfg_.Reset();
    }
    void Attach(DmaSpace* dma, IrqSink* irq) override {
        dma_ = dma;
        irq_ = irq;
    }
    void DmaUnmapping(uint64_t, uint64_t) override { unmaps++; }
    void IrqsChanged(uint32_t) override { irq_changes++; }

    void set_mmap_fd(int fd) { mmap_fd_ = fd; }
    DmaSpace* dma() const { return dma_; }
    IrqSink* irq() const { return irq_; }
    // Read from the test thread while the server thread may reset the device: under the lock.
    bool bus_master() const {
        util::MutexLock lk(mu_);
        return cfg_.bus_master();
    }

    std::atomic<int> reads{0}, writes{0}, resets{0}, unmaps{0}, irq_changes{0};

private:
    mutable util::Mutex mu_;
    PciConfigSpace cfg_ GUARDED_BY(mu_);
    std::vector<uint8_t> bar0_ GUARDED_BY(mu_);
    int mmap_fd_ = -1;
    std::atomic<DmaSpace*> dma_{nullptr};
    std::atomic<IrqSink*> irq_{nullptr};
};

}  // namespace qzns::vfu::testing
