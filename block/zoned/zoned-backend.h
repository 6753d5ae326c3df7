// The zoned layer: a BlockBackend over a zoned qcow2 image.
#pragma once

#include "block/block-backend.h"

namespace qzns {

// Takes a qcow2 driver whose image has the zoned extension. Recovers zone state after an unclean
// shutdown (opened zones become Closed or Empty; stale clusters past a wp are freed).
Result<std::unique_ptr<BlockBackend>> OpenZonedBackend(std::unique_ptr<BlockDriver> drv, bool persist_zones);

}  // namespace qzns
