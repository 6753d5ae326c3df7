// NVMe status values (the 15-bit Status Field of a CQE: DNR bit 14, More 13, CRD 12:11,
// SCT 10:8, SC 7:0 — written to the CQE shifted left by one above the phase tag) and the one
// table that turns block-layer outcomes into them.
#pragma once

#include <cstdint>

#include "block/block-backend.h"

namespace qzns::nvme {

namespace sc {
// Generic command status (SCT 0).
constexpr uint16_t kSuccess = 0x000;
constexpr uint16_t kInvalidOpcode = 0x001;
constexpr uint16_t kInvalidField = 0x002;
constexpr uint16_t kDataTransferError = 0x004;
constexpr uint16_t kInternalError = 0x006;
constexpr uint16_t kAbortRequested = 0x007;
constexpr uint16_t kAbortSqDeleted = 0x008;
constexpr uint16_t kInvalidNamespace = 0x00b;  // Invalid Namespace or Format
constexpr uint16_t kCommandSequenceError = 0x00c;
constexpr uint16_t kDataSglLengthInvalid = 0x00f;
constexpr uint16_t kSglTypeInvalid = 0x011;
constexpr uint16_t kNamespaceWriteProtected = 0x020;
constexpr uint16_t kLbaOutOfRange = 0x080;
constexpr uint16_t kCapacityExceeded = 0x081;
// Command specific status (SCT 1).
constexpr uint16_t kCompletionQueueInvalid = 0x100;
constexpr uint16_t kInvalidQueueIdentifier = 0x101;
constexpr uint16_t kInvalidQueueSize = 0x102;
constexpr uint16_t kAbortCommandLimitExceeded = 0x103;
constexpr uint16_t kAsyncEventRequestLimitExceeded = 0x105;
constexpr uint16_t kInvalidInterruptVector = 0x108;
constexpr uint16_t kInvalidLogPage = 0x109;
constexpr uint16_t kInvalidQueueDeletion = 0x10c;
constexpr uint16_t kFeatureNotSaveable = 0x10d;
constexpr uint16_t kFeatureNotChangeable = 0x10e;
constexpr uint16_t kIoCommandSetCombinationRejected = 0x12b;
constexpr uint16_t kInvalidIoCommandSet = 0x12c;
// NVM command set specific (SCT 1, opcodes of the NVM/ZNS sets).
constexpr uint16_t kConflictingAttributes = 0x180;
// Fabrics (SCT 1, Fabrics commands).
constexpr uint16_t kConnectIncompatibleFormat = 0x180;
constexpr uint16_t kConnectControllerBusy = 0x181;
constexpr uint16_t kConnectInvalidParameters = 0x182;
constexpr uint16_t kConnectInvalidHost = 0x184;
// Zoned Namespace command set (SCT 1).
constexpr uint16_t kZoneBoundaryError = 0x1b8;
constexpr uint16_t kZoneIsFull = 0x1b9;
constexpr uint16_t kZoneIsReadOnly = 0x1ba;
constexpr uint16_t kZoneIsOffline = 0x1bb;
constexpr uint16_t kZoneInvalidWrite = 0x1bc;
constexpr uint16_t kTooManyActiveZones = 0x1bd;
constexpr uint16_t kTooManyOpenZones = 0x1be;
constexpr uint16_t kInvalidZoneStateTransition = 0x1bf;
// Media and data integrity errors (SCT 2).
constexpr uint16_t kWriteFault = 0x280;
constexpr uint16_t kUnrecoveredReadError = 0x281;
constexpr uint16_t kCompareFailure = 0x285;

constexpr uint16_t kDnr = 0x4000;  // Do Not Retry
}  // namespace sc

constexpr uint16_t StatusSct(uint16_t st) { return (st >> 8) & 0x7; }
constexpr uint16_t StatusSc(uint16_t st) { return st & 0xff; }
constexpr uint16_t StatusNoDnr(uint16_t st) { return st & 0x3fff; }

// What kind of command produced a block-layer outcome; the same failure maps to a different
// status for a read than for a write, and a conventional (CSI 0) namespace has no zone status
// codes to report a zone fault with.
enum class IoKind : uint8_t { kRead, kWrite, kZoneMgmt, kOther };

// The NVMe Status Field value (SCT << 8 | SC, without DNR/More/CRD) of a zone error on a zoned
// namespace; kSuccess for kNone. Zone errors are SCT 1, e.g. 0x1B9 for Zone Is Full.
uint16_t ZoneErrorStatus(ZoneError err);

// The mapping table: BlkResult (zone error or errno) -> NVMe status, including DNR.
uint16_t NvmeStatusOfResult(const BlkResult& r, IoKind kind, bool zoned_namespace);

const char* StatusName(uint16_t status);

}  // namespace qzns::nvme
