// vfio-user wire format (QEMU docs/interop/vfio-user.rst, protocol version 0.x), as QEMU >= 10.1
// speaks it. Every message is a 16-byte header followed by a command-specific payload; the
// structs below are the payloads, with the spec's field names. The protocol says "host
// endianness"; qzns runs on little-endian hosts only, so fields are le* types and the
// static_asserts pin the layouts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "util/endian.h"

namespace qzns::vfu {

enum class Command : uint16_t {
    kVersion = 1,
    kDmaMap = 2,
    kDmaUnmap = 3,
    kDeviceGetInfo = 4,
    kDeviceGetRegionInfo = 5,
    kDeviceGetRegionIoFds = 6,
    kDeviceGetIrqInfo = 7,
    kDeviceSetIrqs = 8,
    kRegionRead = 9,
    kRegionWrite = 10,
    kDmaRead = 11,
    kDmaWrite = 12,
    kDeviceReset = 13,
    kDirtyPages = 14,
    kRegionWriteMulti = 15,
    kDeviceFeature = 16,
    kMigDataRead = 17,
    kMigDataWrite = 18,
};
const char* CommandName(uint16_t command);

// flags in the header.
inline constexpr uint32_t kFlagTypeMask = 0xf;
inline constexpr uint32_t kFlagTypeCommand = 0;
inline constexpr uint32_t kFlagTypeReply = 1;
inline constexpr uint32_t kFlagNoReply = 1u << 4;
inline constexpr uint32_t kFlagError = 1u << 5;

struct MsgHeader {
    le16 msg_id;       // echoed in the reply
    le16 command;      // Command
    le32 msg_size;     // whole message, header included
    le32 flags;        // kFlag*
    le32 error;        // errno, valid when kFlagError is set
};
static_assert(sizeof(MsgHeader) == 16 && offsetof(MsgHeader, msg_size) == 4 &&
              offsetof(MsgHeader, error) == 12);

// VFIO_USER_VERSION, both directions: major, minor, then a NUL-terminated JSON object.
struct VersionPayload {
    le16 major;
    le16 minor;
};
static_assert(sizeof(VersionPayload) == 4);
inline constexpr uint16_t kVersionMajor = 0;
inline constexpr uint16_t kVersionMinor = 0;

// VFIO_USER_DMA_MAP (struct vfio_iommu_type1_dma_map minus nothing; 0 or 1 fd attached).
struct DmaMapPayload {
    le32 argsz;
    le32 flags;   // kDmaMapFlag*
    le64 offset;  // into the attached fd
    le64 addr;    // IOVA (guest physical address for QEMU)
    le64 size;
};
static_assert(sizeof(DmaMapPayload) == 32 && offsetof(DmaMapPayload, addr) == 16);
inline constexpr uint32_t kDmaMapFlagRead = 1u << 0;
inline constexpr uint32_t kDmaMapFlagWrite = 1u << 1;

// VFIO_USER_DMA_UNMAP.
struct DmaUnmapPayload {
    le32 argsz;
    le32 flags;  // kDmaUnmapFlag*
    le64 addr;
    le64 size;
};
static_assert(sizeof(DmaUnmapPayload) == 24 && offsetof(DmaUnmapPayload, size) == 16);
inline constexpr uint32_t kDmaUnmapFlagGetDirtyPageInfo = 1u << 0;  // migration; unsupported
inline constexpr uint32_t kDmaUnmapFlagAll = 1u << 1;

// VFIO_USER_DEVICE_GET_INFO (struct vfio_device_info without caps).
struct DeviceInfoPayload {
    le32 argsz;
    le32 flags;  // kDeviceFlag*
    le32 num_regions;
    le32 num_irqs;
};
static_assert(sizeof(DeviceInfoPayload) == 16);
inline constexpr uint32_t kDeviceFlagReset = 1u << 0;
inline constexpr uint32_t kDeviceFlagPci = 1u << 1;

// VFIO_USER_DEVICE_GET_REGION_INFO (struct vfio_region_info); capabilities follow at
// cap_offset (counted from argsz) when they fit in the client's argsz.
struct RegionInfoPayload {
    le32 argsz;
    le32 flags;  // kRegionFlag*
    le32 index;
    le32 cap_offset;
    le64 size;
    le64 offset;  // mmap offset into the attached fd
};
static_assert(sizeof(RegionInfoPayload) == 32 && offsetof(RegionInfoPayload, size) == 16);
inline constexpr uint32_t kRegionFlagRead = 1u << 0;
inline constexpr uint32_t kRegionFlagWrite = 1u << 1;
inline constexpr uint32_t kRegionFlagMmap = 1u << 2;
inline constexpr uint32_t kRegionFlagCaps = 1u << 3;

// struct vfio_info_cap_header; `next` is an offset from the start of RegionInfoPayload.
struct InfoCapHeader {
    le16 id;
    le16 version;
    le32 next;
};
static_assert(sizeof(InfoCapHeader) == 8);
inline constexpr uint16_t kRegionInfoCapSparseMmap = 1;

struct SparseMmapCap {
    InfoCapHeader header;  // id kRegionInfoCapSparseMmap, version 1
    le32 nr_areas;
    le32 reserved;
};
static_assert(sizeof(SparseMmapCap) == 16);
struct SparseMmapArea {
    le64 offset;
    le64 size;
};
static_assert(sizeof(SparseMmapArea) == 16);

// VFIO_USER_DEVICE_GET_IRQ_INFO (struct vfio_irq_info).
struct IrqInfoPayload {
    le32 argsz;
    le32 flags;  // kIrqInfoFlag*
    le32 index;
    le32 count;
};
static_assert(sizeof(IrqInfoPayload) == 16);
inline constexpr uint32_t kIrqInfoFlagEventfd = 1u << 0;
inline constexpr uint32_t kIrqInfoFlagMaskable = 1u << 1;
inline constexpr uint32_t kIrqInfoFlagAutomasked = 1u << 2;
inline constexpr uint32_t kIrqInfoFlagNoresize = 1u << 3;

// VFIO_USER_DEVICE_SET_IRQS (struct vfio_irq_set). With DATA_EVENTFD the eventfds are
// ancillary data, not payload; with DATA_BOOL `count` bytes follow the struct.
struct IrqSetPayload {
    le32 argsz;
    le32 flags;  // one kIrqSetData* | one kIrqSetAction*
    le32 index;
    le32 start;
    le32 count;
};
static_assert(sizeof(IrqSetPayload) == 20 && offsetof(IrqSetPayload, count) == 16);
inline constexpr uint32_t kIrqSetDataNone = 1u << 0;
inline constexpr uint32_t kIrqSetDataBool = 1u << 1;
inline constexpr uint32_t kIrqSetDataEventfd = 1u << 2;
inline constexpr uint32_t kIrqSetActionMask = 1u << 3;
inline constexpr uint32_t kIrqSetActionUnmask = 1u << 4;
inline constexpr uint32_t kIrqSetActionTrigger = 1u << 5;
inline constexpr uint32_t kIrqSetDataTypeMask = 0x7;
inline constexpr uint32_t kIrqSetActionTypeMask = 0x38;

// VFIO_USER_REGION_READ / REGION_WRITE: request and reply start with this; data follows
// (read reply, write request).
struct RegionAccessPayload {
    le64 offset;
    le32 region;
    le32 count;
};
static_assert(sizeof(RegionAccessPayload) == 16);

// VFIO_USER_DMA_READ / DMA_WRITE (server to client). The spec gives `count` 8 bytes and puts
// data at payload offset 16, but QEMU (VFIOUserDMARW = {u64 offset; u32 count; char data[]})
// reads and writes the data at payload offset 12 and pads its own messages to 16 bytes. QEMU
// is the client we serve, so data goes at kDmaRwDataOffset and a message is at least
// sizeof(DmaRwPayload) long; the low 4 bytes of the spec's u64 count coincide with `count`.
struct DmaRwPayload {
    le64 addr;
    le32 count;
    le32 pad;  // QEMU's data starts here
};
static_assert(sizeof(DmaRwPayload) == 16);
inline constexpr size_t kDmaRwDataOffset = 12;

// VFIO_USER_REGION_WRITE_MULTI: wr_cnt, then wr_cnt entries of 24 bytes (count <= 8).
struct WriteMultiEntry {
    le64 offset;
    le32 region;
    le32 count;
    uint8_t data[8];
};
static_assert(sizeof(WriteMultiEntry) == 24);
inline constexpr uint64_t kWriteMultiMax = 200;  // QEMU's VFIO_USER_MULTI_MAX

// VFIO PCI region and IRQ indices.
inline constexpr uint32_t kPciBar0RegionIndex = 0;
inline constexpr uint32_t kPciRomRegionIndex = 6;
inline constexpr uint32_t kPciConfigRegionIndex = 7;
inline constexpr uint32_t kPciVgaRegionIndex = 8;
inline constexpr uint32_t kPciNumRegions = 9;
inline constexpr uint32_t kPciIntxIrqIndex = 0;
inline constexpr uint32_t kPciMsiIrqIndex = 1;
inline constexpr uint32_t kPciMsixIrqIndex = 2;
inline constexpr uint32_t kPciErrIrqIndex = 3;
inline constexpr uint32_t kPciReqIrqIndex = 4;
inline constexpr uint32_t kPciNumIrqs = 5;

// Limits QEMU applies to a server (hw/vfio-user/device.c, protocol.h).
inline constexpr uint32_t kClientMaxRegions = 100;
inline constexpr uint32_t kClientMaxIrqs = 50;
inline constexpr uint32_t kMaxMsgFdsLimit = 16;
inline constexpr uint64_t kMaxDataXferLimit = 64ull << 20;

}  // namespace qzns::vfu
