// The daemon's QMP commands (schema: qapi/qzns.json).
#pragma once

#include "qapi/qmp-session.h"
#include "storage-daemon/block-nodes.h"
#include "storage-daemon/exports.h"

namespace qzns::daemon {

void RegisterQmpCommands(qmp::QmpDispatcher& qmp, BlockNodes& nodes, Exports& exports);
// True once QMP `quit` asked for the shutdown (SHUTDOWN's reason is then host-qmp-quit, not
// host-signal).
bool QuitRequested();

}  // namespace qzns::daemon
