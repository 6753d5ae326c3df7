// The NVMe status of each block-layer outcome (hw/nvme/status.cc), checked against the values
// of the NVMe base and ZNS specifications (Status Field: SCT << 8 | SC, DNR bit 14).
#include <gtest/gtest.h>

#include "hw/nvme/status.h"

namespace qzns::nvme {
namespace {

using E = ZoneError;

TEST(NvmeStatusTest, ZoneErrorsHaveTheirSpecCodes) {
    EXPECT_EQ(ZoneErrorStatus(E::kNone), 0x000);
    EXPECT_EQ(ZoneErrorStatus(E::kInvalidOpcode), 0x001);
    EXPECT_EQ(ZoneErrorStatus(E::kInvalidField), 0x002);
    EXPECT_EQ(ZoneErrorStatus(E::kLbaOutOfRange), 0x080);
    EXPECT_EQ(ZoneErrorStatus(E::kZoneBoundaryError), 0x1B8);
    EXPECT_EQ(ZoneErrorStatus(E::kZoneIsFull), 0x1B9);
    EXPECT_EQ(ZoneErrorStatus(E::kZoneIsReadOnly), 0x1BA);
    EXPECT_EQ(ZoneErrorStatus(E::kZoneIsOffline), 0x1BB);
    EXPECT_EQ(ZoneErrorStatus(E::kZoneInvalidWrite), 0x1BC);
    EXPECT_EQ(ZoneErrorStatus(E::kTooManyActiveZones), 0x1BD);
    EXPECT_EQ(ZoneErrorStatus(E::kTooManyOpenZones), 0x1BE);
    EXPECT_EQ(ZoneErrorStatus(E::kInvalidZoneStateTransition), 0x1BF);
}

TEST(NvmeStatusTest, ZoneErrorsOnAZonedNamespaceAreFinal) {
    EXPECT_EQ(NvmeStatusOfResult(BlkResult::Zone(E::kZoneIsFull, "full"), IoKind::kWrite, true),
              0x1B9 | sc::kDnr);
    // A conventional namespace has no zone codes: a read-only zone is a write fault there.
    EXPECT_EQ(NvmeStatusOfResult(BlkResult::Zone(E::kZoneIsReadOnly, "ro"), IoKind::kWrite, false),
              sc::kWriteFault | sc::kDnr);
    EXPECT_EQ(NvmeStatusOfResult(BlkResult::Ok(), IoKind::kRead, true), sc::kSuccess);
}

// What the host file system says, as the drive reports it. Linux 6.1's nvme_error_status()
// turns Capacity Exceeded (SCT 0h, SC 81h) into BLK_STS_NOSPC, so a full host file system
// reaches the guest's application as ENOSPC, as a thin-provisioned drive out of space would;
// nvmet's errno_to_nvme_status() answers -ENOSPC the same way. Retrying at once cannot help,
// hence DNR. An I/O error is a media error (SCT 2h: Write Fault 80h, Unrecovered Read Error
// 81h; BLK_STS_MEDIUM in Linux), which may be transient: no DNR, so Linux retries it.
TEST(NvmeStatusTest, HostFileSystemFullIsCapacityExceeded) {
    BlkResult full = BlkResult::Io(Status::Error(ENOSPC, "No space left on device"));
    EXPECT_EQ(NvmeStatusOfResult(full, IoKind::kWrite, true), 0x081 | sc::kDnr);
    EXPECT_EQ(NvmeStatusOfResult(full, IoKind::kWrite, false), 0x081 | sc::kDnr);
    EXPECT_EQ(NvmeStatusOfResult(full, IoKind::kZoneMgmt, true), 0x081 | sc::kDnr);
    EXPECT_EQ(NvmeStatusOfResult(full, IoKind::kOther, true), 0x081 | sc::kDnr) << "a Flush that cannot store metadata";
    for (int err : {EDQUOT, EFBIG})
        EXPECT_EQ(NvmeStatusOfResult(BlkResult::Io(Status::Error(err, "limit")), IoKind::kWrite, true), 0x081 | sc::kDnr)
            << "a quota or file size limit is out of space too";
    EXPECT_EQ(StatusSct(sc::kCapacityExceeded), 0);
    EXPECT_EQ(StatusSc(sc::kCapacityExceeded), 0x81);
}

TEST(NvmeStatusTest, HostIoErrorIsAMediaErrorNeverSuccess) {
    BlkResult eio = BlkResult::Io(Status::Error(EIO, "Input/output error"));
    EXPECT_EQ(NvmeStatusOfResult(eio, IoKind::kWrite, true), 0x280) << "Write Fault, retryable";
    EXPECT_EQ(NvmeStatusOfResult(eio, IoKind::kRead, true), 0x281) << "Unrecovered Read Error, retryable";
    EXPECT_EQ(NvmeStatusOfResult(eio, IoKind::kWrite, false), 0x280);
    EXPECT_EQ(NvmeStatusOfResult(eio, IoKind::kRead, false), 0x281);
    // An errno the table does not know is still an error, never success.
    BlkResult odd = BlkResult::Io(Status::Error(ENOMEM, "Cannot allocate memory"));
    EXPECT_EQ(NvmeStatusOfResult(odd, IoKind::kWrite, true), sc::kInternalError);
}

}  // namespace
}  // namespace qzns::nvme
