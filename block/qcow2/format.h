// qcow2 v3 on-disk structures (QEMU's docs/interop/qcow2.txt) and the qzns zoned extension
// (docs/interop/qcow2-zoned.rst). All fields big-endian. Layouts are checked with static_assert
// right under each struct; bit fields are constexpr masks, never C bitfields.
#pragma once

#include <cstddef>
#include <cstdint>

#include "util/endian.h"

namespace qzns::qcow2 {

constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"

struct Header {
    be32 magic;
    be32 version;
    be64 backing_file_offset;
    be32 backing_file_size;
    be32 cluster_bits;
    be64 size;
    be32 crypt_method;
    be32 l1_size;
    be64 l1_table_offset;
    be64 refcount_table_offset;
    be32 refcount_table_clusters;
    be32 nb_snapshots;
    be64 snapshots_offset;
    // version 3
    be64 incompatible_features;
    be64 compatible_features;
    be64 autoclear_features;
    be32 refcount_order;
    be32 header_length;
    uint8_t compression_type;
    uint8_t rsvd105[7];
};
static_assert(sizeof(Header) == 112);
static_assert(offsetof(Header, incompatible_features) == 72);
static_assert(offsetof(Header, header_length) == 100);
constexpr uint32_t kV2HeaderLength = 72;
constexpr uint32_t kV3MinHeaderLength = 104;

// Incompatible feature bits.
constexpr uint64_t kIncompatDirty = 1ull << 0;
constexpr uint64_t kIncompatCorrupt = 1ull << 1;
constexpr uint64_t kIncompatDataFile = 1ull << 2;
constexpr uint64_t kIncompatCompression = 1ull << 3;
constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
// The seed series' "zoned format" bit: understood for reading when its extension is present.
constexpr uint64_t kIncompatSeedZoned = 1ull << 5;
// The only incompatible bits qzns can honour; any other one refuses the image.
constexpr uint64_t kIncompatSupported = kIncompatDirty | kIncompatCorrupt | kIncompatCompression;

// Compatible feature bits.
constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;

// Autoclear feature bits. QEMU clears autoclear bits it does not know whenever it opens the
// image for writing, which is how qzns learns that a foreign writer touched a zoned image.
constexpr uint64_t kAutoclearBitmaps = 1ull << 0;
constexpr uint64_t kAutoclearDataFileRaw = 1ull << 1;
constexpr unsigned kAutoclearZonedBit = 48;
constexpr uint64_t kAutoclearZoned = 1ull << kAutoclearZonedBit;

// Header extensions: {be32 type, be32 length, data padded to 8 bytes}, ended by type 0.
struct ExtensionHeader {
    be32 type;
    be32 length;
};
static_assert(sizeof(ExtensionHeader) == 8);
constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr uint32_t kExtFeatureTable = 0x6803f857;
constexpr uint32_t kExtBitmaps = 0x23852875;
constexpr uint32_t kExtEncryption = 0x0537be77;
constexpr uint32_t kExtDataFile = 0x44415441;
constexpr uint32_t kExtZoned = 0x717a6e73;      // "qzns": this project's zoned extension
constexpr uint32_t kExtSeedZoned = 0x007a6264;  // the unmerged QEMU seed series' extension

struct FeatureNameEntry {
    uint8_t type;  // 0 incompatible, 1 compatible, 2 autoclear
    uint8_t bit;
    char name[46];
};
static_assert(sizeof(FeatureNameEntry) == 48);

// L1 / L2 entries.
constexpr uint64_t kOflagCopied = 1ull << 63;
constexpr uint64_t kOflagCompressed = 1ull << 62;
constexpr uint64_t kOflagZero = 1ull << 0;
constexpr uint64_t kL1OffsetMask = 0x00fffffffffffe00ull;
constexpr uint64_t kL2OffsetMask = 0x00fffffffffffe00ull;
constexpr uint64_t kL1ReservedMask = 0x7f000000000001ffull;
constexpr uint64_t kL2StdReservedMask = 0x3f000000000001feull;
constexpr uint64_t kRefTableOffsetMask = 0xfffffffffffffe00ull;

constexpr uint32_t kMinClusterBits = 9;
constexpr uint32_t kMaxClusterBits = 21;
// Same bounds as QEMU so images either tool makes the other accepts.
constexpr uint64_t kMaxL1Entries = 32ull * 1024 * 1024 / 8;
constexpr uint64_t kMaxRefcountTableBytes = 8ull * 1024 * 1024;

struct SnapshotHeader {
    be64 l1_table_offset;
    be32 l1_size;
    be16 id_str_size;
    be16 name_size;
    be32 date_sec;
    be32 date_nsec;
    be64 vm_clock_nsec;
    be32 vm_state_size;
    be32 extra_data_size;
};
static_assert(sizeof(SnapshotHeader) == 40);

// ---- qzns zoned extension (docs/interop/qcow2-zoned.rst) ----
// The profile byte on disk (the zoned layer's ZonedProfile has its own values).
enum class ZonedProfileCode : uint8_t { kZns = 1, kZbc = 2 };
constexpr uint32_t kZonedExtVersion = 1;
constexpr uint8_t kZonedFlagInUse = 1u << 0;  // set while a writer has the image open

struct ZonedExtension {
    be32 version;
    uint8_t profile;
    uint8_t flags;
    be16 rsvd6;
    be64 zone_size;          // bytes
    be64 zone_capacity;      // bytes
    be32 nr_zones;
    be32 nr_conv_zones;
    be32 max_open_zones;     // 0 = no limit
    be32 max_active_zones;   // 0 = no limit
    be32 max_append_bytes;
    be32 zd_extension_size;  // bytes of descriptor extension per zone, multiple of 64
    be64 disk_size;          // virtual disk size when the tables were laid out
    be64 zone_table_offset;  // guest offset (beyond disk_size), cluster aligned
    be64 zone_table_size;    // bytes: nr_zones * 8, rounded up to a cluster
    be64 zded_offset;        // guest offset, cluster aligned; 0 when zd_extension_size == 0
    be64 zded_size;          // bytes
};
static_assert(sizeof(ZonedExtension) == 88);
static_assert(offsetof(ZonedExtension, zone_table_offset) == 56);

}  // namespace qzns::qcow2
