// The zone state machine: decides every zone transition of the NVMe Zoned Namespace Command Set
// (ZNS 1.1b §2.1 zone states, §3.4.1 Zone Append, §3.4.3 Zone Management Send) and of the ZBC host-managed profile, without doing any I/O.
// The zoned block layer calls it under the zone's lock, carries out the returned plan (data I/O,
// freeing storage, implicitly closing another zone) and then persists the plan's ZoneWord.
//
// Units: every LBA, count and write pointer here is in 512-byte sectors, as in ZoneWord.
// Persisted-word conventions (ValidateZoneWord enforces them; the image checker relies on it):
//   Empty: wp == zslba, no attributes.        Full: wp == zslba + zcap.
//   Offline: wp == zslba, no attributes.       Read Only: wp kept from the state it left.
//   Implicitly Opened: zslba < wp < zslba + zcap (a zone only gets there by writing).
//   Explicitly Opened / Closed: zslba <= wp < zslba + zcap.
//   Conventional zones: type bit set, state NotWritePointer / Read Only / Offline, wp == zslba,
//   no attributes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "block/zoned/zone-word.h"
#include "util/status.h"

namespace qzns {

// zoned_profile=zns|zbc. Both are served as NVMe; the profile changes the rules, not the wire.
enum class ZonedProfile : uint8_t { kZns, kZbc };

struct ZoneGeometry {
    uint64_t zslba = 0;  // first sector of the zone
    uint64_t zsze = 0;   // zone size
    uint64_t zcap = 0;   // writable capacity, <= zsze (== zsze for ZBC and conventional zones)
    ZoneType type = ZoneType::kSeqWriteRequired;

    uint64_t end() const { return zslba + zsze; }
    uint64_t cap_end() const { return zslba + zcap; }
};

struct ZoneLimits {
    ZonedProfile profile = ZonedProfile::kZns;
    uint32_t max_open = 0;       // 0 = unlimited (MOR = max_open - 1)
    uint32_t max_active = 0;     // 0 = unlimited (MAR = max_active - 1)
    uint64_t max_append = 0;     // sectors per Zone Append (from ZASL); 0 = unlimited
    bool zde_supported = false;  // ZDES != 0
};

// Device-wide counts of zones holding open / active resources (ZNS §2.1, zone resources).
struct ZoneResources {
    uint32_t implicit_open = 0;
    uint32_t explicit_open = 0;
    uint32_t closed = 0;

    uint32_t open() const { return implicit_open + explicit_open; }
    uint32_t active() const { return implicit_open + explicit_open + closed; }
    bool operator==(const ZoneResources&) const = default;
};

// Change to ZoneResources caused by one zone's transition.
struct ResourceDelta {
    int32_t implicit_open = 0;
    int32_t explicit_open = 0;
    int32_t closed = 0;

    bool operator==(const ResourceDelta&) const = default;
};

ZoneResources ApplyResourceDelta(ZoneResources res, ResourceDelta delta);

enum class ZoneActionKind : uint8_t {
    // Host commands.
    kWrite,    // Write / Write Zeroes / Copy destination: slba, nlb
    kAppend,   // Zone Append (ZNS only): nlb; the zone is the one whose zslba the host named
    kOpen,     // Zone Management Send ZSA 03h
    kClose,    // ZSA 01h
    kFinish,   // ZSA 02h
    kReset,    // ZSA 04h
    kOffline,  // ZSA 05h (ZNS only)
    kSetZde,   // ZSA 10h Set Zone Descriptor Extension (ZNS only)
    // Controller-initiated.
    kImplicitClose,  // close an Implicitly Opened zone to free an open resource
    kMakeReadOnly,   // media failure / fault injection
    kMakeOffline,    // media failure / fault injection
    kRecover,        // power cycle or unclean open: opened zones become Closed (or Empty)
};
inline constexpr size_t kZoneActionKindCount = 12;

struct ZoneAction {
    ZoneActionKind kind = ZoneActionKind::kWrite;
    uint64_t slba = 0;
    uint64_t nlb = 0;  // number of sectors, 1-based (the NVMe field is 0's based)

