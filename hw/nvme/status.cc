// The single place where block-layer errors become NVMe status codes.
#include "hw/nvme/status.h"

#include <cerrno>

namespace qzns::nvme {
namespace {

struct ErrnoRow {
    int err;
    uint16_t read_status;
    uint16_t write_status;
};

// Zone rule violations are final (real ZNS drives set DNR on them; Linux's zoned code would
// only retry into the same error). Plain I/O errors may succeed on retry.
constexpr ErrnoRow kErrnoTable[] = {
    {EROFS, sc::kNamespaceWriteProtected | sc::kDnr, sc::kNamespaceWriteProtected | sc::kDnr},
    {EUCLEAN, sc::kUnrecoveredReadError | sc::kDnr, sc::kNamespaceWriteProtected | sc::kDnr},
    // The host file system cannot store more: what a thin-provisioned drive out of space says
    // (Linux turns Capacity Exceeded into ENOSPC). A quota or file size limit is the same to
    // the guest.
    {ENOSPC, sc::kCapacityExceeded | sc::kDnr, sc::kCapacityExceeded | sc::kDnr},
    {EDQUOT, sc::kCapacityExceeded | sc::kDnr, sc::kCapacityExceeded | sc::kDnr},
    {EFBIG, sc::kCapacityExceeded | sc::kDnr, sc::kCapacityExceeded | sc::kDnr},
    {EINVAL, sc::kInvalidField | sc::kDnr, sc::kInvalidField | sc::kDnr},
    {ENOTSUP, sc::kInvalidOpcode | sc::kDnr, sc::kInvalidOpcode | sc::kDnr},
    {EIO, sc::kUnrecoveredReadError, sc::kWriteFault},
};

}  // namespace

uint16_t ZoneErrorStatus(ZoneError err) {
    switch (err) {
    case ZoneError::kNone: return sc::kSuccess;
    case ZoneError::kInvalidOpcode: return sc::kInvalidOpcode;
    case ZoneError::kInvalidField: return sc::kInvalidField;
    case ZoneError::kLbaOutOfRange: return sc::kLbaOutOfRange;
    case ZoneError::kZoneBoundaryError: return sc::kZoneBoundaryError;
    case ZoneError::kZoneIsFull: return sc::kZoneIsFull;
    case ZoneError::kZoneIsReadOnly: return sc::kZoneIsReadOnly;
    case ZoneError::kZoneIsOffline: return sc::kZoneIsOffline;
    case ZoneError::kZoneInvalidWrite: return sc::kZoneInvalidWrite;
    case ZoneError::kTooManyActiveZones: return sc::kTooManyActiveZones;
    case ZoneError::kTooManyOpenZones: return sc::kTooManyOpenZones;
    case ZoneError::kInvalidZoneStateTransition: return sc::kInvalidZoneStateTransition;
    }
    return sc::kInternalError;  // unreachable for a valid enum value
}

uint16_t NvmeStatusOfResult(const BlkResult& r, IoKind kind, bool zoned_namespace) {
    if (r.ok()) return sc::kSuccess;
    if (r.zone_error != ZoneError::kNone) {
        if (!zoned_namespace) {
            // A conventional namespace cut from a zoned image: its zones can still be made read
            // only or offline, but CSI 0 has no zone status codes; report media errors.
            switch (r.zone_error) {
            case ZoneError::kZoneIsReadOnly:
                return sc::kWriteFault | sc::kDnr;
            case ZoneError::kZoneIsOffline:
                return (kind == IoKind::kRead ? sc::kUnrecoveredReadError : sc::kWriteFault) | sc::kDnr;
            case ZoneError::kInvalidField:
                return sc::kInvalidField | sc::kDnr;
            case ZoneError::kLbaOutOfRange:
                return sc::kLbaOutOfRange | sc::kDnr;
            case ZoneError::kInvalidOpcode:
                return sc::kInvalidOpcode | sc::kDnr;
            default:
                return sc::kInternalError;
            }
        }
        return static_cast<uint16_t>(ZoneErrorStatus(r.zone_error) | sc::kDnr);
    }
    int err = r.status.err();
    for (const ErrnoRow& row : kErrnoTable)
        if (row.err == err) return kind == IoKind::kRead ? row.read_status : row.write_status;
    return sc::kInternalError;
}

const char* StatusName(uint16_t status) {
    switch (StatusNoDnr(status)) {
    case sc::kSuccess: return "Successful Completion";
    case sc::kInvalidOpcode: return "Invalid Command Opcode";
    case sc::kInvalidField: return "Invalid Field in Command";
    case sc::kDataTransferError: return "Data Transfer Error";
    case sc::kInternalError: return "Internal Error";
    case sc::kAbortRequested: return "Command Abort Requested";
    case sc::kAbortSqDeleted: return "Command Aborted due to SQ Deletion";
    case sc::kInvalidNamespace: return "Invalid Namespace or Format";
    case sc::kCommandSequenceError: return "Command Sequence Error";
    case sc::kDataSglLengthInvalid: return "Data SGL Length Invalid";
    case sc::kNamespaceWriteProtected: return "Namespace is Write Protected";
    case sc::kLbaOutOfRange: return "LBA Out of Range";
    case sc::kCapacityExceeded: return "Capacity Exceeded";
    case sc::kCompletionQueueInvalid: return "Completion Queue Invalid";
    case sc::kInvalidQueueIdentifier: return "Invalid Queue Identifier";
    case sc::kInvalidQueueSize: return "Invalid Queue Size";
    case sc::kAsyncEventRequestLimitExceeded: return "Asynchronous Event Request Limit Exceeded";
    case sc::kInvalidInterruptVector: return "Invalid Interrupt Vector";
    case sc::kInvalidLogPage: return "Invalid Log Page";
    case sc::kInvalidQueueDeletion: return "Invalid Queue Deletion";
    case sc::kFeatureNotSaveable: return "Feature Identifier Not Saveable";
    case sc::kIoCommandSetCombinationRejected: return "I/O Command Set Combination Rejected";
    case sc::kInvalidIoCommandSet: return "Invalid I/O Command Set";
    case 0x180: return "Conflicting Attributes / Connect Incompatible Format";
    case sc::kConnectControllerBusy: return "Connect Controller Busy";
    case sc::kConnectInvalidParameters: return "Connect Invalid Parameters";
    case sc::kConnectInvalidHost: return "Connect Invalid Host";
    case sc::kZoneBoundaryError: return "Zone Boundary Error";
    case sc::kZoneIsFull: return "Zone Is Full";
    case sc::kZoneIsReadOnly: return "Zone Is Read Only";
    case sc::kZoneIsOffline: return "Zone Is Offline";
    case sc::kZoneInvalidWrite: return "Zone Invalid Write";
    case sc::kTooManyActiveZones: return "Too Many Active Zones";
    case sc::kTooManyOpenZones: return "Too Many Open Zones";
    case sc::kInvalidZoneStateTransition: return "Invalid Zone State Transition";
    case sc::kWriteFault: return "Write Fault";
    case sc::kUnrecoveredReadError: return "Unrecovered Read Error";
    case sc::kCompareFailure: return "Compare Failure";
    default: return "Unknown status";
    }
}

}  // namespace qzns::nvme
