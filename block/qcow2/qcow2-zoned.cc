// The zoned extension: geometry in a header extension, zone words and descriptor extensions in
// preallocated clusters mapped at guest offsets past the end of the disk (the region QEMU calls
// the VM state area). Clusters reached through L2 tables are counted by every qcow2 checker, so
// an unmodified `qemu-img check -r all` keeps them; see docs/interop/qcow2-zoned.rst.
#include <algorithm>
#include <cstring>

#include "block/qcow2/qcow2.h"
#include "block/qcow2/qcow2-entry.h"
#include "block/zoned/zone-state-machine.h"
#include "block/zoned/zone-word.h"

namespace qzns::qcow2 {
namespace {

bool IsPowerOfTwo(uint64_t v) { return v && !(v & (v - 1)); }
std::string Str(uint64_t v) { return std::to_string(v); }

// The seed series' extension payload (see ../shared/facts/seed-series.md), big-endian.
struct SeedZonedExtension {
    uint8_t zoned;
    uint8_t rsvd1[3];
    be64 zone_size;
    be64 zone_capacity;
    be32 conventional_zones;
    be32 nr_zones;
    be32 max_active_zones;
    be32 max_open_zones;
    be32 max_append_bytes;
    be64 zonedmeta_size;
    be64 zonedmeta_offset;
};
static_assert(sizeof(SeedZonedExtension) == 56);

}  // namespace

ZoneGeometry ZoneGeometryOf(const ZonedGeometry& g, uint32_t zone) {
    ZoneGeometry zg;
    zg.zsze = g.zone_size / 512;
    zg.zslba = uint64_t{zone} * zg.zsze;
    bool conv = zone < g.nr_conv_zones;
    zg.zcap = conv ? zg.zsze : g.zone_capacity / 512;
    zg.type = conv ? ZoneType::kConventional : ZoneType::kSeqWriteRequired;
    return zg;
}

Status ValidateZonedGeometry(uint64_t disk_size, ZonedGeometry* g) {
    bool zbc = g->profile == ZonedProfile::kZbc;
    if (g->zone_size == 0) return Status::Error(EINVAL, "zone_size must be greater than 0");
    if (g->zone_size % 512) return Status::Error(EINVAL, "zone_size must be a multiple of 512 bytes");
    if (!zbc && !IsPowerOfTwo(g->zone_size))
        return Status::Error(EINVAL, "zone_size " + Str(g->zone_size) +
                                         " is not a power of two (required by the zns profile and by Linux)");
    if (g->zone_capacity == 0) g->zone_capacity = g->zone_size;
    if (g->zone_capacity > g->zone_size)
        return Status::Error(EINVAL, "zone_capacity (" + Str(g->zone_capacity) + ") must not exceed zone_size (" +
                                         Str(g->zone_size) + ")");
    if (g->zone_capacity % 512) return Status::Error(EINVAL, "zone_capacity must be a multiple of 512 bytes");
    if (zbc && g->zone_capacity != g->zone_size)
        return Status::Error(EINVAL, "the zbc profile has no zone capacity: zone_capacity must equal zone_size");
    if (disk_size == 0 || disk_size % g->zone_size)
        return Status::Error(EINVAL, "size (" + Str(disk_size) + ") must be a non-zero multiple of zone_size (" +
                                         Str(g->zone_size) + ")");
    uint64_t nr = disk_size / g->zone_size;
    if (nr > (1ull << 32) - 1) return Status::Error(EINVAL, "too many zones: " + Str(nr) + " (at most 2^32-1)");
    g->nr_zones = static_cast<uint32_t>(nr);
    if (g->nr_conv_zones >= g->nr_zones)
        return Status::Error(EINVAL, "zone_nr_conv (" + Str(g->nr_conv_zones) +
                                         ") must be smaller than the number of zones (" + Str(g->nr_zones) + ")");
    uint32_t seq = g->nr_zones - g->nr_conv_zones;
    if (g->max_active_zones > seq)
        return Status::Error(EINVAL, "max_active_zones (" + Str(g->max_active_zones) +
                                         ") exceeds the number of sequential zones (" + Str(seq) + ")");
    if (g->max_open_zones > seq)
        return Status::Error(EINVAL, "max_open_zones (" + Str(g->max_open_zones) +
                                         ") exceeds the number of sequential zones (" + Str(seq) + ")");
    if (g->max_active_zones && g->max_open_zones > g->max_active_zones)
        return Status::Error(EINVAL, "max_open_zones (" + Str(g->max_open_zones) + ") exceeds max_active_zones (" +
                                         Str(g->max_active_zones) + ")");
    if (g->max_active_zones && g->max_open_zones == 0)
        g->max_open_zones = g->max_active_zones;  // "no limit" cannot exceed the active limit
    if (zbc) {
        if (g->max_append_bytes)
            return Status::Error(EINVAL, "the zbc profile has no zone append: max_append_sectors must be 0");
        if (g->zd_extension_size)
            return Status::Error(EINVAL, "the zbc profile has no zone descriptor extensions: zd_extension_size must be 0");
    } else {
        if (g->max_append_bytes % 512)
            return Status::Error(EINVAL, "max_append size must be a whole number of 512-byte sectors");
        if (g->max_append_bytes > g->zone_capacity)
            return Status::Error(EINVAL, "max_append_sectors (" + Str(g->max_append_bytes / 512) +
                                             ") exceeds the zone capacity (" + Str(g->zone_capacity / 512) +
                                             " sectors)");
        if (g->zd_extension_size % 64 || g->zd_extension_size > 255 * 64)
            return Status::Error(EINVAL, "zd_extension_size (" + Str(g->zd_extension_size) +
                                             ") must be a multiple of 64 bytes, at most 16320");
    }
    return Status::Ok();
}

Status Image::ParseZonedExtension(const uint8_t* data, uint32_t len) {
    if (len < sizeof(ZonedExtension))
        return Status::Error(EINVAL, "zoned header extension is truncated (" + Str(len) + " bytes)");
    std::memcpy(&zoned_ext_, data, sizeof(zoned_ext_));
    const ZonedExtension& z = zoned_ext_;
    if (z.version.get() != kZonedExtVersion)
        return Status::Error(ENOTSUP, "zoned extension version " + Str(z.version.get()) +
                                          " is not supported (this qzns reads version 1)");
    ZonedGeometry g;
    if (z.profile == static_cast<uint8_t>(ZonedProfileCode::kZns)) g.profile = ZonedProfile::kZns;
    else if (z.profile == static_cast<uint8_t>(ZonedProfileCode::kZbc)) g.profile = ZonedProfile::kZbc;
    else return Status::Error(EINVAL, "zoned extension has an unknown profile " + Str(z.profile));
    g.zone_size = z.zone_size.get();
    g.zone_capacity = z.zone_capacity.get();
    g.nr_conv_zones = z.nr_conv_zones.get();
    g.max_open_zones = z.max_open_zones.get();
    g.max_active_zones = z.max_active_zones.get();
    g.max_append_bytes = z.max_append_bytes.get();
    g.zd_extension_size = z.zd_extension_size.get();
    uint64_t disk = z.disk_size.get();
    Status st = ValidateZonedGeometry(disk, &g);
    if (!st.ok()) return st.Prefix("zoned header extension");
    if (g.nr_zones != z.nr_zones.get())
        return Status::Error(EINVAL, "zoned header extension: nr_zones does not match the geometry");
    uint64_t table = z.zone_table_offset.get(), table_size = z.zone_table_size.get();
    uint64_t zded = z.zded_offset.get(), zded_size = z.zded_size.get();
    if (table_size < uint64_t{g.nr_zones} * 8 || table_size > (1ull << 40) ||
        (g.zd_extension_size && (zded_size < uint64_t{g.nr_zones} * g.zd_extension_size || zded_size > (1ull << 46))))
        return Status::Error(EINVAL, "zoned header extension: zone tables are too small or too large");
    if (table + table_size < table || zded + zded_size < zded)
        return Status::Error(EINVAL, "zoned header extension: table offsets overflow");
    has_zoned_ext_ = true;
    info_.zoned = g;
    info_.zoned_in_use = z.flags & kZonedFlagInUse;
    return Status::Ok();
}

Status Image::ParseSeedZonedExtension(const uint8_t* data, uint32_t len) {
    if (len < sizeof(SeedZonedExtension)) {
        info_.zoned_problem = "seed-series zoned extension in an older, unsupported layout";
        return Status::Ok();
    }
    SeedZonedExtension s;
    std::memcpy(&s, data, sizeof(s));
    ZonedGeometry g;
    g.profile = ZonedProfile::kZns;
    g.zone_size = s.zone_size.get();
    g.zone_capacity = s.zone_capacity.get();
    g.nr_conv_zones = s.conventional_zones.get();
    g.max_open_zones = s.max_open_zones.get();
    g.max_active_zones = s.max_active_zones.get();
    g.max_append_bytes = s.max_append_bytes.get();
    // The seed stored wp words at a host offset; keep it in the fields we use for our tables.
    zoned_ext_ = {};
    zoned_ext_.zone_table_offset.set(s.zonedmeta_offset.get());
    zoned_ext_.zone_table_size.set(s.zonedmeta_size.get());
    info_.seed_layout = true;
    info_.zoned = g;
    return Status::Ok();
}

void Image::SerializeZonedExtension(std::vector<uint8_t>* out) const {
    out->assign(reinterpret_cast<const uint8_t*>(&zoned_ext_),
                reinterpret_cast<const uint8_t*>(&zoned_ext_) + sizeof(zoned_ext_));
}

Status Image::ValidateZonedTables() {
    if (info_.seed_layout) {
        // Geometry only: the seed's word table lives at a host offset we only read.
        ZonedGeometry g = *info_.zoned;
        return ValidateZonedGeometry(size_, &g).Prefix("seed-series zoned extension");
    }
    const ZonedGeometry& g = *info_.zoned;
    if (zoned_ext_.disk_size.get() != size_)
        return Status::Error(EINVAL, "the virtual disk was resized to " + Str(size_) + " bytes by another program; "
                                     "the zone layout was made for " + Str(zoned_ext_.disk_size.get()));
    uint64_t l2_coverage = uint64_t{cluster_size_} << l2_bits_;
    uint64_t area_end = uint64_t{l1_size_} * l2_coverage;
    uint64_t disk_end = (size_ + cluster_size_ - 1) / cluster_size_ * cluster_size_;
    auto check_area = [&](uint64_t off, uint64_t len, const char* what) -> Status {
        if (len == 0) return Status::Ok();
        if (off % cluster_size_ || off < disk_end || off + len > area_end)
            return Status::Error(EINVAL, std::string(what) + " lies outside the area past the disk end");
        for (uint64_t pos = off; pos < off + len;) {
            Mapping m;
            {
                util::MutexLock lk(mu_);
                QZNS_TRY(RunStep(StepKind::kLookup, [&]() REQUIRES(mu_) -> Status {
                    QZNS_ASSIGN(m, LookupMapping(pos, off + len - pos));
                    return Status::Ok();
                }));
            }
            if (KindOf(m.l2_entry, info_.version) != ClusterKind::kNormal)
                return Status::Error(EINVAL, std::string(what) + " is not fully allocated");
            pos += m.run_bytes;
        }
        return Status::Ok();
    };
    QZNS_TRY(check_area(zoned_ext_.zone_table_offset.get(), zoned_ext_.zone_table_size.get(), "zone table"));
    if (g.zd_extension_size)
        QZNS_TRY(check_area(zoned_ext_.zded_offset.get(), zoned_ext_.zded_size.get(), "descriptor extension table"));
    std::vector<uint64_t> words(std::min<uint64_t>(g.nr_zones, 65536));
    for (uint32_t first = 0; first < g.nr_zones;) {
        uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(words.size(), g.nr_zones - first));
        QZNS_TRY(ReadZoneWords(first, n, words.data()));
        for (uint32_t i = 0; i < n; i++) {
            ZoneWord w{words[i]};
            uint32_t z = first + i;
            Status st = ValidateZoneWord(w, ZoneGeometryOf(g, z));
            if (!st.ok())
                return Status::Error(EINVAL, "zone " + Str(z) + " has an invalid zone word (" + st.message() + "): 0x" + [&] {
                    char b[20];
                    snprintf(b, sizeof(b), "%016llx", static_cast<unsigned long long>(w.raw));
                    return std::string(b);
                }());
        }
        first += n;
    }
    return Status::Ok();
}