    static constexpr ZoneAction Of(ZoneActionKind k) { return ZoneAction{k, 0, 0}; }
    static constexpr ZoneAction Write(uint64_t slba, uint64_t nlb) {
        return ZoneAction{ZoneActionKind::kWrite, slba, nlb};
    }
    static constexpr ZoneAction Append(uint64_t nlb) { return ZoneAction{ZoneActionKind::kAppend, 0, nlb}; }
    static constexpr ZoneAction Open() { return Of(ZoneActionKind::kOpen); }
    static constexpr ZoneAction Close() { return Of(ZoneActionKind::kClose); }
    static constexpr ZoneAction Finish() { return Of(ZoneActionKind::kFinish); }
    static constexpr ZoneAction Reset() { return Of(ZoneActionKind::kReset); }
    static constexpr ZoneAction Offline() { return Of(ZoneActionKind::kOffline); }
    static constexpr ZoneAction SetZde() { return Of(ZoneActionKind::kSetZde); }
    static constexpr ZoneAction ImplicitClose() { return Of(ZoneActionKind::kImplicitClose); }
    static constexpr ZoneAction MakeReadOnly() { return Of(ZoneActionKind::kMakeReadOnly); }
    static constexpr ZoneAction MakeOffline() { return Of(ZoneActionKind::kMakeOffline); }
    static constexpr ZoneAction Recover() { return Of(ZoneActionKind::kRecover); }
};

// Why an action was refused: one value per refusal a ZNS or ZBC host can be told about. The
// block layer knows no wire codes; hw/nvme/status.cc maps each to its NVMe status.
enum class ZoneError : uint8_t {
    kNone = 0,
    kInvalidOpcode,                // generic 01h: Zone Append under the ZBC profile
    kInvalidField,                 // generic 02h
    kLbaOutOfRange,                // generic 80h
    kZoneBoundaryError,            // B8h
    kZoneIsFull,                   // B9h
    kZoneIsReadOnly,               // BAh
    kZoneIsOffline,                // BBh
    kZoneInvalidWrite,             // BCh
    kTooManyActiveZones,           // BDh
    kTooManyOpenZones,             // BEh
    kInvalidZoneStateTransition,   // BFh
};

const char* ZoneErrorName(ZoneError err);
const char* ZoneStateName(ZoneState state);
const char* ZoneActionName(ZoneActionKind kind);

// What the block layer must do when an action is accepted.
struct ZonePlan {
    ZoneWord word;         // the zone's new word (persist it; new wp is word.wp())
    bool changed = false;  // word differs from the input word
    ResourceDelta delta;   // this zone's change to the device-wide counters
    // Write: slba. Append: the LBA the data lands at, returned in CQE DW0-1.
    uint64_t assigned_lba = 0;
    // Before applying this plan the caller closes one other Implicitly Opened zone of its choice
    // (e.g. the least recently written) with ZoneAction::ImplicitClose(); that zone's own plan
    // carries its counter change. Only implicit opens (and, for ZBC, explicit opens and finishes)
    // do this; ZNS explicit opens never evict.
    bool close_one_implicit_open = false;
    bool became_full = false;  // a write/append reached zone capacity
    // Free the zone's storage in [discard_begin, discard_end) so old data is never readable
    // again (Reset, Offline, and Finish beyond the old wp). Empty when begin == end.
    uint64_t discard_begin = 0;
    uint64_t discard_end = 0;
    bool store_zde = false;  // Set ZDE: persist the host's descriptor extension data
    bool clear_zde = false;  // the zone's descriptor extension stopped being valid
    // Conventional zones only: the write runs past this zone's end; the caller checks the next
    // zone with CheckZoneCrossing() and DecideZoneAction() for the remainder.
    bool spills_into_next_zone = false;

