// Image creation: header, refcount table and blocks, L1 table; then, through the ordinary
// allocation path, the zone tables of a zoned image and any requested preallocation.
#include <cstring>

#include "block/qcow2/qcow2.h"
#include "block/zoned/zone-word.h"

namespace qzns::qcow2 {
namespace {

uint64_t DivRoundUp(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

}  // namespace

Status Create(std::unique_ptr<File> file, const CreateOptions& opts) {
    uint32_t cs = opts.cluster_size;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
        return Status::Error(EINVAL, "cluster_size must be a power of two between 512 and 2097152 (2M), not " +
                                         std::to_string(cs));
    uint32_t rb = opts.refcount_bits;
    if (rb == 0 || rb > 64 || (rb & (rb - 1)))
        return Status::Error(EINVAL, "refcount_bits must be a power of two between 1 and 64");
    if (opts.preallocation != "off" && opts.preallocation != "metadata" && opts.preallocation != "falloc" &&
        opts.preallocation != "full")
        return Status::Error(EINVAL, "preallocation must be off, metadata, falloc or full, not '" +
                                         opts.preallocation + "'");
    if (!opts.backing_file.empty() && opts.preallocation != "off")
        return Status::Error(EINVAL, "backing_file and preallocation cannot be used together");
    if (opts.backing_file.size() > 1023) return Status::Error(EINVAL, "backing file name is too long");

    unsigned cluster_bits = __builtin_ctz(cs);
    uint32_t order = __builtin_ctz(rb);
    uint64_t l2_coverage = uint64_t{cs} * (cs / 8);

    std::optional<ZonedGeometry> zoned = opts.zoned;
    ZonedExtension zext{};
    uint64_t area_end = opts.size;
    if (zoned) {
        QZNS_TRY(ValidateZonedGeometry(opts.size, &*zoned));
        // Tables start at the first L1 entry past the disk, where QEMU would put VM state.
        uint64_t table_off = DivRoundUp(opts.size, l2_coverage) * l2_coverage;
        uint64_t table_size = DivRoundUp(uint64_t{zoned->nr_zones} * 8, cs) * cs;
        uint64_t zded_size = DivRoundUp(uint64_t{zoned->nr_zones} * zoned->zd_extension_size, cs) * cs;
        uint64_t zded_off = zded_size ? table_off + table_size : 0;
        area_end = table_off + table_size + zded_size;
        zext.version.set(kZonedExtVersion);
        zext.profile = static_cast<uint8_t>(zoned->profile == ZonedProfile::kZbc ? ZonedProfileCode::kZbc
                                                                                  : ZonedProfileCode::kZns);
        zext.zone_size.set(zoned->zone_size);
        zext.zone_capacity.set(zoned->zone_capacity);
        zext.nr_zones.set(zoned->nr_zones);
        zext.nr_conv_zones.set(zoned->nr_conv_zones);
        zext.max_open_zones.set(zoned->max_open_zones);
        zext.max_active_zones.set(zoned->max_active_zones);
        zext.max_append_bytes.set(zoned->max_append_bytes);
        zext.zd_extension_size.set(zoned->zd_extension_size);
        zext.disk_size.set(opts.size);
        zext.zone_table_offset.set(table_off);
        zext.zone_table_size.set(table_size);
        zext.zded_offset.set(zded_off);
        zext.zded_size.set(zded_size);
    }
    uint64_t l1_size = DivRoundUp(area_end, l2_coverage);
    if (l1_size > kMaxL1Entries)
        return Status::Error(EFBIG, "image too large for cluster_size " + std::to_string(cs) +
                                        " (the L1 table would exceed 32 MiB); use a larger cluster_size");
    uint64_t l1_clusters = std::max<uint64_t>(1, DivRoundUp(l1_size * 8, cs));

    // Metadata layout: header | refcount table | refcount blocks | L1 table.
    uint64_t per_block = (uint64_t{cs} * 8) >> order;
    uint64_t rt_clusters = 1, rb_count = 1;
    for (int i = 0; i < 8; i++) {
        uint64_t total = 1 + rt_clusters + rb_count + l1_clusters;
        rb_count = DivRoundUp(total, per_block);
        rt_clusters = DivRoundUp(rb_count * 8, cs);
    }
    uint64_t total = 1 + rt_clusters + rb_count + l1_clusters;
    if (rt_clusters * cs > kMaxRefcountTableBytes)
        return Status::Error(EFBIG, "image metadata too large for this cluster size");

    QZNS_TRY(file->Truncate(0));
    std::unique_ptr<File> f;
    {
        std::unique_ptr<Image> img(new Image(std::move(file)));
        Image& m = *img;
        // The image is private to this function: holding its lock across the writes costs nothing
        // and lets the analysis check the fields below. (Released before img is destroyed.)
        util::MutexLock lk(m.mu_);
        m.info_.version = 3;
        m.cluster_bits_ = cluster_bits;
        m.cluster_size_ = cs;
        m.l2_bits_ = cluster_bits - 3;
        m.refcount_order_ = order;
        m.refblock_bits_ = cluster_bits + 3 - order;
        m.size_ = opts.size;
        m.l1_size_ = static_cast<uint32_t>(l1_size);
        m.refcount_table_offset_ = uint64_t{cs};
        m.refcount_table_clusters_ = static_cast<uint32_t>(rt_clusters);
        m.header_reftable_offset_ = m.refcount_table_offset_;
        m.header_reftable_clusters_ = m.refcount_table_clusters_;
        m.l1_table_offset_ = (1 + rt_clusters + rb_count) * cs;
        m.info_.backing_file = opts.backing_file;
        m.info_.backing_format = opts.backing_format;
        if (zoned) {
            m.zoned_ext_ = zext;
            m.has_zoned_ext_ = true;
            m.info_.zoned = zoned;
            m.info_.autoclear_features = kAutoclearZoned;
        }

        std::vector<uint8_t> buf(total * cs, 0);
        for (uint64_t b = 0; b < rb_count; b++)
            store_be64(&buf[cs + b * 8], (1 + rt_clusters + b) * cs);
        // Refcount 1 for every metadata cluster; entries written with the block's own encoding.
        for (uint64_t c = 0; c < total; c++) {
            uint64_t b = c / per_block, i = c % per_block;
            uint8_t* blk = &buf[(1 + rt_clusters + b) * cs];
            switch (order) {
            case 0: blk[i / 8] |= static_cast<uint8_t>(1u << (i % 8)); break;
            case 1: blk[i / 4] |= static_cast<uint8_t>(1u << (2 * (i % 4))); break;
            case 2: blk[i / 2] |= static_cast<uint8_t>(1u << (4 * (i % 2))); break;
            case 3: blk[i] = 1; break;
            case 4: store_be16(&blk[i * 2], 1); break;
            case 5: store_be32(&blk[i * 4], 1); break;
            default: store_be64(&blk[i * 8], 1); break;
            }
        }
        QZNS_TRY(m.file_->Pwrite(buf.data() + cs, buf.size() - cs, cs));
        QZNS_TRY(m.WriteHeader());
        QZNS_TRY(m.file_->Sync());
        f = std::move(m.file_);
    }

    // Reopen through the normal path and fill in what is allocated like any guest write.
    Image::OpenFlags of;
    of.write = true;
    QZNS_ASSIGN(auto opened, Image::Open(std::move(f), of, nullptr));
    if (zoned) {
        const ZonedGeometry& g = *zoned;
        uint64_t zs = g.zone_size / 512;
        std::vector<uint64_t> words;
        for (uint32_t first = 0; first < g.nr_zones;) {
            uint32_t n = std::min<uint32_t>(g.nr_zones - first, 1u << 16);
            words.resize(n);
            for (uint32_t i = 0; i < n; i++) {
                uint32_t z = first + i;
                words[i] = z < g.nr_conv_zones
                               ? ZoneWord::Make(ZoneState::kNotWritePointer, ZoneType::kConventional, 0, z * zs).raw
                               : ZoneWord::Make(ZoneState::kEmpty, ZoneType::kSeqWriteRequired, 0, z * zs).raw;
            }
            QZNS_TRY(opened->WriteZoneWords(first, n, words.data()));
            first += n;
        }
        if (g.zd_extension_size) {
            std::vector<uint8_t> zeros(1 << 20, 0);
            uint64_t off = zext.zded_offset.get(), len = zext.zded_size.get();
            while (len) {
                uint64_t n = std::min<uint64_t>(len, zeros.size());
                QZNS_TRY(opened->ZoneAreaIo(off, zeros.data(), n, true));
                off += n;
                len -= n;
            }
        }
    }
    if (opts.preallocation == "metadata") {
        for (uint64_t i = 0; i < DivRoundUp(opts.size, l2_coverage); i++) {
            util::MutexLock lk(opened->mu_);
            Image::ScopedLockedIo io(opened->locked_io_);  // nobody else has the image yet
            TablePtr t;
            QZNS_TRY(opened->LoadL2(i, true, &t));
        }
        // Zoned: every sequential zone gets its linear extent now, in zone order, so no write
        // ever allocates (qcow2-zone-extent.cc).
        if (opts.zoned) {
            for (uint32_t z = opts.zoned->nr_conv_zones; z < opened->zoned()->nr_zones; z++)
                QZNS_TRY(opened->MapZone(z, true).status());
        }
    } else if (opts.preallocation == "falloc" || opts.preallocation == "full") {
        std::vector<uint8_t> zeros(1 << 20, 0);
        for (uint64_t off = 0; off < opts.size;) {
            uint64_t n = std::min<uint64_t>(opts.size - off, zeros.size());
            QZNS_TRY(opened->Write(off, zeros.data(), n));
            off += n;
        }
    }
    return opened->Close();
}

}  // namespace qzns::qcow2