Status Image::ReadZoneWords(uint32_t first, uint32_t count, uint64_t* out) {
    if (!info_.zoned) return Status::Error(ENOTSUP, "image is not zoned");
    const ZonedGeometry& g = *info_.zoned;
    if (first > g.nr_zones || count > g.nr_zones - first) return Status::Error(EINVAL, "zone index out of range");
    if (info_.seed_layout) {
        // Seed words: host byte order (little-endian here), wp as a byte offset in bits 0-58,
        // bit 59 marks a conventional zone; the state was never stored.
        std::vector<uint8_t> raw(uint64_t{count} * 8);
        QZNS_TRY(file_->Pread(raw.data(), raw.size(), zoned_ext_.zone_table_offset.get() + uint64_t{first} * 8));
        for (uint32_t i = 0; i < count; i++) {
            uint64_t v = 0;
            for (int b = 7; b >= 0; b--) v = (v << 8) | raw[i * 8ull + b];
            uint64_t start = (first + i) * (g.zone_size / 512);
            uint64_t wp = (v & ((1ull << 59) - 1)) / 512;
            bool conv = (v >> 59) & 1;
            ZoneState s = conv ? ZoneState::kNotWritePointer
                          : wp <= start ? ZoneState::kEmpty
                          : wp >= start + g.zone_capacity / 512 ? ZoneState::kFull
                                                                : ZoneState::kClosed;
            out[i] = ZoneWord::Make(s, conv ? ZoneType::kConventional : ZoneType::kSeqWriteRequired, 0,
                                    std::clamp(wp, start, start + g.zone_capacity / 512)).raw;
        }
        return Status::Ok();
    }
    std::vector<uint8_t> raw(uint64_t{count} * 8);
    QZNS_TRY(ReadInternal(zoned_ext_.zone_table_offset.get() + uint64_t{first} * 8, raw.data(), raw.size()));
    for (uint32_t i = 0; i < count; i++) out[i] = load_be64(&raw[i * 8ull]);
    return Status::Ok();
}

