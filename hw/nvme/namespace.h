// An NVMe namespace: a window of logical blocks onto a BlockBackend, with the Identify data
// that describes it. One zoned image can become two namespaces of the same controller.
//
// Namespace layout decisions (why, not what):
//  * Linux 6.1 refuses a ZNS namespace holding any zone type other than Sequential Write
//    Required (blk_revalidate_disk_zones: "invalid zone type"), and ZNS defines no conventional
//    zone type. An image's conventional zones (zone_nr_conv, always the first zones of the disk)
//    are therefore exported as a separate NVM (CSI 0) namespace covering backend bytes
//    [0, nr_conv * zone_size), and the zoned (CSI 2) namespace covers only the sequential zones:
//    its LBA 0 is backend byte nr_conv * zone_size. Every LBA crossing the seam goes through
//    Namespace::ByteOffset / LbaOfByte.
//  * NSIDs: the zoned namespace gets the NSID asked for (or the lowest free one), the
//    conventional-zone namespace the next free NSID after it. An image without sequential zones
//    (or a plain raw/qcow2 image) gives a single NVM namespace.
//  * NSZE is the number of sequential zones times ZSZE, so it is always a multiple of the zone
//    size (Linux: "Missing zones" otherwise). The zone size must be a power of two in 512-byte
//    sectors (Linux hides the block device otherwise); that is checked at namespace creation.
//  * LBA size is 512 or 4096 per namespace (a config choice, one LBA format, no metadata);
//    4096 needs zone size and capacity to be multiples of 4096.
//  * NGUID and UUID are derived from the subsystem NQN and NSID unless configured, so they are
//    stable across restarts and identical on every controller of the subsystem (multipath),
//    but differ between subsystems (Linux ignores namespaces with duplicate IDs).
//  * Reset/Finish Recommended Limits (RRL/FRL, seconds, 0 = off) are a device-model feature: a
//    zone Full for RRL seconds gets the RZR attribute, a zone active (open or closed) for FRL
//    seconds gets FZR; each such controller-initiated change lands in the Changed Zone List.
//    These attributes are volatile (as on a real drive, they are recommendations).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "block/block-backend.h"
#include "hw/nvme/spec.h"
#include "util/mutex.h"
#include "util/status.h"

namespace qzns::nvme {

struct NamespaceOptions {
    uint32_t nsid = 0;          // 0: the lowest free NSID
    uint32_t lba_size = 512;    // 512 or 4096
    bool export_conventional = true;  // conventional zones as their own CSI 0 namespace
    uint32_t rrl_seconds = 0;   // Reset Recommended Limit, 0 = not reported
    uint32_t frl_seconds = 0;   // Finish Recommended Limit, 0 = not reported
    std::optional<std::array<uint8_t, 16>> nguid;
    std::optional<std::array<uint8_t, 16>> uuid;
};

class Namespace {
public:
    // A zoned namespace over the sequential zones of `be`.
    static Result<std::shared_ptr<Namespace>> MakeZoned(std::shared_ptr<BlockBackend> be, uint32_t nsid,
                                                        const NamespaceOptions& opts);
    // An NVM namespace over backend bytes [base, base + bytes).
    static Result<std::shared_ptr<Namespace>> MakeConventional(std::shared_ptr<BlockBackend> be, uint32_t nsid,
                                                               const NamespaceOptions& opts, uint64_t base,
                                                               uint64_t bytes);

    uint32_t nsid() const { return nsid_; }
    uint8_t csi() const { return zoned_ ? kCsiZns : kCsiNvm; }
    bool zoned() const { return zoned_; }
    uint32_t lba_size() const { return 1u << lba_shift_; }
    unsigned lba_shift() const { return lba_shift_; }
    uint64_t nsze() const { return nsze_; }
    uint64_t base() const { return base_; }
    BlockBackend& backend() const { return *be_; }
    const std::shared_ptr<BlockBackend>& backend_ptr() const { return be_; }
    bool read_only() const { return be_->read_only(); }

