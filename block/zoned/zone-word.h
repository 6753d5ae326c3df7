// The persisted description of one zone: a 64-bit word, stored big-endian in the image's zone table.
//   bits 63..60  state  (0 for conventional zones; else NVMe ZNS zone state values: 1 Empty, 2 Implicitly Opened,
//                        3 Explicitly Opened, 4 Closed, 0xD Read Only, 0xE Full, 0xF Offline)
//   bit  59      type   (0 sequential write required, 1 conventional)
//   bits 58..51  attrs  (NVMe Zone Attributes byte: ZFC 0, FZR 1, RZR 2, ZRWAV 3, ZDEV 7)
//   bits 50..0   wp     (write pointer, in 512-byte sectors from the start of the disk)
#pragma once

#include <cstdint>

namespace qzns {

enum class ZoneState : uint8_t {
    kNotWritePointer = 0x0,  // conventional zones (ZBC's NOT_WP condition)
    kEmpty = 0x1,
    kImplicitOpen = 0x2,
    kExplicitOpen = 0x3,
    kClosed = 0x4,
    kReadOnly = 0xD,
    kFull = 0xE,
    kOffline = 0xF,
};

enum class ZoneType : uint8_t { kSeqWriteRequired = 0, kConventional = 1 };

// Zone Attributes (NVMe ZNS Zone Descriptor, byte 2).
constexpr uint8_t kZoneAttrZfc = 1u << 0;    // finished by controller
constexpr uint8_t kZoneAttrFzr = 1u << 1;    // finish zone recommended
constexpr uint8_t kZoneAttrRzr = 1u << 2;    // reset zone recommended
constexpr uint8_t kZoneAttrZrwav = 1u << 3;  // ZRWA valid
constexpr uint8_t kZoneAttrZdev = 1u << 7;   // zone descriptor extension valid

inline bool IsValidZoneState(unsigned v) {
    return v == 0x0 || v == 0x1 || v == 0x2 || v == 0x3 || v == 0x4 || v == 0xD || v == 0xE || v == 0xF;
}

struct ZoneWord {
    static constexpr unsigned kStateShift = 60;
    static constexpr unsigned kTypeShift = 59;
    static constexpr unsigned kAttrShift = 51;
    static constexpr uint64_t kWpMask = (1ull << 51) - 1;

    uint64_t raw = 0;

    static ZoneWord Make(ZoneState s, ZoneType t, uint8_t attrs, uint64_t wp_sectors) {
        return ZoneWord{(static_cast<uint64_t>(s) << kStateShift) |
                        (static_cast<uint64_t>(t) << kTypeShift) |
                        (static_cast<uint64_t>(attrs) << kAttrShift) | (wp_sectors & kWpMask)};
    }
    unsigned state_bits() const { return static_cast<unsigned>(raw >> kStateShift); }
    ZoneState state() const { return static_cast<ZoneState>(state_bits()); }
    ZoneType type() const { return static_cast<ZoneType>((raw >> kTypeShift) & 1); }
    uint8_t attrs() const { return static_cast<uint8_t>(raw >> kAttrShift); }
    uint64_t wp() const { return raw & kWpMask; }
};

}  // namespace qzns