Status Image::WriteZoneWords(uint32_t first, uint32_t count, const uint64_t* in) {
    QZNS_TRY(CheckWritable());
    if (!info_.zoned) return Status::Error(ENOTSUP, "image is not zoned");
    if (first > info_.zoned->nr_zones || count > info_.zoned->nr_zones - first)
        return Status::Error(EINVAL, "zone index out of range");
    std::vector<uint8_t> raw(uint64_t{count} * 8);
    for (uint32_t i = 0; i < count; i++) store_be64(&raw[i * 8ull], in[i]);
    return WriteInternal(zoned_ext_.zone_table_offset.get() + uint64_t{first} * 8, raw.data(), raw.size());
}

Status Image::ReadZded(uint32_t zone, void* buf) {
    if (!info_.zoned || !info_.zoned->zd_extension_size)
        return Status::Error(ENOTSUP, "image has no zone descriptor extensions");
    if (zone >= info_.zoned->nr_zones) return Status::Error(EINVAL, "zone index out of range");
    uint64_t sz = info_.zoned->zd_extension_size;
    return ReadInternal(zoned_ext_.zded_offset.get() + zone * sz, static_cast<uint8_t*>(buf), sz);
}

Status Image::WriteZded(uint32_t zone, const void* buf) {
    QZNS_TRY(CheckWritable());
    if (!info_.zoned || !info_.zoned->zd_extension_size)
        return Status::Error(ENOTSUP, "image has no zone descriptor extensions");
    if (zone >= info_.zoned->nr_zones) return Status::Error(EINVAL, "zone index out of range");
    uint64_t sz = info_.zoned->zd_extension_size;
    return WriteInternal(zoned_ext_.zded_offset.get() + zone * sz, static_cast<const uint8_t*>(buf), sz);
}

Status Image::ZoneAreaIo(uint64_t guest_off, void* buf, uint64_t len, bool write) {
    if (write) return WriteInternal(guest_off, static_cast<const uint8_t*>(buf), len);
    return ReadInternal(guest_off, static_cast<uint8_t*>(buf), len);
}

}  // namespace qzns::qcow2
