// What a random power cut keeps of a sequential zone's unflushed writes (docs/power-cut.rst).
//
// A drive without power-loss protection may have written part of what it acknowledged, and a
// zone is written in LBA order, so what survives of a zone is a prefix: its data up to some
// sector P at or past the persisted write pointer, with the write pointer at P. The file-level
// cut (VolatileCacheFile) cannot give that, because a zone word only moves on disk at a flush;
// so the cut draws P per zone beforehand, keeps the data below it, and once the image has been
// through crash recovery (which brings every zone back to its persisted wp) writes that data
// again and persists the zone word.
#pragma once

#include <cstdint>
#include <vector>

#include "block/block-backend.h"

namespace qzns {

struct ZonePrefix {
    UnflushedZone zone;
    uint64_t cut_wp = 0;        // P, bytes: durable_wp <= P <= wp
    std::vector<uint8_t> data;  // the bytes [durable_wp, P) as the host wrote them
};

// The drive's power-fail atomic program unit must be a power of two of at least 512 bytes; the
// error names the rule, for a QMP client or a test to act on.
Status CheckAtomicUnit(uint64_t atomic_unit);

// Draws P for each zone with a generator seeded by `seed`, uniformly among durable_wp, wp and
// the unit boundaries between them (multiples of the unit from the zone start), and reads the
// data below it from `be` (which must still have power). The unit is `atomic_unit`, or the
// coarsest granularity up to 4 KiB that both write pointers are aligned to if that is larger,
// so P never splits a logical block of the namespace that wrote them.
Result<std::vector<ZonePrefix>> DrawZonePrefixes(BlockBackend& be, const std::vector<UnflushedZone>& zones,
                                                 uint64_t seed, uint64_t atomic_unit);

// Opens the powered-off image again (`opts` as the cut backend was opened, without cache or
// lock), which runs crash recovery, writes each zone's prefix at its recovered write pointer
// and closes the image cleanly, so the prefixes and their zone words (Closed, Full at capacity)
// are durable. Adds the zone figures to `rep`.
Status ReplayZonePrefixes(const BlockBackendOptions& opts, const std::vector<ZonePrefix>& prefixes,
                          PowerCutReport& rep);

}  // namespace qzns
