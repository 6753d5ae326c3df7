// QMP power-cut: a block node's drive loses power and comes back (docs/power-cut.rst).
#pragma once

#include <cstdint>
#include <string>

#include "block/file-volatile.h"
#include "storage-daemon/block-nodes.h"
#include "storage-daemon/exports.h"
#include "util/json.h"

namespace qzns::daemon {

// Cuts the node's power: its cache loses what `mode` drops, every export of it stops (NVMe/TCP
// connections drop, the vfio-user socket closes), the image is closed without a clean shutdown
// and opened again through crash recovery, and the exports are recreated with their options
// (hosts reconnect; QEMU attaches the socket again). `atomic_unit` as BlockBackend::PowerCut.
// Returns the POWER_CUT event's data.
Result<Json> PowerCycleNode(BlockNodes& nodes, Exports& exports, const std::string& node_name, PowerCutMode mode,
                            uint64_t seed, uint64_t atomic_unit);

}  // namespace qzns::daemon
