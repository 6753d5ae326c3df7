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

}  // namespace
}  // namespace qzns::nvme
