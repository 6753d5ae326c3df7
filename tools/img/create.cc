// qzns-img create: option parsing and validation for plain and zoned images.
#include <cstring>

#include "tools/img/img-common.h"
#include "util/options.h"
#include "util/size.h"

namespace qzns::img {
namespace {

const char kCreateHelp[] =
    "Supported options:\n"
    "  size=<size>               Virtual disk size\n"
    "  cluster_size=<size>       qcow2 cluster size (512 B to 2 MiB, default 64 KiB)\n"
    "  refcount_bits=<num>       Width of a reference count entry in bits (1-64, default 16)\n"
    "  preallocation=<mode>      off, metadata, falloc or full\n"
    "  backing_file=<file>       File name of a base image\n"
    "  backing_fmt=<fmt>         Image format of the base image\n"
    "  compat=1.1                qcow2 version (only 1.1, i.e. version 3, is written)\n"
    "  zoned_profile=zns|zbc     Make a zoned image: NVMe ZNS or SCSI/ATA ZBC semantics\n"
    "  zone_size=<size>          Zone size (a power of two for zns)\n"
    "  zone_capacity=<size>      Writable bytes per zone (default: zone_size; zns only)\n"
    "  zone_nr_conv=<num>        Number of conventional zones at the start of the disk\n"
    "  max_open_zones=<num>      Open zone limit (0: no limit)\n"
    "  max_active_zones=<num>    Active zone limit (0: no limit)\n"
    "  max_append_sectors=<num>  Largest zone append in 512-byte sectors (zns only)\n"
    "  zd_extension_size=<size>  Zone descriptor extension bytes per zone, multiple of 64 (zns only)\n"
    "  The seed series' spellings are accepted too: zone.mode=host-managed, zone.size,\n"
    "  zone.capacity, zone.conventional_zones, zone.max_open_zones, zone.max_active_zones,\n"
    "  zone.max_append_bytes.\n";

// Takes a size-valued option under either of two spellings.
Result<std::optional<uint64_t>> TakeSizeEither(OptionSet& o, const char* a, const char* b) {
    if (std::strcmp(a, b) != 0 && o.Has(a) && o.Has(b))
        return Status::Error(EINVAL, std::string("'") + a + "' and '" + b + "' are the same option; give one");
    const char* key = o.Has(a) ? a : o.Has(b) ? b : nullptr;
    if (!key) return std::optional<uint64_t>();
    QZNS_ASSIGN(uint64_t v, o.TakeSize(key));
    return std::optional<uint64_t>(v);
}

Result<std::optional<uint64_t>> TakeUintEither(OptionSet& o, const char* a, const char* b) {
    if (o.Has(a) && o.Has(b))
        return Status::Error(EINVAL, std::string("'") + a + "' and '" + b + "' are the same option; give one");
    const char* key = o.Has(a) ? a : o.Has(b) ? b : nullptr;
    if (!key) return std::optional<uint64_t>();
    QZNS_ASSIGN(uint64_t v, o.TakeUint(key));
    return std::optional<uint64_t>(v);
}

Result<uint32_t> U32(const std::optional<uint64_t>& v, const char* name) {
    if (!v) return uint32_t{0};
    if (*v > 0xffffffffu) return Status::Error(EINVAL, std::string(name) + " is too large");
    return static_cast<uint32_t>(*v);
}

Status BuildOptions(OptionSet& o, std::optional<uint64_t> size_arg, qcow2::CreateOptions* out) {
    QZNS_ASSIGN(std::optional<uint64_t> size, TakeSizeEither(o, "size", "size"));
    if (size && size_arg && *size != *size_arg)
        return Status::Error(EINVAL, "the size was given twice with different values");
    if (!size) size = size_arg;
    QZNS_ASSIGN(uint64_t cluster, o.TakeSize("cluster_size", 65536));
    if (cluster > 0xffffffffu) return Status::Error(EINVAL, "cluster_size is too large");
    out->cluster_size = static_cast<uint32_t>(cluster);
    QZNS_ASSIGN(uint64_t rb, o.TakeUint("refcount_bits", 16));
    out->refcount_bits = static_cast<uint32_t>(std::min<uint64_t>(rb, 1000));
    if (auto p = o.Take("preallocation")) out->preallocation = *p;
    if (auto b = o.Take("backing_file")) out->backing_file = *b;
    if (auto f = o.Take("backing_fmt")) out->backing_format = *f;
    if (auto c = o.Take("compat"))
        if (*c != "1.1" && *c != "v3")
            return Status::Error(EINVAL, "compat=" + *c + " is not supported: qzns writes qcow2 version 3 (compat=1.1)");
    QZNS_ASSIGN(bool lazy, o.TakeBool("lazy_refcounts", false));
    if (lazy) return Status::Error(EINVAL, "lazy_refcounts is not supported: qzns keeps refcounts up to date");

    // Zoned options.
    std::optional<std::string> profile = o.Take("zoned_profile");
    if (auto mode = o.Take("zone.mode")) {
        if (profile) return Status::Error(EINVAL, "give either zoned_profile or zone.mode, not both");
        if (*mode == "host-managed") profile = "zns";
        else if (*mode != "none")
            return Status::Error(EINVAL, "zone.mode must be host-managed or none, not '" + *mode + "'");
    }
    QZNS_ASSIGN(auto zone_size, TakeSizeEither(o, "zone_size", "zone.size"));
    QZNS_ASSIGN(auto zone_cap, TakeSizeEither(o, "zone_capacity", "zone.capacity"));
    QZNS_ASSIGN(auto nr_conv, TakeUintEither(o, "zone_nr_conv", "zone.conventional_zones"));
    QZNS_ASSIGN(auto max_open, TakeUintEither(o, "max_open_zones", "zone.max_open_zones"));
    QZNS_ASSIGN(auto max_active, TakeUintEither(o, "max_active_zones", "zone.max_active_zones"));
    std::optional<uint64_t> max_append_bytes;
    if (o.Has("max_append_sectors") && o.Has("zone.max_append_bytes"))
        return Status::Error(EINVAL, "give either max_append_sectors or zone.max_append_bytes, not both");
    if (o.Has("max_append_sectors")) {
        QZNS_ASSIGN(uint64_t s, o.TakeUint("max_append_sectors"));
        if (s > (1ull << 32) / 512) return Status::Error(EINVAL, "max_append_sectors is too large");
        max_append_bytes = s * 512;
    } else if (o.Has("zone.max_append_bytes")) {
        QZNS_ASSIGN(uint64_t b, o.TakeSize("zone.max_append_bytes"));
        max_append_bytes = b;
    }
    QZNS_ASSIGN(auto zded, TakeSizeEither(o, "zd_extension_size", "zd_extension_size"));
    bool any_zone = zone_size || zone_cap || nr_conv || max_open || max_active || max_append_bytes || zded;
    QZNS_TRY(o.RejectUnknown("create"));

    if (!size) return Status::Error(EINVAL, "Image creation needs a size parameter");
    out->size = *size;
    if (profile || any_zone) {
        if (!profile) profile = "zns";
        qcow2::ZonedGeometry g;
        if (*profile == "zns") g.profile = qcow2::ZonedProfile::kZns;
        else if (*profile == "zbc") g.profile = qcow2::ZonedProfile::kZbc;
        else return Status::Error(EINVAL, "zoned_profile must be zns or zbc, not '" + *profile + "'");
        if (!zone_size) return Status::Error(EINVAL, "a zoned image needs zone_size");
        g.zone_size = *zone_size;
        g.zone_capacity = zone_cap.value_or(0);
        if (zone_cap && *zone_cap == 0) return Status::Error(EINVAL, "zone_capacity must be greater than 0");
        QZNS_ASSIGN(g.nr_conv_zones, U32(nr_conv, "zone_nr_conv"));
        QZNS_ASSIGN(g.max_open_zones, U32(max_open, "max_open_zones"));
        QZNS_ASSIGN(g.max_active_zones, U32(max_active, "max_active_zones"));
        QZNS_ASSIGN(g.max_append_bytes, U32(max_append_bytes, "max_append"));
        QZNS_ASSIGN(g.zd_extension_size, U32(zded, "zd_extension_size"));
        if (!out->backing_file.empty())
            return Status::Error(EINVAL, "a zoned image cannot have a backing file");
        QZNS_TRY(qcow2::ValidateZonedGeometry(out->size, &g));
        out->zoned = g;
    }
    return Status::Ok();
}

}  // namespace

int CmdCreate(Args& a) {
    std::string fmt = "raw";
    std::string opts_str;
    std::string backing, backing_fmt;
    bool quiet = false;
    while (true) {
        auto n = a.Next({"f", "o", "b", "F"});
        if (!n.ok()) return Fail(n.status());
        const std::string& name = *n;
        if (name.empty()) break;
        if (name == "f") fmt = a.value();
        else if (name == "o") opts_str += (opts_str.empty() ? "" : ",") + a.value();
        else if (name == "b") backing = a.value();
        else if (name == "F") backing_fmt = a.value();
        else if (name == "q") quiet = true;
        else return Fail("create: unknown option '" + name + "'");
    }
    auto parsed = OptionSet::Parse(opts_str);
    if (!parsed.ok()) return Fail(parsed.status());
    OptionSet o = std::move(parsed).value();
    if (o.Has("help")) {
        printf("%s", kCreateHelp);
        return 0;
    }
    const auto& pos = a.positional();
    if (pos.empty() || pos.size() > 2) return Fail("Expecting image file name (usage: create [-f FMT] [-o OPTIONS] FILE [SIZE])");
    std::optional<uint64_t> size_arg;
    if (pos.size() == 2) {
        auto s = ParseSize(pos[1]);
        if (!s.ok()) return Fail("Invalid image size specified. " + s.status().message());
        size_arg = *s;
    }
    if (fmt != "qcow2" && fmt != "raw") return Fail("Unknown file format '" + fmt + "' (qzns-img creates qcow2 and raw)");

    qcow2::CreateOptions co;
    if (!backing.empty()) co.backing_file = backing;
    if (!backing_fmt.empty()) co.backing_format = backing_fmt;
    if (fmt == "raw") {
        if (!o.Has("size") && !size_arg) return Fail("Image creation needs a size parameter");
        auto sz = size_arg ? Result<uint64_t>(*size_arg) : o.TakeSize("size");
        if (!sz.ok()) return Fail(sz.status());
        auto pre = o.Take("preallocation");
        Status st = o.RejectUnknown("create (raw images take only size and preallocation)");
        if (!st.ok()) return Fail(st);
        if (!backing.empty()) return Fail("raw images cannot have a backing file");
        FileOpenFlags ff;
        ff.write = ff.create = true;
        auto f = OpenPosixFile(pos[0], ff);
        if (!f.ok()) return Fail(f.status());
        st = (*f)->Truncate(*sz);
        if (!st.ok()) return Fail(st);
        if (!quiet) printf("Formatting '%s', fmt=raw size=%llu\n", pos[0].c_str(), static_cast<unsigned long long>(*sz));
        (void)pre;
        return 0;
    }

    Status st = BuildOptions(o, size_arg, &co);
    if (st.ok() && !co.backing_file.empty() && co.size == 0) st = Status::Error(EINVAL, "a size is required");
    if (!st.ok() && !co.backing_file.empty() && st.message() == "Image creation needs a size parameter") {
        // Like qemu-img: the size defaults to the backing image's.
        auto b = OpenForTool(co.backing_file, co.backing_format, false, true);
        if (!b.ok()) return Fail(b.status());
        size_arg = b->drv->size();
        auto again = OptionSet::Parse(opts_str);
        o = std::move(again).value();
        st = BuildOptions(o, size_arg, &co);
    }
    if (!st.ok()) return Fail(st);
    if (!quiet) {
        printf("Formatting '%s', fmt=qcow2 cluster_size=%u", pos[0].c_str(), co.cluster_size);
        if (!co.backing_file.empty()) printf(" backing_file=%s", co.backing_file.c_str());
        printf(" preallocation=%s refcount_bits=%u size=%llu", co.preallocation.c_str(), co.refcount_bits,
               static_cast<unsigned long long>(co.size));
        if (co.zoned) {
            const auto& g = *co.zoned;
            printf(" zoned_profile=%s zone_size=%llu zone_capacity=%llu zone_nr_conv=%u max_open_zones=%u "
                   "max_active_zones=%u max_append_sectors=%u zd_extension_size=%u",
                   g.profile == qcow2::ZonedProfile::kZns ? "zns" : "zbc",
                   static_cast<unsigned long long>(g.zone_size), static_cast<unsigned long long>(g.zone_capacity),
                   g.nr_conv_zones, g.max_open_zones, g.max_active_zones, g.max_append_bytes / 512,
                   g.zd_extension_size);
        }
        printf("\n");
        fflush(stdout);
    }
    FileOpenFlags ff;
    ff.write = ff.create = true;
    auto f = OpenPosixFile(pos[0], ff);
    if (!f.ok()) return Fail(f.status());
    st = qcow2::Create(std::move(f).value(), co);
    if (!st.ok()) return Fail(st.Prefix(pos[0]));
    return 0;
}

}  // namespace qzns::img
