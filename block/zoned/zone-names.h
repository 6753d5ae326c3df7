// Names of zone states and types as tools print them (blkzone's abbreviations and long names).
#pragma once

#include "block/zoned/zone-word.h"

namespace qzns {

inline const char* ZoneStateLabel(ZoneState s) {
    switch (s) {
    case ZoneState::kNotWritePointer: return "not-write-pointer";
    case ZoneState::kEmpty: return "empty";
    case ZoneState::kImplicitOpen: return "implicitly-opened";
    case ZoneState::kExplicitOpen: return "explicitly-opened";
    case ZoneState::kClosed: return "closed";
    case ZoneState::kReadOnly: return "read-only";
    case ZoneState::kFull: return "full";
    case ZoneState::kOffline: return "offline";
    }
    return "invalid";
}

inline const char* ZoneStateAbbrev(ZoneState s) {
    switch (s) {
    case ZoneState::kNotWritePointer: return "nw";
    case ZoneState::kEmpty: return "em";
    case ZoneState::kImplicitOpen: return "oi";
    case ZoneState::kExplicitOpen: return "oe";
    case ZoneState::kClosed: return "cl";
    case ZoneState::kReadOnly: return "ro";
    case ZoneState::kFull: return "fu";
    case ZoneState::kOffline: return "ol";
    }
    return "??";
}

constexpr ZoneState kAllZoneStates[] = {ZoneState::kNotWritePointer, ZoneState::kEmpty, ZoneState::kImplicitOpen,
                                        ZoneState::kExplicitOpen, ZoneState::kClosed, ZoneState::kFull,
                                        ZoneState::kReadOnly, ZoneState::kOffline};

}  // namespace qzns