    bool discards() const { return discard_end > discard_begin; }
};

struct [[nodiscard]] ZoneDecision {
    ZoneError error = ZoneError::kNone;
    ZonePlan plan;  // meaningful only when ok()

    bool ok() const { return error == ZoneError::kNone; }
};

// Decides one action on one zone. `res` are the device-wide counters before the action.
// The caller has already checked the range against the namespace (CheckLbaRange) and, for zone
// management and Zone Append, that the host's SLBA is this zone's start (CheckZoneStartLba).
[[nodiscard]] ZoneDecision DecideZoneAction(ZoneWord word, const ZoneGeometry& geo,
                                            const ZoneResources& res, const ZoneLimits& limits,
                                            ZoneAction action);

struct [[nodiscard]] ReadDecision {
    ZoneError error = ZoneError::kNone;
    uint64_t in_zone_nlb = 0;   // sectors of the range that lie in this zone
    uint64_t readable_nlb = 0;  // leading sectors below the wp; the rest of in_zone_nlb reads zeros
    bool spills_into_next_zone = false;

    bool ok() const { return error == ZoneError::kNone; }
};

// Read checks (ZNS §3.3.5 Read): Offline zones fail with Zone Is Offline;
// leaving a sequential zone fails with Zone Boundary Error unless `razb` (OZCS.RAZB) is set.
[[nodiscard]] ReadDecision DecideZoneRead(ZoneWord word, const ZoneGeometry& geo, uint64_t slba,
                                          uint64_t nlb, bool razb);

// Whether a command may continue from zone `from` into the next zone `to`: writes only between
// conventional zones (ZBC), reads also when RAZB is set.
[[nodiscard]] ZoneError CheckZoneCrossing(ZoneType from, ZoneType to, bool is_write, bool razb);

// LBA Out of Range when [slba, slba + nlb) leaves the namespace; Invalid Field for nlb == 0.
[[nodiscard]] ZoneError CheckLbaRange(uint64_t nsze, uint64_t slba, uint64_t nlb);

// Zone Management Send (without Select All) and Zone Append must name a zone start:
// Invalid Field in Command otherwise.
[[nodiscard]] ZoneError CheckZoneStartLba(const ZoneGeometry& geo, uint64_t slba);

// Select All (Zone Management Send CDW13 bit 8): whether `action` is applied to a zone in `state`.
// Close: opened zones. Finish: opened and closed. Open: closed. Reset: opened, closed, full.
// Offline: read only. Set ZDE and controller actions: never (they name one zone).
bool AppliesToSelectAll(ZoneActionKind action, ZoneState state);

// Open with Select All opens every Closed zone or none: Too Many Open Zones when that would exceed
// max_open. Under ZBC, implicitly opened zones can be closed to make room, so they do not count.
[[nodiscard]] ZoneError CheckSelectAllOpen(const ZoneResources& res, const ZoneLimits& limits);

// True when opening one more zone needs an open resource that is only available by implicitly
// closing an Implicitly Opened zone (ZNS §2.1: the controller may close one to make room).
bool MustCloseImplicitToOpen(const ZoneResources& res, const ZoneLimits& limits);

// Recounts the counters from every zone's word (image open, after recovery, in the checker).
ZoneResources CountZoneResources(std::span<const ZoneWord> words);

// The word of a freshly created or formatted zone.
ZoneWord InitialZoneWord(const ZoneGeometry& geo);

// Checks a persisted word against the conventions at the top of this file.
[[nodiscard]] Status ValidateZoneWord(ZoneWord word, const ZoneGeometry& geo);

// Checks one zone's geometry: 0 < zcap <= zsze, zcap == zsze for ZBC and conventional zones,
// zslba a multiple of zsze, and the zone addressable by the 51-bit wp field.
[[nodiscard]] Status ValidateZoneGeometry(const ZoneGeometry& geo, ZonedProfile profile);

}  // namespace qzns
