// The nvme-tcp export type: a block node becomes namespaces of an NVMe subsystem (by NQN) served
// over NVMe/TCP. Exports naming the same NQN share one subsystem (and controller); exports on
// the same address and port share one listener.
#pragma once

#include "storage-daemon/exports.h"

namespace qzns::daemon {

Result<std::unique_ptr<Export>> CreateNvmeTcpExport(OptionSet opts, ExportContext& ctx);
// query-nvme-controllers: every controller of every subsystem, with its host.
Json QueryNvmeControllers();

}  // namespace qzns::daemon
