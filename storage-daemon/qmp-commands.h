// The daemon's QMP commands (schema: qapi/qzns.json).
#pragma once

#include "qapi/qmp-server.h"
#include "storage-daemon/block-nodes.h"
#include "storage-daemon/exports.h"

namespace qzns::daemon {

void RegisterQmpCommands(qmp::QmpServer& qmp, BlockNodes& nodes, Exports& exports);

}  // namespace qzns::daemon
