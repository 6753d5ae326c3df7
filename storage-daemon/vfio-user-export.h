// The vfio-user export type: block nodes become namespaces of an NVMe controller that QEMU
// (>= 10.1, `-device vfio-user-pci`) attaches as a PCI device through a Unix socket.
// Exports naming the same socket share one subsystem and its one PCI controller (one namespace
// per export, NSIDs in command-line order unless nsid= is given). The socket serves one QEMU
// at a time and outlives it: a restarted QEMU connects again to the same controller.
#pragma once

#include "storage-daemon/exports.h"

namespace qzns::daemon {

Result<std::unique_ptr<Export>> CreateVfioUserExport(OptionSet opts, ExportContext& ctx);

}  // namespace qzns::daemon
