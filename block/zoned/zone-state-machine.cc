// Zone transitions as two tables (ZNS and ZBC), indexed by state and action, plus the write
// pointer and resource checks that the tables cannot express.
#include "block/zoned/zone-state-machine.h"

#include <array>
#include <cinttypes>
#include <cstdio>
#include <string>

namespace qzns {
namespace {

constexpr uint64_t kMaxSector = ZoneWord::kWpMask;  // largest LBA a wp can hold

// ---------------------------------------------------------------------------------------------
// The tables.

enum class Verdict : uint8_t {
    kReject,        // fail with `error`
    kKeep,          // success, nothing changes
    kMove,          // go to `to`; resources are checked as if entering `via`
    kWrite,         // write pointer checks, then `to` (or Full at capacity), resources for `via`
    kCloseOrEmpty,  // Closed, or Empty when nothing was written and no ZDE is attached
};

struct Rule {
    Verdict verdict;
    ZoneState to;
    ZoneState via;
    ZoneError error;
};

using S = ZoneState;
using E = ZoneError;

constexpr Rule Reject(ZoneError e) { return Rule{Verdict::kReject, S::kEmpty, S::kEmpty, e}; }
constexpr Rule Keep() { return Rule{Verdict::kKeep, S::kEmpty, S::kEmpty, E::kNone}; }
constexpr Rule Move(ZoneState to) { return Rule{Verdict::kMove, to, to, E::kNone}; }
constexpr Rule MoveVia(ZoneState to, ZoneState via) { return Rule{Verdict::kMove, to, via, E::kNone}; }
constexpr Rule WriteAs(ZoneState to) { return Rule{Verdict::kWrite, to, to, E::kNone}; }
constexpr Rule CloseOrEmpty() { return Rule{Verdict::kCloseOrEmpty, S::kClosed, S::kClosed, E::kNone}; }

constexpr Rule X = Reject(E::kInvalidZoneStateTransition);

// Rows: the seven sequential-zone states. Columns: ZoneActionKind order.
constexpr size_t kRows = 7;
using RuleTable = std::array<std::array<Rule, kZoneActionKindCount>, kRows>;

constexpr int RowOf(ZoneState s) {
    switch (s) {
    case S::kEmpty: return 0;
    case S::kImplicitOpen: return 1;
    case S::kExplicitOpen: return 2;
    case S::kClosed: return 3;
    case S::kReadOnly: return 4;
    case S::kFull: return 5;
    case S::kOffline: return 6;
    case S::kNotWritePointer: break;
    }
    return -1;
}

// ZNS 1.1b §2.1 (zone state machine) and §3.4.3 (Zone Management Send, per-action transitions).
// Finish of Empty goes straight to Full without taking a resource; Set ZDE takes Empty to
// Closed (needs an active resource); Offline only from Read Only. "Keep" rows are the spec's
// "no change, success" entries.
constexpr RuleTable kZnsRules = {{
    //   Write            Append           Open             Close            Finish          Reset           Offline          SetZde          ImplClose        MakeRO          MakeOffline     Recover
    /* Empty */ {{WriteAs(S::kImplicitOpen), WriteAs(S::kImplicitOpen), Move(S::kExplicitOpen), X,
                  Move(S::kFull), Move(S::kEmpty), X, Move(S::kClosed), X, Move(S::kReadOnly),
                  Move(S::kOffline), Keep()}},
    /* IO    */ {{WriteAs(S::kImplicitOpen), WriteAs(S::kImplicitOpen), Move(S::kExplicitOpen),
                  Move(S::kClosed), Move(S::kFull), Move(S::kEmpty), X, X, Move(S::kClosed),
                  Move(S::kReadOnly), Move(S::kOffline), CloseOrEmpty()}},
    /* EO    */ {{WriteAs(S::kExplicitOpen), WriteAs(S::kExplicitOpen), Keep(), Move(S::kClosed),
                  Move(S::kFull), Move(S::kEmpty), X, X, X, Move(S::kReadOnly), Move(S::kOffline),
                  CloseOrEmpty()}},
    /* C     */ {{WriteAs(S::kImplicitOpen), WriteAs(S::kImplicitOpen), Move(S::kExplicitOpen), Keep(),
                  Move(S::kFull), Move(S::kEmpty), X, X, X, Move(S::kReadOnly), Move(S::kOffline),
                  Keep()}},
    /* RO    */ {{Reject(E::kZoneIsReadOnly), Reject(E::kZoneIsReadOnly), X, X, X, X, Move(S::kOffline),
                  X, X, Keep(), Move(S::kOffline), Keep()}},
    /* Full  */ {{Reject(E::kZoneIsFull), Reject(E::kZoneIsFull), X, X, Keep(), Move(S::kEmpty), X, X, X,
                  Move(S::kReadOnly), Move(S::kOffline), Keep()}},
    /* Off   */ {{Reject(E::kZoneIsOffline), Reject(E::kZoneIsOffline), X, X, X, X, Keep(), X, X, X,
                  Keep(), Keep()}},
}};

// ZBC host-managed rules where they differ from ZNS (ZBC-2 zone condition state machine, as
// exercised by libzbc's conformance suite section 02):
// - CLOSE ZONE of an opened zone whose wp is at the zone start makes it EMPTY, not CLOSED;
//   CLOSE of EMPTY or FULL, and OPEN of FULL, succeed without change.
// - FINISH of EMPTY or CLOSED passes through an open condition, so it needs an open resource.
// - No Zone Append, Offline Zone or zone descriptor extensions (refused before the table).
constexpr RuleTable kZbcRules = {{
    /* Empty */ {{WriteAs(S::kImplicitOpen), X, Move(S::kExplicitOpen), Keep(),
                  MoveVia(S::kFull, S::kExplicitOpen), Move(S::kEmpty), X, X, X, Move(S::kReadOnly),
                  Move(S::kOffline), Keep()}},
    /* IO    */ {{WriteAs(S::kImplicitOpen), X, Move(S::kExplicitOpen), CloseOrEmpty(), Move(S::kFull),
                  Move(S::kEmpty), X, X, CloseOrEmpty(), Move(S::kReadOnly), Move(S::kOffline),
                  CloseOrEmpty()}},
    /* EO    */ {{WriteAs(S::kExplicitOpen), X, Keep(), CloseOrEmpty(), Move(S::kFull), Move(S::kEmpty), X,
                  X, X, Move(S::kReadOnly), Move(S::kOffline), CloseOrEmpty()}},
    /* C     */ {{WriteAs(S::kImplicitOpen), X, Move(S::kExplicitOpen), Keep(),
                  MoveVia(S::kFull, S::kExplicitOpen), Move(S::kEmpty), X, X, X, Move(S::kReadOnly),
                  Move(S::kOffline), Keep()}},
    /* RO    */ {{Reject(E::kZoneIsReadOnly), X, X, X, X, X, X, X, X, Keep(), Move(S::kOffline), Keep()}},
    /* Full  */ {{Reject(E::kZoneIsFull), X, Keep(), Keep(), Keep(), Move(S::kEmpty), X, X, X,
                  Move(S::kReadOnly), Move(S::kOffline), Keep()}},
    /* Off   */ {{Reject(E::kZoneIsOffline), X, X, X, X, X, X, X, X, X, Keep(), Keep()}},
}};

// ---------------------------------------------------------------------------------------------
// Resources.

ResourceDelta CountsOf(ZoneState s) {
    ResourceDelta d;
    if (s == S::kImplicitOpen) d.implicit_open = 1;
    if (s == S::kExplicitOpen) d.explicit_open = 1;
    if (s == S::kClosed) d.closed = 1;
    return d;
}

ResourceDelta DeltaOf(ZoneState from, ZoneState to) {
    ResourceDelta a = CountsOf(from), b = CountsOf(to);
    return ResourceDelta{b.implicit_open - a.implicit_open, b.explicit_open - a.explicit_open,
                         b.closed - a.closed};
}

// Checks that entering `via` from `from` fits max_active and max_open (active first, ZNS
// §2.1 zone resources); sets *evict when room must be made by closing an implicitly opened zone.
ZoneError CheckResources(ZoneState from, ZoneState via, const ZoneResources& res,
                         const ZoneLimits& limits, bool* evict) {
    ResourceDelta d = DeltaOf(from, via);
    int64_t add_active = int64_t{d.implicit_open} + d.explicit_open + d.closed;
    int64_t add_open = int64_t{d.implicit_open} + d.explicit_open;
    if (add_active > 0 && limits.max_active != 0 &&
        int64_t{res.active()} + add_active > int64_t{limits.max_active}) {
        return E::kTooManyActiveZones;
    }
    if (add_open > 0 && limits.max_open != 0 &&
        int64_t{res.open()} + add_open > int64_t{limits.max_open}) {
        // ZNS lets the controller close an implicitly opened zone only for an implicit open;
        // ZBC also does it for OPEN ZONE and FINISH ZONE.
        bool may_evict = via == S::kImplicitOpen ||
                         (limits.profile == ZonedProfile::kZbc && via == S::kExplicitOpen);
        if (may_evict && res.implicit_open > 0 &&
            int64_t{res.open()} - 1 + add_open <= int64_t{limits.max_open}) {
            *evict = true;
        } else {
            return E::kTooManyOpenZones;
        }
    }
    return E::kNone;
}

ZoneDecision Fail(ZoneError e) {
    ZoneDecision d;
    d.error = e;
    return d;
}

// Builds the plan for landing in `to` from `word`.
ZoneDecision Land(ZoneWord word, const ZoneGeometry& geo, ZoneState to, uint64_t wp, uint8_t attrs) {
    ZoneDecision d;
    d.plan.word = ZoneWord::Make(to, geo.type, attrs, wp);
    d.plan.changed = d.plan.word.raw != word.raw;
    d.plan.delta = DeltaOf(word.state(), to);
    return d;
}

ZoneDecision DecideConventional(ZoneWord word, const ZoneGeometry& geo, const ZoneLimits& limits,
                                ZoneAction action) {
    const ZoneState s = word.state();
    switch (action.kind) {
    case ZoneActionKind::kWrite: {
        if (action.nlb == 0 || action.slba < geo.zslba || action.slba >= geo.end()) {
            return Fail(E::kInvalidField);
        }
        if (s == S::kReadOnly) return Fail(E::kZoneIsReadOnly);
        if (s == S::kOffline) return Fail(E::kZoneIsOffline);
        ZoneDecision d = Land(word, geo, s, word.wp(), word.attrs());
        d.plan.assigned_lba = action.slba;
        d.plan.spills_into_next_zone = action.nlb > geo.end() - action.slba;
        return d;
    }
    case ZoneActionKind::kAppend:
        // Zone Append targets sequential zones; ZBC has no append at all.
        return Fail(limits.profile == ZonedProfile::kZbc ? E::kInvalidOpcode : E::kInvalidField);
    case ZoneActionKind::kOpen:
    case ZoneActionKind::kClose:
    case ZoneActionKind::kFinish:
    case ZoneActionKind::kReset:
    case ZoneActionKind::kOffline:
    case ZoneActionKind::kSetZde:
        // ZBC: zone commands naming a conventional zone are INVALID FIELD IN CDB.
        return Fail(E::kInvalidField);
    case ZoneActionKind::kImplicitClose:
        return Fail(E::kInvalidZoneStateTransition);
    case ZoneActionKind::kMakeReadOnly:
        if (s == S::kOffline) return Fail(E::kInvalidZoneStateTransition);
        return Land(word, geo, S::kReadOnly, geo.zslba, 0);
    case ZoneActionKind::kMakeOffline: {
        ZoneDecision d = Land(word, geo, S::kOffline, geo.zslba, 0);
        if (s != S::kOffline) {
            d.plan.discard_begin = geo.zslba;
            d.plan.discard_end = geo.end();
        }
        return d;
    }
    case ZoneActionKind::kRecover:
        return Land(word, geo, s, word.wp(), word.attrs());
    }
    return Fail(E::kInvalidField);
}

}  // namespace

// -------------------------------------------------------------------------------------------------

ZoneResources ApplyResourceDelta(ZoneResources res, ResourceDelta delta) {
    res.implicit_open = static_cast<uint32_t>(int64_t{res.implicit_open} + delta.implicit_open);
    res.explicit_open = static_cast<uint32_t>(int64_t{res.explicit_open} + delta.explicit_open);
    res.closed = static_cast<uint32_t>(int64_t{res.closed} + delta.closed);
    return res;
}

const char* ZoneErrorName(ZoneError err) {
    switch (err) {
    case E::kNone: return "success";
    case E::kInvalidOpcode: return "invalid command opcode";
    case E::kInvalidField: return "invalid field in command";
    case E::kLbaOutOfRange: return "LBA out of range";
    case E::kZoneBoundaryError: return "zone boundary error";
    case E::kZoneIsFull: return "zone is full";
    case E::kZoneIsReadOnly: return "zone is read only";
    case E::kZoneIsOffline: return "zone is offline";
    case E::kZoneInvalidWrite: return "zone invalid write";
    case E::kTooManyActiveZones: return "too many active zones";
    case E::kTooManyOpenZones: return "too many open zones";
    case E::kInvalidZoneStateTransition: return "invalid zone state transition";
    }
    return "unknown zone error";
}

const char* ZoneStateName(ZoneState state) {
    switch (state) {
    case S::kNotWritePointer: return "not-write-pointer";
    case S::kEmpty: return "empty";
    case S::kImplicitOpen: return "implicitly-opened";
    case S::kExplicitOpen: return "explicitly-opened";
    case S::kClosed: return "closed";
    case S::kReadOnly: return "read-only";
    case S::kFull: return "full";
    case S::kOffline: return "offline";
    }
    return "invalid";
}

const char* ZoneActionName(ZoneActionKind kind) {
    switch (kind) {
    case ZoneActionKind::kWrite: return "write";
    case ZoneActionKind::kAppend: return "append";
    case ZoneActionKind::kOpen: return "open";
    case ZoneActionKind::kClose: return "close";
    case ZoneActionKind::kFinish: return "finish";
    case ZoneActionKind::kReset: return "reset";
    case ZoneActionKind::kOffline: return "offline";
    case ZoneActionKind::kSetZde: return "set-zde";
    case ZoneActionKind::kImplicitClose: return "implicit-close";
    case ZoneActionKind::kMakeReadOnly: return "make-read-only";
    case ZoneActionKind::kMakeOffline: return "make-offline";
    case ZoneActionKind::kRecover: return "recover";
    }
    return "invalid";
}

ZoneDecision DecideZoneAction(ZoneWord word, const ZoneGeometry& geo, const ZoneResources& res,
                              const ZoneLimits& limits, ZoneAction action) {
    const bool zbc = limits.profile == ZonedProfile::kZbc;
    if (static_cast<size_t>(action.kind) >= kZoneActionKindCount) return Fail(E::kInvalidField);

    // Field checks come before any zone state check, as for every NVMe command.
    switch (action.kind) {
    case ZoneActionKind::kAppend:
        if (zbc) return Fail(E::kInvalidOpcode);
        if (action.nlb == 0) return Fail(E::kInvalidField);
        // ZNS §3.4.1: a Zone Append larger than ZASL is Invalid Field in Command.
        if (limits.max_append != 0 && action.nlb > limits.max_append) return Fail(E::kInvalidField);
        break;
    case ZoneActionKind::kOffline:
        if (zbc) return Fail(E::kInvalidField);
        break;
    case ZoneActionKind::kSetZde:
        if (zbc || !limits.zde_supported) return Fail(E::kInvalidField);
        break;
    default:
        break;
    }

    if (geo.type == ZoneType::kConventional) return DecideConventional(word, geo, limits, action);

    if (action.kind == ZoneActionKind::kWrite &&
        (action.nlb == 0 || action.slba < geo.zslba || action.slba >= geo.end())) {
        return Fail(E::kInvalidField);  // the caller picked the wrong zone
    }

    const ZoneState from = word.state();
    const int row = IsValidZoneState(word.state_bits()) ? RowOf(from) : -1;
    if (row < 0) return Fail(E::kInvalidZoneStateTransition);  // corrupt word; ValidateZoneWord says why

    const RuleTable& table = zbc ? kZbcRules : kZnsRules;
    const Rule& rule = table[static_cast<size_t>(row)][static_cast<size_t>(action.kind)];
    const uint64_t wp = word.wp();
    const uint8_t attrs = word.attrs();

    switch (rule.verdict) {
    case Verdict::kReject:
        return Fail(rule.error);

    case Verdict::kKeep:
        return Land(word, geo, from, wp, attrs);

    case Verdict::kCloseOrEmpty: {
        // An opened zone that holds no data and no descriptor extension closes to Empty: always
        // for ZBC CLOSE ZONE, and for both profiles after a power cycle.
        bool nothing_written = wp == geo.zslba && (attrs & kZoneAttrZdev) == 0;
        return Land(word, geo, nothing_written ? S::kEmpty : S::kClosed, wp, attrs);
    }

    case Verdict::kWrite: {
        uint64_t slba = action.slba;
        if (action.kind == ZoneActionKind::kAppend) {
            slba = wp;
        } else if (slba != wp) {
            return Fail(E::kZoneInvalidWrite);
        }
        // wp <= cap_end holds for every valid opened/closed/empty word; guard the subtraction.
        if (wp > geo.cap_end() || action.nlb > geo.cap_end() - slba) return Fail(E::kZoneBoundaryError);
        bool evict = false;
        if (ZoneError e = CheckResources(from, rule.via, res, limits, &evict); e != E::kNone) return Fail(e);
        uint64_t new_wp = slba + action.nlb;
        bool full = new_wp == geo.cap_end();
        ZoneDecision d = Land(word, geo, full ? S::kFull : rule.to, new_wp,
                              full ? static_cast<uint8_t>(attrs & ~kZoneAttrFzr) : attrs);
        d.plan.assigned_lba = slba;
        d.plan.close_one_implicit_open = evict;
        d.plan.became_full = full;
        return d;
    }

    case Verdict::kMove:
        break;
    }

    bool evict = false;
    if (ZoneError e = CheckResources(from, rule.via, res, limits, &evict); e != E::kNone) return Fail(e);

    ZoneDecision d;
    switch (rule.to) {
    case S::kEmpty:  // Reset: wp back to the start, attributes (ZFC, FZR, RZR, ZDEV) cleared
        d = Land(word, geo, S::kEmpty, geo.zslba, 0);
        d.plan.discard_begin = geo.zslba;
        d.plan.discard_end = geo.end();
        d.plan.clear_zde = (attrs & kZoneAttrZdev) != 0;
        break;
    case S::kFull:  // Finish: nothing written past the old wp may become readable
        d = Land(word, geo, S::kFull, geo.cap_end(), static_cast<uint8_t>(attrs & ~kZoneAttrFzr));
        d.plan.discard_begin = wp < geo.end() ? wp : geo.end();
        d.plan.discard_end = geo.end();
        break;
    case S::kOffline:
        d = Land(word, geo, S::kOffline, geo.zslba, 0);
        d.plan.discard_begin = geo.zslba;
        d.plan.discard_end = geo.end();
        d.plan.clear_zde = (attrs & kZoneAttrZdev) != 0;
        break;
    case S::kClosed:
        if (action.kind == ZoneActionKind::kSetZde) {  // ZNS §3.4.3: Empty -> Closed, ZDEV set
            d = Land(word, geo, S::kClosed, wp, static_cast<uint8_t>(attrs | kZoneAttrZdev));
            d.plan.store_zde = true;
        } else {
            d = Land(word, geo, S::kClosed, wp, attrs);
        }
        break;
    default:  // Open, Read Only: the wp and attributes stay
        d = Land(word, geo, rule.to, wp, attrs);
        break;
    }
    d.plan.close_one_implicit_open = evict;
    return d;
}

ReadDecision DecideZoneRead(ZoneWord word, const ZoneGeometry& geo, uint64_t slba, uint64_t nlb,
                            bool razb) {
    ReadDecision d;
    if (nlb == 0 || slba < geo.zslba || slba >= geo.end()) {
        d.error = E::kInvalidField;
        return d;
    }
    if (word.state() == S::kOffline) {
        d.error = E::kZoneIsOffline;
        return d;
    }
    const bool seq = geo.type == ZoneType::kSeqWriteRequired;
    const uint64_t room = geo.end() - slba;
    if (nlb > room) {
        if (seq && !razb) {
            d.error = E::kZoneBoundaryError;
            return d;
        }
        d.spills_into_next_zone = true;
    }
    d.in_zone_nlb = nlb > room ? room : nlb;
    // Sequential zones hold data only below the wp (a Full zone's wp is its capacity end, and
    // Finish discarded what lay beyond the old wp); conventional zones are plain storage.
    uint64_t data_end = seq ? word.wp() : geo.end();
    uint64_t below = data_end > slba ? data_end - slba : 0;
    d.readable_nlb = below < d.in_zone_nlb ? below : d.in_zone_nlb;
    return d;
}

ZoneError CheckZoneCrossing(ZoneType from, ZoneType to, bool is_write, bool razb) {
    if (from == ZoneType::kConventional && to == ZoneType::kConventional) return E::kNone;
    if (!is_write && razb) return E::kNone;
    return E::kZoneBoundaryError;
}

ZoneError CheckLbaRange(uint64_t nsze, uint64_t slba, uint64_t nlb) {
    if (nlb == 0) return E::kInvalidField;
    if (slba >= nsze || nlb > nsze - slba) return E::kLbaOutOfRange;
    return E::kNone;
}

ZoneError CheckZoneStartLba(const ZoneGeometry& geo, uint64_t slba) {
    return slba == geo.zslba ? E::kNone : E::kInvalidField;
}

bool AppliesToSelectAll(ZoneActionKind action, ZoneState state) {
    const bool opened = state == S::kImplicitOpen || state == S::kExplicitOpen;
    switch (action) {
    case ZoneActionKind::kClose: return opened;
    case ZoneActionKind::kFinish: return opened || state == S::kClosed;
    case ZoneActionKind::kOpen: return state == S::kClosed;
    case ZoneActionKind::kReset: return opened || state == S::kClosed || state == S::kFull;
    case ZoneActionKind::kOffline: return state == S::kReadOnly;
    default: return false;
    }
}

ZoneError CheckSelectAllOpen(const ZoneResources& res, const ZoneLimits& limits) {
    if (limits.max_open == 0) return E::kNone;
    uint64_t held = limits.profile == ZonedProfile::kZbc ? res.explicit_open : res.open();
    return held + res.closed > limits.max_open ? E::kTooManyOpenZones : E::kNone;
}

bool MustCloseImplicitToOpen(const ZoneResources& res, const ZoneLimits& limits) {
    return limits.max_open != 0 && res.open() >= limits.max_open && res.implicit_open > 0;
}

ZoneResources CountZoneResources(std::span<const ZoneWord> words) {
    ZoneResources res;
    for (ZoneWord w : words) {
        if (w.type() == ZoneType::kConventional) continue;
        switch (w.state()) {
        case S::kImplicitOpen: res.implicit_open++; break;
        case S::kExplicitOpen: res.explicit_open++; break;
        case S::kClosed: res.closed++; break;
        default: break;
        }
    }
    return res;
}

ZoneWord InitialZoneWord(const ZoneGeometry& geo) {
    ZoneState s = geo.type == ZoneType::kConventional ? S::kNotWritePointer : S::kEmpty;
    return ZoneWord::Make(s, geo.type, 0, geo.zslba);
}

namespace {

std::string Hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

Status Invalid(const ZoneGeometry& geo, ZoneWord w, const std::string& what) {
    return Status::Error(EUCLEAN, "zone at sector " + Hex(geo.zslba) + " (word " + Hex(w.raw) +
                                      "): " + what);
}

}  // namespace

Status ValidateZoneWord(ZoneWord word, const ZoneGeometry& geo) {
    if (!IsValidZoneState(word.state_bits())) {
        return Invalid(geo, word, "state " + Hex(word.state_bits()) + " is not a zone state");
    }
    const ZoneState s = word.state();
    const uint8_t attrs = word.attrs();
    const uint64_t wp = word.wp();
    const char* state = ZoneStateName(s);
    if (word.type() != geo.type) {
        return Invalid(geo, word, std::string("type bit says ") +
                                      (word.type() == ZoneType::kConventional ? "conventional" : "sequential") +
                                      " but the geometry says otherwise");
    }
    constexpr uint8_t kKnownAttrs = kZoneAttrZfc | kZoneAttrFzr | kZoneAttrRzr | kZoneAttrZdev;
    if ((attrs & ~kKnownAttrs) != 0) {
        return Invalid(geo, word, "attributes " + Hex(attrs) + " use reserved or unsupported (ZRWAV) bits");
    }

    if (geo.type == ZoneType::kConventional) {
        if (s != S::kNotWritePointer && s != S::kReadOnly && s != S::kOffline) {
            return Invalid(geo, word, std::string("conventional zone in state ") + state);
        }
        if (wp != geo.zslba) return Invalid(geo, word, "conventional zone wp " + Hex(wp) + " != zslba");
        if (attrs != 0) return Invalid(geo, word, "conventional zone has attributes " + Hex(attrs));
        return Status::Ok();
    }

    if (s == S::kNotWritePointer) return Invalid(geo, word, "sequential zone in state not-write-pointer");
    if (wp < geo.zslba || wp > geo.cap_end()) {
        return Invalid(geo, word, "wp " + Hex(wp) + " outside [zslba, zslba + zcap] = [" + Hex(geo.zslba) +
                                      ", " + Hex(geo.cap_end()) + "]");
    }
    switch (s) {
    case S::kEmpty:
    case S::kOffline:
        if (wp != geo.zslba) return Invalid(geo, word, std::string(state) + " zone with wp " + Hex(wp) + " != zslba");
        if (attrs != 0) return Invalid(geo, word, std::string(state) + " zone with attributes " + Hex(attrs));
        break;
    case S::kImplicitOpen:
        if (wp == geo.zslba) return Invalid(geo, word, "implicitly opened zone with nothing written");
        [[fallthrough]];
    case S::kExplicitOpen:
    case S::kClosed:
        if (wp == geo.cap_end()) return Invalid(geo, word, std::string(state) + " zone with wp at capacity (should be full)");
        break;
    case S::kFull:
        if (wp != geo.cap_end()) {
            return Invalid(geo, word, "full zone with wp " + Hex(wp) + " != zslba + zcap " + Hex(geo.cap_end()));
        }
        break;
    default:
        break;
    }
    if ((attrs & kZoneAttrZfc) != 0 && s != S::kFull && s != S::kReadOnly) {
        return Invalid(geo, word, std::string("ZFC attribute on a ") + state + " zone");
    }
    return Status::Ok();
}

Status ValidateZoneGeometry(const ZoneGeometry& geo, ZonedProfile profile) {
    auto bad = [&](const std::string& what) {
        return Status::Error(EINVAL, "zone at sector " + Hex(geo.zslba) + ": " + what);
    };
    if (geo.zsze == 0) return bad("zone size is 0");
    if (geo.zcap == 0 || geo.zcap > geo.zsze) {
        return bad("zone capacity " + Hex(geo.zcap) + " not in [1, zone size " + Hex(geo.zsze) + "]");
    }
    if (geo.zcap != geo.zsze && (profile == ZonedProfile::kZbc || geo.type == ZoneType::kConventional)) {
        return bad("zone capacity must equal the zone size for ZBC and conventional zones");
    }
    if (geo.zslba % geo.zsze != 0) return bad("zslba is not a multiple of the zone size " + Hex(geo.zsze));
    if (geo.zslba > kMaxSector || geo.zsze > kMaxSector - geo.zslba) {
        return bad("zone ends beyond the 51-bit write pointer range");
    }
    return Status::Ok();
}

}  // namespace qzns
