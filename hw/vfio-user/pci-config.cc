#include "hw/vfio-user/pci-config.h"

namespace qzns::vfu {

PciConfigSpace::PciConfigSpace(size_t size)
    : cfg_(size, 0), wmask_(size, 0), w1c_(size, 0) {
    // Command: I/O, memory, bus master, parity, SERR, INTx disable.
    Mask16(pci::kCommand, 0x0547);
    // Status: parity error, signalled/received aborts, SERR, detected parity are RW1C.
    w1c_[pci::kStatus + 1] = 0xf9;
    cfg_[pci::kCacheLineSize] = 0;
    wmask_[pci::kCacheLineSize] = 0xff;
    wmask_[pci::kInterruptLine] = 0xff;
    cfg_[pci::kHeaderType] = 0;
    reset_ = cfg_;
}

void PciConfigSpace::Set16(size_t off, uint16_t v) {
    cfg_[off] = uint8_t(v);
    cfg_[off + 1] = uint8_t(v >> 8);
    reset_ = cfg_;
}
void PciConfigSpace::Set32(size_t off, uint32_t v) {
    Set16(off, uint16_t(v));
    Set16(off + 2, uint16_t(v >> 16));
}
void PciConfigSpace::Mask16(size_t off, uint16_t m) {
    wmask_[off] = uint8_t(m);
    wmask_[off + 1] = uint8_t(m >> 8);
}
void PciConfigSpace::Mask32(size_t off, uint32_t m) {
    Mask16(off, uint16_t(m));
    Mask16(off + 2, uint16_t(m >> 16));
}

void PciConfigSpace::SetIds(uint16_t vendor, uint16_t device, uint16_t subsys_vendor,
                            uint16_t subsys, uint8_t revision) {
    Set16(pci::kVendorId, vendor);
    Set16(pci::kDeviceId, device);
    Set16(pci::kSubsystemVendorId, subsys_vendor);
    Set16(pci::kSubsystemId, subsys);
    cfg_[pci::kRevisionId] = revision;
    reset_ = cfg_;
}

void PciConfigSpace::SetClass(uint32_t class_code) {
    cfg_[pci::kClassProg] = uint8_t(class_code);
    cfg_[pci::kClassProg + 1] = uint8_t(class_code >> 8);
    cfg_[pci::kClassProg + 2] = uint8_t(class_code >> 16);
    reset_ = cfg_;
}

void PciConfigSpace::SetMemoryBar(int bar, uint64_t size, bool is64, bool prefetchable) {
    size_t off = pci::kBar0 + 4 * size_t(bar);
    uint32_t type = (is64 ? 0x4u : 0u) | (prefetchable ? 0x8u : 0u);
    Set32(off, type);
    uint64_t mask = ~(size - 1);
    Mask32(off, uint32_t(mask) & ~0xfu);
    if (is64) {
        Set32(off + 4, 0);
        Mask32(off + 4, uint32_t(mask >> 32));
    }
}

void PciConfigSpace::SetInterruptPin(uint8_t pin) {
    cfg_[pci::kInterruptPin] = pin;
    reset_ = cfg_;
}

uint8_t PciConfigSpace::AddCap(uint8_t id, size_t len) {
    uint8_t off = next_cap_;
    cfg_[off] = id;
    cfg_[off + 1] = 0;
    if (last_cap_ == 0) {
        cfg_[pci::kCapabilityList] = off;
        Set16(pci::kStatus, Read16(pci::kStatus) | pci::kStatusCapList);
    } else {
        cfg_[last_cap_ + 1] = off;
    }
    last_cap_ = off;
    next_cap_ = uint8_t((off + len + 15) & ~size_t(15));
    reset_ = cfg_;
    return off;
}

uint8_t PciConfigSpace::AddPmCap() {
    uint8_t off = AddCap(pci::kCapIdPm, 8);
    Set16(off + 2, 0x0003);              // PMC: version 3, no PME
    Set16(off + 4, 0x0008);              // PMCSR: D0, No_Soft_Reset
    Mask16(off + 4, 0x0003);             // PowerState
    return off;
}

uint8_t PciConfigSpace::AddMsixCap(uint16_t table_size, uint8_t table_bir, uint32_t table_offset,
                                   uint8_t pba_bir, uint32_t pba_offset) {
    uint8_t off = AddCap(pci::kCapIdMsix, 12);
    Set16(off + 2, uint16_t(table_size - 1));
    Mask16(off + 2, pci::kMsixFlagsEnable | pci::kMsixFlagsMaskAll);
    Set32(off + 4, table_offset | table_bir);
    Set32(off + 8, pba_offset | pba_bir);
    msix_cap_ = off;
    return off;
}

uint8_t PciConfigSpace::AddPcieCap() {
    uint8_t off = AddCap(pci::kCapIdExp, 0x3c);
    Set16(off + 0x02, 0x0002);           // PCIe caps: version 2, endpoint (type 0)
    Set32(off + 0x04, 0x00008000);       // DevCap: role-based error reporting, MPS 128
    Set16(off + 0x08, 0x2810);           // DevCtl: MRRS 512, relaxed ordering off, ext tag
    Mask16(off + 0x08, 0x7cff);          // DevCtl writable bits
    w1c_[off + 0x0a] = 0x0f;             // DevSta error bits
    Set32(off + 0x0c, 0x00000011);       // LnkCap: 2.5 GT/s, x1
    Mask16(off + 0x10, 0x0ffb);          // LnkCtl
    Set16(off + 0x12, 0x0011);           // LnkSta: 2.5 GT/s, x1
    Set32(off + 0x24, 0x00000010);       // DevCap2: completion timeout disable supported
    Mask16(off + 0x28, 0x041f);          // DevCtl2
    return off;
}

bool PciConfigSpace::msix_enabled() const {
    return msix_cap_ && (Read16(msix_cap_ + 2) & pci::kMsixFlagsEnable);
}
bool PciConfigSpace::msix_masked() const {
    return msix_cap_ && (Read16(msix_cap_ + 2) & pci::kMsixFlagsMaskAll);
}

void PciConfigSpace::Read(uint64_t offset, std::span<uint8_t> out) const {
    for (size_t i = 0; i < out.size(); i++) {
        size_t o = size_t(offset) + i;
        out[i] = o < cfg_.size() ? cfg_[o] : 0xff;
    }
}

void PciConfigSpace::Write(uint64_t offset, std::span<const uint8_t> in) {
    for (size_t i = 0; i < in.size(); i++) {
        size_t o = size_t(offset) + i;
        if (o >= cfg_.size()) break;
        uint8_t v = in[i];
        cfg_[o] = uint8_t((cfg_[o] & ~wmask_[o]) | (v & wmask_[o]));
        cfg_[o] = uint8_t(cfg_[o] & ~(v & w1c_[o]));
    }
}

}  // namespace qzns::vfu
