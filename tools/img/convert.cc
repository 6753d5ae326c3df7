// qzns-img convert: copy a disk between qcow2 and raw, keeping holes sparse and, from a zoned
// qcow2 image to qcow2, the zoned geometry, zone words and descriptor extensions.
#include <cstring>

#include "block/zoned/zone-word.h"
#include "tools/img/img-common.h"
#include "util/options.h"
#include "util/size.h"

namespace qzns::img {
namespace {

constexpr uint64_t kChunk = 2ull << 20;

struct Range {
    uint64_t start, end;
};

// The guest ranges holding readable data: for a zoned source only [zone start, wp) of each
// sequential zone (bytes past a wp read as zeros in the zoned layer, even if stale clusters
// exist), everything for conventional zones and plain images.
Result<std::vector<Range>> ReadableRanges(BlockDriver& src, qcow2::Image* q) {
    if (!q || !q->zoned()) return std::vector<Range>{{0, src.size()}};
    const auto& g = *q->zoned();
    std::vector<Range> out;
    std::vector<uint64_t> words(g.nr_zones);
    QZNS_TRY(q->ReadZoneWords(0, g.nr_zones, words.data()));
    for (uint32_t z = 0; z < g.nr_zones; z++) {
        uint64_t start = uint64_t{z} * g.zone_size;
        ZoneWord w{words[z]};
        uint64_t end = w.type() == ZoneType::kConventional ? start + g.zone_size : w.wp() * 512;
        if (w.state() == ZoneState::kOffline) end = start;
        if (end > start) out.push_back({start, end});
    }
    return out;
}

}  // namespace

int CmdConvert(Args& a) {
    std::string src_fmt, dst_fmt = "raw", opts_str;
    bool progress = false, quiet = false;
    while (true) {
        auto n = a.Next({"f", "O", "o"});
        if (!n.ok()) return Fail(n.status());
        if (n->empty()) break;
        if (*n == "f") src_fmt = a.value();
        else if (*n == "O") dst_fmt = a.value();
        else if (*n == "o") opts_str += (opts_str.empty() ? "" : ",") + a.value();
        else if (*n == "p") progress = true;
        else if (*n == "q") quiet = true;
        else if (*n == "c") return Fail("convert: writing compressed clusters (-c) is not supported");
        else return Fail("convert: unknown option '" + *n + "'");
    }
    if (a.positional().size() != 2) return Fail("convert: expecting SRC and DST file names");
    const std::string& src_path = a.positional()[0];
    const std::string& dst_path = a.positional()[1];
    if (dst_fmt != "qcow2" && dst_fmt != "raw") return Fail("Unknown output format '" + dst_fmt + "'");

    auto src = OpenForTool(src_path, src_fmt, false);
    if (!src.ok()) return Fail(src.status());
    BlockDriver& s = *src->drv;
    qcow2::Image* sq = src->qcow2;
    bool zoned = sq && sq->zoned() && sq->info().zoned_problem.empty();

    auto parsed = OptionSet::Parse(opts_str);
    if (!parsed.ok()) return Fail(parsed.status());
    OptionSet o = std::move(parsed).value();
    if (dst_fmt == "qcow2") {
        qcow2::CreateOptions co;
        co.size = s.size();
        auto cs = o.TakeSize("cluster_size", sq ? sq->cluster_size() : 65536);
        if (!cs.ok()) return Fail(cs.status());
        co.cluster_size = static_cast<uint32_t>(*cs);
        auto rb = o.TakeUint("refcount_bits", 16);
        if (!rb.ok()) return Fail(rb.status());
        co.refcount_bits = static_cast<uint32_t>(std::min<uint64_t>(*rb, 1000));
        Status st = o.RejectUnknown("convert (qcow2 output takes cluster_size and refcount_bits)");
        if (!st.ok()) return Fail(st);
        if (zoned) co.zoned = *sq->zoned();
        FileOpenFlags ff;
        ff.write = ff.create = true;
        auto f = OpenPosixFile(dst_path, ff);
        if (!f.ok()) return Fail(f.status());
        st = qcow2::Create(std::move(f).value(), co);
        if (!st.ok()) return Fail(st.Prefix(dst_path));
    } else {
        Status st = o.RejectUnknown("convert (raw output takes no options)");
        if (!st.ok()) return Fail(st);
        FileOpenFlags ff;
        ff.write = ff.create = true;
        auto f = OpenPosixFile(dst_path, ff);
        if (!f.ok()) return Fail(f.status());
        st = (*f)->Truncate(s.size());
        if (!st.ok()) return Fail(st);
    }
    auto dst = OpenForTool(dst_path, dst_fmt, true);
    if (!dst.ok()) return Fail(dst.status());
    BlockDriver& d = *dst->drv;

    auto ranges = ReadableRanges(s, sq);
    if (!ranges.ok()) return Fail(ranges.status());
    if (zoned && dst->qcow2) {
        // Each sequential zone with data gets its linear extent before the copy fills it, so a
        // converted image has the layout qzns writes (whatever layout the source had).
        const auto& g = *sq->zoned();
        for (const Range& r : *ranges) {
            uint32_t z = static_cast<uint32_t>(r.start / g.zone_size);
            if (z < g.nr_conv_zones) continue;
            auto e = dst->qcow2->MapZone(z, true);
            if (!e.ok()) return Fail(e.status().Prefix("allocating zone " + std::to_string(z)));
        }
    }
    uint64_t total = 0, done = 0;
    for (const Range& r : *ranges) total += r.end - r.start;
    std::vector<uint8_t> buf(kChunk);
    uint64_t granule = dst->qcow2 ? dst->qcow2->cluster_size() : 4096;
    auto show = [&] {
        if (progress && !quiet) {
            printf("    (%.2f/100%%)\r", total ? 100.0 * done / total : 100.0);
            fflush(stdout);
        }
    };
    show();
    for (const Range& r : *ranges) {
        for (uint64_t off = r.start; off < r.end;) {
            auto bs = s.GetStatus(off, std::min(r.end - off, kChunk));
            if (!bs.ok()) return Fail(bs.status());
            uint64_t n = std::min(bs->bytes, kChunk);
            if (!bs->zero) {
                Status st = s.Read(off, buf.data(), n);
                if (!st.ok()) return Fail(st);
                // Keep the destination sparse where the data happens to be zeros: like qemu-img
                // convert's -S, look at granules (the destination's clusters) and write only the
                // runs that hold non-zero bytes.
                for (uint64_t g = 0; g < n;) {
                    auto is_zero = [&](uint64_t at) {
                        uint64_t len = std::min(granule - (off + at) % granule, n - at);
                        const uint8_t* p = buf.data() + at;
                        bool z = p[0] == 0 && (len == 1 || std::memcmp(p, p + 1, len - 1) == 0);
                        return std::make_pair(z, len);
                    };
                    auto [zero, len] = is_zero(g);
                    if (zero) {
                        g += len;
                        continue;
                    }
                    uint64_t end = g + len;
                    while (end < n) {
                        auto [z2, l2] = is_zero(end);
                        if (z2) break;
                        end += l2;
                    }
                    st = d.Write(off + g, buf.data() + g, end - g);
                    if (!st.ok()) return Fail(st);
                    g = end;
                }
            }
            off += n;
            done += n;
            show();
        }
    }
    if (zoned && dst->qcow2) {
        const auto& g = *sq->zoned();
        std::vector<uint64_t> words(g.nr_zones);
        Status st = sq->ReadZoneWords(0, g.nr_zones, words.data());
        if (st.ok()) {
            // An open zone cannot stay open across a copy: it arrives Closed, as after a restart.
            for (auto& w : words) {
                ZoneWord z{w};
                if (z.state() == ZoneState::kImplicitOpen || z.state() == ZoneState::kExplicitOpen)
                    w = ZoneWord::Make(ZoneState::kClosed, z.type(), z.attrs(), z.wp()).raw;
            }
            st = dst->qcow2->WriteZoneWords(0, g.nr_zones, words.data());
        }
        if (st.ok() && g.zd_extension_size) {
            std::vector<uint8_t> zd(g.zd_extension_size);
            for (uint32_t z = 0; z < g.nr_zones && st.ok(); z++) {
                st = sq->ReadZded(z, zd.data());
                if (st.ok()) st = dst->qcow2->WriteZded(z, zd.data());
            }
        }
        if (!st.ok()) return Fail(st.Prefix("copying zone metadata"));
    }
    Status st = d.Close();
    if (!st.ok()) return Fail(st);
    if (progress && !quiet) printf("    (100.00/100%%)\n");
    return 0;
}

}  // namespace qzns::img
