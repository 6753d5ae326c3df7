// qzns-io's zone commands, named as in qemu-io: zrp (report), zo/zc/zf/zrs (open, close,
// finish, reset), zap (append), plus zoff (offline) and zde (set descriptor extension).
#include <cstdio>
#include <fstream>
#include <iterator>

#include "tools/io/io-commands.h"
#include "util/options.h"
#include "util/size.h"

namespace qzns::io {
namespace {

void PrintZoneError(const char* cmd, const BlkResult& r) {
    printf("%s failed: %s\n", cmd, r.message().c_str());
}

Result<uint64_t> SizeArg(const std::string& s, const char* what) {
    auto v = ParseSize(s);
    if (!v.ok()) return Status::Error(EINVAL, std::string("non-numeric ") + what + " argument -- " + s);
    return *v;
}

bool NeedZoned(IoContext& ctx, const char* cmd) {
    if (ctx.blk->is_zoned()) return true;
    printf("%s failed: the image has no zones\n", cmd);
    return false;
}

}  // namespace

bool CmdZoneReport(IoContext& ctx, const std::vector<std::string>& w) {
    if (!NeedZoned(ctx, "zrp")) return false;
    if (w.size() != 3) return fprintf(stderr, "usage: zrp off nr\n"), false;
    auto off = SizeArg(w[1], "offset");
    auto nr = ParseUint(w[2]);
    if (!off.ok() || !nr.ok()) return fprintf(stderr, "zrp: invalid argument\n"), false;
    auto zones = ctx.blk->ReportZones(*off, static_cast<uint32_t>(std::min<uint64_t>(*nr, 1u << 30)));
    if (!zones.ok()) return printf("zone report failed: %s\n", zones.status().message().c_str()), false;
    for (const ZoneInfo& z : *zones) {
        // Sector units, like qemu-io's zrp.
        printf("start: 0x%llx, len 0x%llx, cap 0x%llx, wptr 0x%llx, zcond:%u, [type: %u]\n",
               static_cast<unsigned long long>(z.start / 512), static_cast<unsigned long long>(z.len / 512),
               static_cast<unsigned long long>(z.cap / 512), static_cast<unsigned long long>(z.wp / 512),
               static_cast<unsigned>(z.state), z.type == ZoneType::kConventional ? 1u : 2u);
    }
    return true;
}

// zo/zc/zf/zrs/zoff OFF LEN: applies to every zone in the range; the whole disk means
// "select all" (one flush instead of one per zone).
bool CmdZoneMgmt(IoContext& ctx, const std::vector<std::string>& w, ZoneMgmtOp op, const char* name) {
    if (!NeedZoned(ctx, name)) return false;
    if (w.size() != 3) return fprintf(stderr, "usage: %s off len\n", name), false;
    auto off = SizeArg(w[1], "offset");
    auto len = SizeArg(w[2], "length");
    if (!off.ok() || !len.ok()) return fprintf(stderr, "%s: invalid argument\n", name), false;
    uint64_t zs = ctx.blk->zone_size();
    if (*off % zs) return printf("%s failed: offset %llu is not the start of a zone\n", name, static_cast<unsigned long long>(*off)), false;
    if (*off == 0 && *len >= ctx.blk->size()) {
        BlkResult r = ctx.blk->ZoneMgmt(op, 0, true);
        if (!r.ok()) return PrintZoneError(name, r), false;
        return true;
    }
    for (uint64_t pos = *off; pos < *off + std::max<uint64_t>(*len, 1); pos += zs) {
        BlkResult r = ctx.blk->ZoneMgmt(op, pos, false);
        if (!r.ok()) return PrintZoneError(name, r), false;
    }
    return true;
}

bool CmdZoneAppend(IoContext& ctx, const std::vector<std::string>& w) {
    if (!NeedZoned(ctx, "zap")) return false;
    std::optional<uint8_t> pattern;
    bool fua = false;
    std::vector<std::string> args;
    for (size_t i = 1; i < w.size(); i++) {
        if (w[i] == "-P" && i + 1 < w.size()) {
            auto p = ParseUint(w[++i]);
            if (!p.ok() || *p > 255) return fprintf(stderr, "zap: invalid pattern\n"), false;
            pattern = static_cast<uint8_t>(*p);
        } else if (w[i] == "-f") {
            fua = true;
        } else if (w[i] == "-p") {
            // qemu-io's zap takes -p; the data pattern is this tool's -P.
        } else {
            args.push_back(w[i]);
        }
    }
    if (args.size() != 2) return fprintf(stderr, "usage: zap [-P pattern] [-f] off len\n"), false;
    auto off = SizeArg(args[0], "offset");
    auto len = SizeArg(args[1], "length");
    if (!off.ok() || !len.ok()) return fprintf(stderr, "zap: invalid argument\n"), false;
    if (*len > (1ull << 30)) return fprintf(stderr, "zap: length too large\n"), false;
    std::vector<uint8_t> buf(*len, pattern.value_or(0xcd));
    BlkResult r = ctx.blk->Append(*off, buf.data(), *len, fua);
    if (!r.ok()) return PrintZoneError("zone append", r), false;
    printf("After zap done, the append sector is 0x%llx (offset %llu)\n",
           static_cast<unsigned long long>(r.value / 512), static_cast<unsigned long long>(r.value));
    return true;
}

bool CmdZoneDescExt(IoContext& ctx, const std::vector<std::string>& w) {
    if (!NeedZoned(ctx, "zde")) return false;
    uint32_t sz = ctx.blk->zd_extension_size();
    if (sz == 0) return printf("zde failed: the image has no zone descriptor extensions (zd_extension_size=0)\n"), false;
    std::vector<uint8_t> data(sz, 0);
    std::string off_s;
    if (w.size() == 4 && w[2] == "-P") {
        auto p = ParseUint(w[3]);
        if (!p.ok() || *p > 255) return fprintf(stderr, "zde: invalid pattern\n"), false;
        data.assign(sz, static_cast<uint8_t>(*p));
        off_s = w[1];
    } else if (w.size() == 4 && w[1] == "-P") {
        auto p = ParseUint(w[2]);
        if (!p.ok() || *p > 255) return fprintf(stderr, "zde: invalid pattern\n"), false;
        data.assign(sz, static_cast<uint8_t>(*p));
        off_s = w[3];
    } else if (w.size() == 3) {
        std::ifstream in(w[2], std::ios::binary);
        if (!in) return printf("zde failed: cannot read '%s'\n", w[2].c_str()), false;
        std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (file.size() > sz)
            return printf("zde failed: '%s' has %zu bytes, more than zd_extension_size (%u)\n", w[2].c_str(),
                          file.size(), sz), false;
        std::copy(file.begin(), file.end(), data.begin());
        off_s = w[1];
    } else {
        return fprintf(stderr, "usage: zde off FILE | zde off -P pattern\n"), false;
    }
    auto off = SizeArg(off_s, "offset");
    if (!off.ok()) return fprintf(stderr, "zde: invalid offset\n"), false;
    BlkResult r = ctx.blk->SetZoneDescExt(*off, data.data());
    if (!r.ok()) return PrintZoneError("zde", r), false;
    return true;
}

}  // namespace qzns::io
