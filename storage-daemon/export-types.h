// Registers the export types this build has (nvme-tcp, vfio-user).
#pragma once

#include "storage-daemon/exports.h"

namespace qzns::daemon {

void RegisterExportTypes(Exports& exports);

}  // namespace qzns::daemon
