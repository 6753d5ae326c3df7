// The seam between the vfio-user server and an emulated device. The server owns the socket,
// the protocol, guest-memory mappings and interrupt eventfds; a device only sees in-bounds
// region accesses, a DmaSpace for guest memory and an IrqSink for interrupts. The PCI NVMe
// front end (nvme-pci.h) is one such device; tests use trivial ones.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "hw/vfio-user/protocol.h"
#include "util/status.h"

namespace qzns::vfu {

// Guest memory as a bus master sees it (IOVA = guest physical address with QEMU).
// Thread-safe. Accesses outside every DMA_MAP'ed range fail with EFAULT.
class DmaSpace {
public:
    virtual ~DmaSpace() = default;
    [[nodiscard]] virtual Status Read(uint64_t iova, void* buf, size_t len) = 0;
    [[nodiscard]] virtual Status Write(uint64_t iova, const void* buf, size_t len) = 0;
    // A direct pointer to [iova, iova + len) when a single fd-backed mapping with the needed
    // access covers it, else nullptr (use Read/Write). The pointer stays valid until the
    // device's DmaUnmapping() is called for an overlapping range, or the client disconnects.
    virtual uint8_t* Translate(uint64_t iova, size_t len, bool write) = 0;
};

// Interrupt delivery to the client. Thread-safe; a vector without an eventfd is dropped.
class IrqSink {
public:
    virtual ~IrqSink() = default;
    // Raises MSI-X vector `vector` when MSI-X eventfds are set up, else the INTx line if it
    // has an eventfd (the INTx line is then asserted until the client unmasks it). Returns
    // false if the interrupt went nowhere.
    virtual bool Trigger(uint32_t vector) = 0;
    // How many MSI-X vectors have an eventfd (0 when MSI-X is not enabled by the client).
    virtual uint32_t MsixVectorsEnabled() const = 0;
};

struct RegionDesc {
    uint64_t size = 0;   // 0: the region does not exist
    uint32_t flags = 0;  // kRegionFlagRead | kRegionFlagWrite
    // Optional: an fd the client may mmap at `mmap_offset`, for the `sparse` areas (offsets
    // within the region) or the whole region when `sparse` is empty. Borrowed.
    int mmap_fd = -1;
    uint64_t mmap_offset = 0;
    struct Area {
        uint64_t offset, size;
    };
    std::vector<Area> sparse;
};

struct IrqDesc {
    uint32_t count = 0;
    uint32_t flags = 0;  // kIrqInfoFlag*
};

class VfioUserDevice {
public:
    virtual ~VfioUserDevice() = default;

    virtual bool is_pci() const { return true; }
    virtual bool supports_reset() const { return true; }
    virtual uint32_t num_regions() const { return kPciNumRegions; }  // <= kClientMaxRegions
    virtual uint32_t num_irqs() const { return kPciNumIrqs; }        // <= kClientMaxIrqs
    virtual RegionDesc Region(uint32_t index) const = 0;
    virtual IrqDesc Irq(uint32_t index) const = 0;

    // The server has already checked that index < num_regions, the region exists and allows
    // the access, 1 <= data.size() and offset + data.size() <= size. An error Status becomes an
    // error reply to the client (its errno), never a crash.
    [[nodiscard]] virtual Status RegionRead(uint32_t index, uint64_t offset,
                                            std::span<uint8_t> data) = 0;
    [[nodiscard]] virtual Status RegionWrite(uint32_t index, uint64_t offset,
                                             std::span<const uint8_t> data) = 0;

    // DEVICE_RESET, and when a client disconnects.
    virtual void Reset() = 0;
    // A client connected (dma/irq non-null) or disconnected (both null). Called on the server
    // thread, never concurrently with region accesses.
    virtual void Attach(DmaSpace* dma, IrqSink* irq) = 0;
    // The client is about to unmap [iova, iova + size): stop using pointers into it and
    // finish in-flight DMA to it before returning (the spec requires that before the reply).
    virtual void DmaUnmapping(uint64_t /*iova*/, uint64_t /*size*/) {}
    // SET_IRQS changed IRQ index `index` (e.g. MSI-X vectors assigned).
    virtual void IrqsChanged(uint32_t /*index*/) {}
};

}  // namespace qzns::vfu
