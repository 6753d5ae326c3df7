#include "tools/io/io-commands.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>

#include "util/options.h"
#include "util/size.h"

namespace qzns::io {
namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
    bool verbose = false, quiet = false, zero = false, unmap = false, fua = false;
    std::optional<uint8_t> pattern;
    std::vector<std::string> args;
};

// Parses the flags a command allows ("P:" takes a value) followed by its positional args.
Result<Flags> ParseFlags(const std::vector<std::string>& w, const std::string& allowed) {
    Flags f;
    for (size_t i = 1; i < w.size(); i++) {
        const std::string& a = w[i];
        if (a.size() >= 2 && a[0] == '-' && !std::isdigit(static_cast<unsigned char>(a[1]))) {
            for (size_t k = 1; k < a.size(); k++) {
                char c = a[k];
                auto p = allowed.find(c);
                if (p == std::string::npos) return Status::Error(EINVAL, std::string("invalid option -- '") + c + "'");
                if (p + 1 < allowed.size() && allowed[p + 1] == ':') {
                    std::string v = k + 1 < a.size() ? a.substr(k + 1) : (i + 1 < w.size() ? w[++i] : "");
                    if (v.empty()) return Status::Error(EINVAL, std::string("option -") + c + " requires a value");
                    QZNS_ASSIGN(uint64_t pv, ParseUint(v));
                    if (pv > 255) return Status::Error(EINVAL, "pattern must be a byte value (0-255)");
                    if (c == 'P') f.pattern = static_cast<uint8_t>(pv);
                    break;
                }
                if (c == 'v') f.verbose = true;
                else if (c == 'q') f.quiet = true;
                else if (c == 'z') f.zero = true;
                else if (c == 'u') f.unmap = true;
                else if (c == 'f') f.fua = true;
            }
            continue;
        }
        f.args.push_back(a);
    }
    return f;
}

Result<std::pair<uint64_t, uint64_t>> OffLen(const Flags& f, const std::string& usage) {
    if (f.args.size() != 2) return Status::Error(EINVAL, "usage: " + usage);
    auto off = ParseSize(f.args[0]);
    if (!off.ok()) return Status::Error(EINVAL, "non-numeric offset argument -- " + f.args[0]);
    auto len = ParseSize(f.args[1]);
    if (!len.ok()) return Status::Error(EINVAL, "non-numeric length argument -- " + f.args[1]);
    return std::make_pair(*off, *len);
}

void PrintStats(const char* verb, uint64_t off, uint64_t len, Clock::time_point t0) {
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    printf("%s %llu/%llu bytes at offset %llu\n", verb, static_cast<unsigned long long>(len),
           static_cast<unsigned long long>(len), static_cast<unsigned long long>(off));
    double rate = secs > 0 ? len / secs : 0;
    printf("%s, 1 ops; %05.2f sec (%s/sec and %.4f ops/sec)\n", FormatSize(len).c_str(), secs,
           FormatSize(static_cast<uint64_t>(rate)).c_str(), secs > 0 ? 1 / secs : 0.0);
}

void DumpBuffer(const uint8_t* p, uint64_t off, uint64_t len) {
    for (uint64_t i = 0; i < len; i += 16) {
        printf("%08llx:  ", static_cast<unsigned long long>(off + i));
        uint64_t n = std::min<uint64_t>(16, len - i);
        for (uint64_t j = 0; j < n; j++) printf("%02x ", p[i + j]);
        printf(" ");
        for (uint64_t j = 0; j < n; j++) putchar(p[i + j] >= 0x20 && p[i + j] < 0x7f ? p[i + j] : '.');
        printf("\n");
    }
}

constexpr unsigned long long kMaxIoBytes = 1ull << 31;

