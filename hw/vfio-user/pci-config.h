// A type-0 PCI configuration space with capabilities, as a vfio-user server exposes it in
// region 7. It keeps a write mask so client writes only change writable bits, and RW1C masks
// for status bits. QEMU emulates BAR placement and the MSI-X table itself; the server still
// answers every config read and accepts every config write.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "util/status.h"

namespace qzns::vfu {

namespace pci {
inline constexpr uint16_t kVendorId = 0x00;
inline constexpr uint16_t kDeviceId = 0x02;
inline constexpr uint16_t kCommand = 0x04;
inline constexpr uint16_t kStatus = 0x06;
inline constexpr uint16_t kRevisionId = 0x08;
inline constexpr uint16_t kClassProg = 0x09;
inline constexpr uint16_t kCacheLineSize = 0x0c;
inline constexpr uint16_t kHeaderType = 0x0e;
inline constexpr uint16_t kBar0 = 0x10;
inline constexpr uint16_t kSubsystemVendorId = 0x2c;
inline constexpr uint16_t kSubsystemId = 0x2e;
inline constexpr uint16_t kCapabilityList = 0x34;
inline constexpr uint16_t kInterruptLine = 0x3c;
inline constexpr uint16_t kInterruptPin = 0x3d;

inline constexpr uint16_t kCommandIo = 1u << 0;
inline constexpr uint16_t kCommandMemory = 1u << 1;
inline constexpr uint16_t kCommandMaster = 1u << 2;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;
inline constexpr uint16_t kStatusCapList = 1u << 4;

inline constexpr uint8_t kCapIdPm = 0x01;
inline constexpr uint8_t kCapIdMsix = 0x11;
inline constexpr uint8_t kCapIdExp = 0x10;

inline constexpr uint16_t kMsixFlagsEnable = 1u << 15;
inline constexpr uint16_t kMsixFlagsMaskAll = 1u << 14;
}  // namespace pci

class PciConfigSpace {
public:
    explicit PciConfigSpace(size_t size = 4096);

    void SetIds(uint16_t vendor, uint16_t device, uint16_t subsys_vendor, uint16_t subsys,
                uint8_t revision);
    void SetClass(uint32_t class_code);  // 24 bits: base << 16 | sub << 8 | prog-if
    // A memory BAR of `size` bytes (a power of two >= 16). A 64-bit BAR also takes bar + 1.
    void SetMemoryBar(int bar, uint64_t size, bool is64, bool prefetchable);
    void SetInterruptPin(uint8_t pin);  // 0 none, 1 INTA#

    // Capabilities are chained in the order added, from 0x40 upwards. Return their offsets.
    uint8_t AddPmCap();
    uint8_t AddMsixCap(uint16_t table_size, uint8_t table_bir, uint32_t table_offset,
                       uint8_t pba_bir, uint32_t pba_offset);
    uint8_t AddPcieCap();  // PCI Express v2 endpoint, x1 link at 2.5 GT/s

    size_t size() const { return cfg_.size(); }
    // Offsets and lengths are checked by the caller (the vfio-user server).
    void Read(uint64_t offset, std::span<uint8_t> out) const;
    void Write(uint64_t offset, std::span<const uint8_t> in);

    uint16_t Read16(size_t off) const { return uint16_t(cfg_[off] | cfg_[off + 1] << 8); }
    uint32_t Read32(size_t off) const { return Read16(off) | uint32_t(Read16(off + 2)) << 16; }
    bool bus_master() const { return Read16(pci::kCommand) & pci::kCommandMaster; }
    bool msix_enabled() const;
    bool msix_masked() const;
    // Restores the power-on contents (writable fields back to their defaults).
    void Reset() { cfg_ = reset_; }

private:
    uint8_t AddCap(uint8_t id, size_t len);
    void Set16(size_t off, uint16_t v);
    void Set32(size_t off, uint32_t v);
    void Mask16(size_t off, uint16_t m);
    void Mask32(size_t off, uint32_t m);

    std::vector<uint8_t> cfg_, wmask_, w1c_, reset_;
    uint8_t next_cap_ = 0x40;
    uint8_t last_cap_ = 0;
    uint8_t msix_cap_ = 0;
};

}  // namespace qzns::vfu