    uint64_t ByteOffset(uint64_t lba) const { return base_ + (lba << lba_shift_); }
    uint64_t LbaOfByte(uint64_t off) const { return (off - base_) >> lba_shift_; }
    // [slba, slba + nlb) lies in the namespace (nlb >= 1).
    bool InRange(uint64_t slba, uint64_t nlb) const { return slba < nsze_ && nlb <= nsze_ - slba; }

    // ---- zoned namespaces ----
    uint64_t zsze() const { return zsze_; }        // LBAs
    uint64_t zcap() const { return zcap_; }        // LBAs
    uint32_t first_zone() const { return first_zone_; }  // backend index of zone 0
    uint32_t nr_zones() const { return nr_zones_; }
    uint32_t zdes() const { return zdes_; }        // descriptor extension, 64-byte units
    uint32_t max_append_bytes() const { return be_->max_append_bytes(); }
    // The namespace zone (ZSLBA) of a backend zone index, if it is one of ours.
    std::optional<uint64_t> ZslbaOfBackendZone(uint32_t zone) const;
    std::optional<uint32_t> BackendZoneOfLba(uint64_t lba) const;
    // Which backend zones belong to this namespace (conventional namespaces of a zoned image too).
    bool OwnsBackendZone(uint32_t zone) const;

    // Zone attributes the device model adds (RZR/FZR from RRL/FRL), by namespace zone index.
    uint8_t ExtraZoneAttrs(uint64_t zone_index, const ZoneInfo& zi);
    // Checks RRL/FRL against every zone's state; returns the ZSLBAs whose attributes changed.
    std::vector<uint64_t> ScanRecommendedLimits(std::chrono::steady_clock::time_point now);
    // The host reset zone `zone_index` (all zones if `all`): drops its RRL/FRL clock and
    // recommendations. Needed because a zone reset and refilled (or reopened) between two scans
    // is back in the state the last scan saw, which would otherwise keep the old clock and attrs.
    void ForgetZoneTimers(uint64_t zone_index, bool all);
    uint32_t rrl_seconds() const { return opts_.rrl_seconds; }
    uint32_t frl_seconds() const { return opts_.frl_seconds; }

    // ---- Identify data ----
    void FillIdNs(IdNs* id) const;
    void FillIdNsZns(IdNsZns* id) const;
    void FillIdNsIndependent(IdNsIndependent* id) const;
    // Namespace Identification Descriptor list (CNS 03h) into a 4096-byte buffer.
    void FillDescriptors(uint8_t* buf4096) const;

    const std::array<uint8_t, 16>& nguid() const { return nguid_; }
    const std::array<uint8_t, 16>& uuid() const { return uuid_; }
    // Derives NGUID/UUID from the subsystem NQN unless the options name them.
    void AssignIds(const std::string& subnqn);

private:
    Namespace() = default;

    std::shared_ptr<BlockBackend> be_;
    NamespaceOptions opts_;
    uint32_t nsid_ = 0;
    bool zoned_ = false;
    unsigned lba_shift_ = 9;
    uint64_t nsze_ = 0;
    uint64_t base_ = 0;
    uint64_t zsze_ = 0, zcap_ = 0;
    uint32_t first_zone_ = 0, nr_zones_ = 0;
    uint32_t zdes_ = 0;
    uint32_t backend_zone_end_ = 0;  // one past the last backend zone of this namespace
    std::array<uint8_t, 16> nguid_{};
    std::array<uint8_t, 16> uuid_{};

    // RRL/FRL tracking, by namespace zone index.
    struct ZoneTimer {
        ZoneState state = ZoneState::kEmpty;
        std::chrono::steady_clock::time_point since;
        uint8_t attrs = 0;  // RZR/FZR set by the model
    };
    util::Mutex timer_mu_;
    std::unordered_map<uint64_t, ZoneTimer> timers_ GUARDED_BY(timer_mu_);
};

}  // namespace qzns::nvme
