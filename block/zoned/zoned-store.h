// The seam between the zoned layer and an image format that stores zone metadata. The zoned
// layer (zoned-backend.cc) keeps zone state in memory and asks the format only for what it must
// persist or where data lives; qcow2::Image implements it (block/qcow2/qcow2-zoned.cc). A format
// without zone metadata returns null from BlockDriver::zoned_store().
#pragma once

#include <cstdint>
#include <string>

#include "block/aio/aio.h"
#include "block/zoned/zone-state-machine.h"
#include "util/status.h"

namespace qzns {

// A zoned disk's layout, in bytes.
struct ZonedGeometry {
    ZonedProfile profile = ZonedProfile::kZns;
    uint64_t zone_size = 0;
    uint64_t zone_capacity = 0;
    uint32_t nr_zones = 0;
    uint32_t nr_conv_zones = 0;
    uint32_t max_open_zones = 0;    // 0 = no limit
    uint32_t max_active_zones = 0;  // 0 = no limit
    uint32_t max_append_bytes = 0;
    uint32_t zd_extension_size = 0;
};

// Where a zone's data lives in the image file. A linear zone's guest bytes [start, start + len)
// are the host bytes [host, host + len), for the life of the image: the zoned layer then reads
// and writes them with no mapping lookup, and resets the zone by zeroing the host range.
struct ZoneExtent {
    enum class Kind {
        kUnmapped,   // nothing stored for the zone yet (reads as zeros)
        kLinear,     // one contiguous host extent
        kScattered,  // mapped cluster by cluster (older images): use the driver's Read/Write
    };
    Kind kind = Kind::kUnmapped;
    uint64_t host = 0;  // kLinear: host offset of the zone's first byte
};

class ZonedStore {
public:
    virtual ~ZonedStore() = default;
    virtual const ZonedGeometry& zoned_geometry() const = 0;
    // False when the last writer died without closing the image: recovery must run.
    virtual bool zoned_clean_at_open() const = 0;
    // Non-empty when the zone tables failed validation: the zoned layer then refuses to open.
    virtual const std::string& zoned_problem() const = 0;

    // Zone words, host-endian; durable after the driver's next Flush().
    virtual Status ReadZoneWords(uint32_t first, uint32_t count, uint64_t* out) = 0;
    virtual Status WriteZoneWords(uint32_t first, uint32_t count, const uint64_t* in) = 0;
    virtual Status ReadZded(uint32_t zone, void* buf) = 0;
    virtual Status WriteZded(uint32_t zone, const void* buf) = 0;

    // How a sequential zone's writable bytes (its capacity) are stored. With `allocate`, an
    // unmapped zone gets a linear extent that reads as zeros (the mapping is durable after the
    // next Flush()). A kLinear answer never changes while the image is open.
    virtual Result<ZoneExtent> MapZone(uint32_t zone, bool allocate) = 0;
    // I/O inside linear extents (host offsets from MapZone).
    virtual Status ReadExtent(uint64_t host, void* buf, uint64_t len) = 0;
    virtual Status WriteExtent(uint64_t host, const void* buf, uint64_t len) = 0;
    // Makes the host range read as zeros and returns its space to the host file system, in
    // one call; the mapping stays.
    virtual Status ZeroExtent(uint64_t host, uint64_t len) = 0;
    // Asynchronous read or write inside a linear extent (io->off: a host offset from MapZone);
    // completes with the same checks ReadExtent/WriteExtent make.
    virtual void SubmitExtentIo(FileIo* io) = 0;
    // False when the host range certainly holds nothing (a hole): zeroing it would change nothing.
    virtual Result<bool> ExtentMayHoldData(uint64_t host, uint64_t len) = 0;
    // Granularity below which ZeroExtent's space is not returned (the format's cluster).
    virtual uint32_t allocation_unit() const = 0;
};

}  // namespace qzns
