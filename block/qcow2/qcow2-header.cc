// qcow2 header and header extensions: parsing with validation of every offset and size (a
// hostile image must give an error, never a wild read or write), and rewriting cluster 0 with the
// extensions qzns does not know kept verbatim.
#include <algorithm>
#include <cstring>

#include "block/qcow2/qcow2.h"

namespace qzns::qcow2 {
namespace {

std::string Hex(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

struct KnownFeature {
    uint8_t type;
    uint8_t bit;
    const char* name;
};
// Names for the feature name table qzns writes, so QEMU's error messages can name our bit.
constexpr KnownFeature kKnownFeatures[] = {
    {0, 0, "dirty bit"},
    {0, 1, "corrupt bit"},
    {0, 2, "external data file"},
    {0, 3, "compression type"},
    {0, 4, "extended L2 entries"},
    {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},
    {2, 1, "raw external data"},
    {2, kAutoclearZonedBit, "qzns zoned tables valid"},
};

}  // namespace

Status Image::ParseHeader() {
    QZNS_ASSIGN(uint64_t file_size, file_->Size());
    Header h{};
    if (file_size < kV2HeaderLength)
        return Status::Error(EINVAL, "image is too short to hold a qcow2 header (" +
                                         std::to_string(file_size) + " bytes)");
    QZNS_TRY(file_->Pread(&h, sizeof(h), 0));
    if (h.magic.get() != kMagic) return Status::Error(EINVAL, "image is not in qcow2 format");
    info_.version = h.version.get();
    if (info_.version != 2 && info_.version != 3)
        return Status::Error(ENOTSUP, "unsupported qcow2 version " + std::to_string(info_.version));

    cluster_bits_ = h.cluster_bits.get();
    if (cluster_bits_ < kMinClusterBits || cluster_bits_ > kMaxClusterBits)
        return Status::Error(EINVAL, "unsupported cluster size: 2^" + std::to_string(cluster_bits_) +
                                         " (qcow2 allows 512 B to 2 MiB)");
    cluster_size_ = 1u << cluster_bits_;
    l2_bits_ = cluster_bits_ - 3;
    info_.cluster_size = cluster_size_;

    if (info_.version == 2) {
        header_length_ = kV2HeaderLength;
        refcount_order_ = 4;
    } else {
        header_length_ = h.header_length.get();
        if (header_length_ < kV3MinHeaderLength || header_length_ % 8 != 0 ||
            header_length_ > cluster_size_)
            return Status::Error(EINVAL, "invalid qcow2 header length " + std::to_string(header_length_));
        info_.incompatible_features = h.incompatible_features.get();
        info_.compatible_features = h.compatible_features.get();
        info_.autoclear_features = h.autoclear_features.get();
        refcount_order_ = h.refcount_order.get();
        if (header_length_ > 104 && h.compression_type != 0)
            return Status::Error(ENOTSUP, "unsupported compression type " +
                                              std::to_string(h.compression_type) +
                                              " (qzns reads zlib-compressed clusters only)");
    }
    if (refcount_order_ > 6)
        return Status::Error(EINVAL, "invalid refcount order " + std::to_string(refcount_order_));
    info_.refcount_bits = 1u << refcount_order_;
    refblock_bits_ = cluster_bits_ + 3 - refcount_order_;

    if (h.crypt_method.get() != 0)
        return Status::Error(ENOTSUP, "encrypted qcow2 images are not supported");

    std::vector<uint8_t> cluster0(cluster_size_);
    QZNS_TRY(file_->Pread(cluster0.data(), cluster_size_, 0));
    QZNS_TRY(ParseExtensions(cluster0, header_length_));

    uint64_t unknown_incompat = info_.incompatible_features & ~kIncompatSupported;
    // The seed series marks its images with incompatible bit 5; with its extension present we
    // know what the bit means and can read (not write) the image.
    if (info_.seed_layout) unknown_incompat &= ~kIncompatSeedZoned;
    if (unknown_incompat) {
        std::string names;
        for (unsigned bit = 0; bit < 64; bit++) {
            if (!(unknown_incompat & (1ull << bit))) continue;
            std::string name = "unknown incompatible feature bit " + std::to_string(bit);
            for (size_t i = 0; i + sizeof(FeatureNameEntry) <= feature_table_.size();
                 i += sizeof(FeatureNameEntry)) {
                auto* e = reinterpret_cast<const FeatureNameEntry*>(&feature_table_[i]);
                if (e->type == 0 && e->bit == bit)
                    name = std::string(e->name, strnlen(e->name, sizeof(e->name)));
            }
            names += (names.empty() ? "" : ", ") + name;
        }
        return Status::Error(ENOTSUP, "unsupported qcow2 feature(s): " + names +
                                          " (the image needs a program that knows them)");
    }
    if ((info_.incompatible_features & kIncompatCompression) && h.compression_type != 0)
        return Status::Error(ENOTSUP, "unsupported compression type");
    info_.dirty = info_.incompatible_features & kIncompatDirty;
    info_.corrupt = info_.incompatible_features & kIncompatCorrupt;

    size_ = h.size.get();
    uint64_t l2_coverage = uint64_t{cluster_size_} << l2_bits_;
    if (size_ > (kMaxL1Entries * l2_coverage))
        return Status::Error(EFBIG, "virtual size " + std::to_string(size_) +
                                        " is too large for this cluster size");
    uint64_t l1_needed = (size_ + l2_coverage - 1) / l2_coverage;
    l1_size_ = h.l1_size.get();
    l1_table_offset_ = h.l1_table_offset.get();
    if (l1_size_ < l1_needed)
        return Status::Error(EINVAL, "L1 table is too small for the virtual size");
    if (l1_size_ > kMaxL1Entries)
        return Status::Error(EFBIG, "L1 table with " + std::to_string(l1_size_) + " entries is too large");
    if (l1_size_ && (l1_table_offset_ % cluster_size_ ||
                     l1_table_offset_ + uint64_t{l1_size_} * 8 > file_size))
        return Status::Error(EINVAL, "L1 table offset " + Hex(l1_table_offset_) +
                                         " is invalid (unaligned or past the end of the file)");

    refcount_table_offset_ = h.refcount_table_offset.get();
    refcount_table_clusters_ = h.refcount_table_clusters.get();
    header_reftable_offset_ = refcount_table_offset_;
    header_reftable_clusters_ = refcount_table_clusters_;
    uint64_t reftable_bytes = uint64_t{refcount_table_clusters_} * cluster_size_;
    if (refcount_table_clusters_ == 0 || reftable_bytes > kMaxRefcountTableBytes)
        return Status::Error(EINVAL, "refcount table size " + std::to_string(refcount_table_clusters_) +
                                         " clusters is invalid");
    if (refcount_table_offset_ % cluster_size_ || refcount_table_offset_ + reftable_bytes > file_size)
        return Status::Error(EINVAL, "refcount table offset " + Hex(refcount_table_offset_) +
                                         " is invalid (unaligned or past the end of the file)");

    nb_snapshots_ = h.nb_snapshots.get();
    snapshots_offset_ = h.snapshots_offset.get();
    if (nb_snapshots_ > 65536)
        return Status::Error(EINVAL, "too many snapshots: " + std::to_string(nb_snapshots_));
    if (nb_snapshots_ && (snapshots_offset_ % cluster_size_ || snapshots_offset_ >= file_size))
        return Status::Error(EINVAL, "snapshot table offset " + Hex(snapshots_offset_) + " is invalid");

    backing_file_offset_ = h.backing_file_offset.get();
    backing_file_size_ = h.backing_file_size.get();
    if (backing_file_offset_) {
        if (backing_file_size_ > 1023 || backing_file_offset_ > cluster_size_ ||
            backing_file_offset_ + backing_file_size_ > cluster_size_)
            return Status::Error(EINVAL, "backing file name is invalid (too long or outside the header cluster)");
        info_.backing_file.assign(reinterpret_cast<const char*>(&cluster0[backing_file_offset_]),
                                  backing_file_size_);
    }

    // Tables.
    l1_.assign(l1_size_, 0);
    if (l1_size_) {
        std::vector<uint8_t> raw(uint64_t{l1_size_} * 8);
        QZNS_TRY(file_->Pread(raw.data(), raw.size(), l1_table_offset_));
        for (uint32_t i = 0; i < l1_size_; i++) l1_[i] = load_be64(&raw[i * 8ull]);
    }
    reftable_.assign(reftable_bytes / 8, 0);
    {
        std::vector<uint8_t> raw(reftable_bytes);
        QZNS_TRY(file_->Pread(raw.data(), raw.size(), refcount_table_offset_));
        for (size_t i = 0; i < reftable_.size(); i++) reftable_[i] = load_be64(&raw[i * 8]);
    }
    return Status::Ok();
}

Status Image::ParseExtensions(const std::vector<uint8_t>& cluster0, uint32_t header_length) {
    uint64_t pos = header_length;
    uint64_t end = backing_file_offset_ && backing_file_offset_ > pos ? backing_file_offset_ : cluster_size_;
    while (true) {
        if (pos + sizeof(ExtensionHeader) > end) {
            if (info_.version == 2) return Status::Ok();  // v2 images may end without a terminator
            return Status::Error(EINVAL, "header extensions run past the header cluster");
        }
        ExtensionHeader eh;
        std::memcpy(&eh, &cluster0[pos], sizeof(eh));
        uint32_t type = eh.type.get();
        uint32_t len = eh.length.get();
        pos += sizeof(eh);
        if (type == kExtEnd) return Status::Ok();
        if (len > end - pos)
            return Status::Error(EINVAL, "header extension " + Hex(type) + " is larger than the header cluster");
        const uint8_t* data = &cluster0[pos];
        switch (type) {
        case kExtBackingFormat:
            info_.backing_format.assign(reinterpret_cast<const char*>(data), strnlen(reinterpret_cast<const char*>(data), len));
            break;
        case kExtFeatureTable:
            feature_table_.assign(data, data + len);
            break;
        case kExtZoned:
            QZNS_TRY(ParseZonedExtension(data, len));
            break;
        case kExtSeedZoned:
            if (!has_zoned_ext_) QZNS_TRY(ParseSeedZonedExtension(data, len));
            unknown_exts_.emplace_back(type, std::vector<uint8_t>(data, data + len));
            break;
        case kExtDataFile:
            return Status::Error(ENOTSUP, "images with an external data file are not supported");
        case kExtEncryption:
            return Status::Error(ENOTSUP, "encrypted qcow2 images are not supported");
        default:
            unknown_exts_.emplace_back(type, std::vector<uint8_t>(data, data + len));
            break;
        }
        pos += (uint64_t{len} + 7) & ~uint64_t{7};
    }
}

Status Image::WriteHeader() {
    // The feature name table is optional; like QEMU, leave it out when it does not fit in a small
    // (e.g. 512-byte) header cluster.
    QZNS_ASSIGN(std::vector<uint8_t> buf, HeaderBytes(header_reftable_offset_, header_reftable_clusters_));
    header_writes_++;
    return file_->Pwrite(buf.data(), buf.size(), 0);
}

Result<std::vector<uint8_t>> Image::HeaderBytes(uint64_t rt_off, uint32_t rt_clusters) {
    auto with = HeaderBytesWith(true, rt_off, rt_clusters);
    if (!with.ok() && with.status().err() == ENOSPC) return HeaderBytesWith(false, rt_off, rt_clusters);
    return with;
}

Result<std::vector<uint8_t>> Image::HeaderBytesWith(bool feature_table, uint64_t rt_off, uint32_t rt_clusters) {
    std::vector<uint8_t> buf;
    buf.reserve(cluster_size_);
    Header h{};
    h.magic.set(kMagic);
    h.version.set(info_.version);
    h.cluster_bits.set(cluster_bits_);
    h.size.set(size_);
    h.l1_size.set(l1_size_);
    h.l1_table_offset.set(l1_table_offset_);
    h.refcount_table_offset.set(rt_off);
    h.refcount_table_clusters.set(rt_clusters);
    h.nb_snapshots.set(nb_snapshots_);
    h.snapshots_offset.set(snapshots_offset_);
    uint32_t hlen = kV2HeaderLength;
    if (info_.version == 3) {
        hlen = sizeof(Header);
        h.incompatible_features.set(info_.incompatible_features);
        h.compatible_features.set(info_.compatible_features);
        h.autoclear_features.set(info_.autoclear_features);
        h.refcount_order.set(refcount_order_);
        h.header_length.set(hlen);
    }
    buf.insert(buf.end(), reinterpret_cast<uint8_t*>(&h), reinterpret_cast<uint8_t*>(&h) + hlen);

    auto add_ext = [&buf](uint32_t type, const uint8_t* data, size_t len) {
        ExtensionHeader eh;
        eh.type.set(type);
        eh.length.set(static_cast<uint32_t>(len));
        buf.insert(buf.end(), reinterpret_cast<uint8_t*>(&eh), reinterpret_cast<uint8_t*>(&eh) + sizeof(eh));
        buf.insert(buf.end(), data, data + len);
        buf.resize((buf.size() + 7) & ~size_t{7}, 0);
    };
    // The zoned extension goes first so it shares the header's first sector.
    if (has_zoned_ext_) {
        std::vector<uint8_t> z;
        SerializeZonedExtension(&z);
        add_ext(kExtZoned, z.data(), z.size());
    }
    if (!info_.backing_format.empty())
        add_ext(kExtBackingFormat, reinterpret_cast<const uint8_t*>(info_.backing_format.data()),
                info_.backing_format.size());
    if (info_.version == 3 && feature_table) {
        std::vector<uint8_t> table;
        for (const auto& f : kKnownFeatures) {
            FeatureNameEntry e;
            std::memset(&e, 0, sizeof(e));
            e.type = f.type;
            e.bit = f.bit;
            std::memcpy(e.name, f.name, std::min(sizeof(e.name), std::strlen(f.name)));
            table.insert(table.end(), reinterpret_cast<uint8_t*>(&e), reinterpret_cast<uint8_t*>(&e) + sizeof(e));
        }
        add_ext(kExtFeatureTable, table.data(), table.size());
    }
    for (const auto& [type, data] : unknown_exts_) add_ext(type, data.data(), data.size());
    add_ext(kExtEnd, nullptr, 0);
    if (!info_.backing_file.empty()) {
        uint64_t off = buf.size();
        buf.insert(buf.end(), info_.backing_file.begin(), info_.backing_file.end());
        auto* hp = reinterpret_cast<Header*>(buf.data());
        hp->backing_file_offset.set(off);
        hp->backing_file_size.set(static_cast<uint32_t>(info_.backing_file.size()));
    }
    if (buf.size() > cluster_size_)
        return Status::Error(ENOSPC, "header and extensions do not fit in one cluster");
    return buf;
}

Status Image::SetIncompatBit(uint64_t bit, bool on) {
    uint64_t v = on ? (info_.incompatible_features | bit) : (info_.incompatible_features & ~bit);
    if (v == info_.incompatible_features) return Status::Ok();
    info_.incompatible_features = v;
    QZNS_TRY(WriteHeader());
    return file_->Sync();
}

}  // namespace qzns::qcow2
