#include "storage-daemon/export-types.h"

#include "storage-daemon/nvme-tcp-export.h"
#include "storage-daemon/vfio-user-export.h"

namespace qzns::daemon {

// Filled in as transports land: nvme-tcp (nvmf/tcp) and vfio-user (hw/vfio-user).
void RegisterExportTypes(Exports& exports) {
    exports.RegisterType("nvme-tcp", CreateNvmeTcpExport);
    exports.RegisterType("vfio-user", CreateVfioUserExport);
}

}  // namespace qzns::daemon