bool CmdRead(IoContext& ctx, const std::vector<std::string>& w) {
    auto f = ParseFlags(w, "P:vq");
    if (!f.ok()) return fprintf(stderr, "read: %s\n", f.status().message().c_str()), false;
    auto ol = OffLen(*f, "read [-P pattern] [-v] [-q] off len");
    if (!ol.ok()) return fprintf(stderr, "%s\n", ol.status().message().c_str()), false;
    auto [off, len] = *ol;
    if (len > kMaxIoBytes) return fprintf(stderr, "length cannot exceed %llu\n", kMaxIoBytes), false;
    std::vector<uint8_t> buf(len);
    auto t0 = Clock::now();
    BlkResult st = ctx.blk->Read(off, buf.data(), len);
    if (!st.ok()) return printf("read failed: %s\n", st.message().c_str()), false;
    if (f->pattern) {
        for (uint64_t i = 0; i < len; i++) {
            if (buf[i] != *f->pattern) {
                printf("Pattern verification failed at offset %llu, %llu bytes\n",
                       static_cast<unsigned long long>(off + i), static_cast<unsigned long long>(len));
                return false;
            }
        }
    }
    if (f->verbose) DumpBuffer(buf.data(), off, len);
    if (!f->quiet) PrintStats("read", off, len, t0);
    return true;
}

bool CmdWrite(IoContext& ctx, const std::vector<std::string>& w) {
    auto f = ParseFlags(w, "P:zuqf");
    if (!f.ok()) return fprintf(stderr, "write: %s\n", f.status().message().c_str()), false;
    auto ol = OffLen(*f, "write [-P pattern] [-z [-u]] [-f] [-q] off len");
    if (!ol.ok()) return fprintf(stderr, "%s\n", ol.status().message().c_str()), false;
    auto [off, len] = *ol;
    if (f->zero && f->pattern) return fprintf(stderr, "-z and -P cannot be specified at the same time\n"), false;
    auto t0 = Clock::now();
    BlkResult st;
    if (f->zero) {
        st = ctx.blk->WriteZeroes(off, len, f->fua);
    } else {
        if (len > kMaxIoBytes) return fprintf(stderr, "length cannot exceed %llu\n", kMaxIoBytes), false;
        std::vector<uint8_t> buf(len, f->pattern.value_or(0xcd));
        st = ctx.blk->Write(off, buf.data(), len, f->fua);
    }
    if (!st.ok()) return printf("write failed: %s\n", st.message().c_str()), false;
    if (!f->quiet) PrintStats("wrote", off, len, t0);
    return true;
}

bool CmdDiscard(IoContext& ctx, const std::vector<std::string>& w) {
    auto f = ParseFlags(w, "q");
    if (!f.ok()) return fprintf(stderr, "discard: %s\n", f.status().message().c_str()), false;
    auto ol = OffLen(*f, "discard [-q] off len");
    if (!ol.ok()) return fprintf(stderr, "%s\n", ol.status().message().c_str()), false;
    auto [off, len] = *ol;
    auto t0 = Clock::now();
    BlkResult st = ctx.blk->Discard(off, len);
    if (!st.ok()) return printf("discard failed: %s\n", st.message().c_str()), false;
    if (!f->quiet) PrintStats("discard", off, len, t0);
    return true;
}

bool CmdFlush(IoContext& ctx, const std::vector<std::string>&) {
    BlkResult st = ctx.blk->Flush();
    if (!st.ok()) return printf("flush failed: %s\n", st.message().c_str()), false;
    return true;
}

// power_cut [-m lose-unflushed|random] [-s seed] [-a atomic-unit]: the drive loses power
// (docs/power-cut.rst), as QMP power-cut does.
bool CmdPowerCut(IoContext& ctx, const std::vector<std::string>& w) {
    PowerCutMode mode = PowerCutMode::kLoseUnflushed;
    uint64_t seed = 0, unit = kSector;
    for (size_t i = 1; i < w.size(); i++) {
        if (w[i] == "-m" && i + 1 < w.size()) {
            auto m = ParsePowerCutMode(w[++i]);
            if (!m.ok()) return printf("power_cut: %s\n", m.status().message().c_str()), false;
            mode = *m;
        } else if (w[i] == "-s" && i + 1 < w.size()) {
            auto v = ParseUint(w[++i]);
            if (!v.ok()) return printf("power_cut: invalid seed '%s'\n", w[i].c_str()), false;
            seed = *v;
        } else if (w[i] == "-a" && i + 1 < w.size()) {
            auto v = ParseSize(w[++i]);
            if (!v.ok()) return printf("power_cut: invalid atomic unit '%s'\n", w[i].c_str()), false;
            unit = *v;
        } else {
            return printf("power_cut: usage: power_cut [-m lose-unflushed|random] [-s seed] [-a atomic-unit]\n"), false;
        }
    }
    auto r = ctx.blk->PowerCut(mode, seed, unit);
    if (!r.ok()) return printf("power_cut failed: %s\n", r.status().message().c_str()), false;
    ctx.powered_off = true;
    auto ull = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    printf("power cut (%s, seed %llu): %llu cached writes kept, %llu lost (%llu / %llu bytes); %llu zones with "
           "unflushed writes, %llu kept part (%llu / %llu bytes)\n",
           PowerCutModeName(mode), ull(seed), ull(r->ops_kept), ull(r->ops_lost), ull(r->bytes_kept), ull(r->bytes_lost),
           ull(r->zones_unflushed), ull(r->zones_partial), ull(r->zone_bytes_kept), ull(r->zone_bytes_lost));
    return true;
}

bool CmdLength(IoContext& ctx, const std::vector<std::string>&) {
    printf("%s\n", FormatSize(ctx.blk->size()).c_str());
    return true;
}

}  // namespace

bool CmdZoneReport(IoContext& ctx, const std::vector<std::string>& w);
bool CmdZoneMgmt(IoContext& ctx, const std::vector<std::string>& w, ZoneMgmtOp op, const char* name);
bool CmdZoneAppend(IoContext& ctx, const std::vector<std::string>& w);
bool CmdZoneDescExt(IoContext& ctx, const std::vector<std::string>& w);

namespace {

bool CmdZo(IoContext& c, const std::vector<std::string>& w) { return CmdZoneMgmt(c, w, ZoneMgmtOp::kOpen, "zo"); }
bool CmdZc(IoContext& c, const std::vector<std::string>& w) { return CmdZoneMgmt(c, w, ZoneMgmtOp::kClose, "zc"); }
bool CmdZf(IoContext& c, const std::vector<std::string>& w) { return CmdZoneMgmt(c, w, ZoneMgmtOp::kFinish, "zf"); }
bool CmdZrs(IoContext& c, const std::vector<std::string>& w) { return CmdZoneMgmt(c, w, ZoneMgmtOp::kReset, "zrs"); }
bool CmdZoff(IoContext& c, const std::vector<std::string>& w) { return CmdZoneMgmt(c, w, ZoneMgmtOp::kOffline, "zoff"); }

using Handler = bool (*)(IoContext&, const std::vector<std::string>&);
const std::map<std::string, Handler>& Commands() {
    static const std::map<std::string, Handler> kCommands = {
        {"read", CmdRead}, {"r", CmdRead},         {"write", CmdWrite}, {"w", CmdWrite},
        {"discard", CmdDiscard}, {"d", CmdDiscard}, {"flush", CmdFlush}, {"f", CmdFlush},
        {"length", CmdLength}, {"l", CmdLength}, {"power_cut", CmdPowerCut},
        {"zrp", CmdZoneReport}, {"zone_report", CmdZoneReport}, {"zo", CmdZo}, {"zone_open", CmdZo},
        {"zc", CmdZc}, {"zone_close", CmdZc}, {"zf", CmdZf}, {"zone_finish", CmdZf},
        {"zrs", CmdZrs}, {"zone_reset", CmdZrs}, {"zoff", CmdZoff}, {"zone_offline", CmdZoff},
        {"zap", CmdZoneAppend}, {"zone_append", CmdZoneAppend}, {"zde", CmdZoneDescExt},
    };
    return kCommands;
}

}  // namespace

std::vector<std::string> SplitCommandLine(const std::string& line) {
    std::vector<std::string> out;
    std::string cur;
    bool in_word = false;
    char quote = 0;
    for (char c : line) {
        if (quote) {
            if (c == quote) quote = 0;
            else cur += c;
            continue;
        }
        if (c == '"' || c == '\'') {
            quote = c;
            in_word = true;
        } else if (c == ' ' || c == '\t') {
            if (in_word) out.push_back(cur);
            cur.clear();
            in_word = false;
        } else {
            cur += c;
            in_word = true;
        }
    }
    if (in_word) out.push_back(cur);
    return out;
}

bool RunCommand(IoContext& ctx, const std::string& line) {
    auto w = SplitCommandLine(line);
    if (w.empty()) return true;
    auto it = Commands().find(w[0]);
    if (it == Commands().end()) {
        fprintf(stderr, "command \"%s\" not found\n", w[0].c_str());
        return false;
    }
    return it->second(ctx, w);
}

}  // namespace qzns::io
