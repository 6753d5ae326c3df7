// qzns-img zone report: every zone's start, length, capacity, write pointer, state and
// attributes, in blkzone report's shape (or JSON).
#include "tools/img/img-common.h"
#include "block/zoned/zone-names.h"
#include "util/json.h"

namespace qzns::img {

int CmdZone(Args& a) {
    OutputFormat out = OutputFormat::kHuman;
    std::string fmt;
    while (true) {
        auto n = a.Next({"output", "f"});
        if (!n.ok()) return Fail(n.status());
        if (n->empty()) break;
        if (*n == "output") {
            auto o = ParseOutputFormat(a.value());
            if (!o.ok()) return Fail(o.status());
            out = *o;
        } else if (*n == "f") fmt = a.value();
        else if (*n == "U") {
        } else return Fail("zone: unknown option '" + *n + "'");
    }
    const auto& pos = a.positional();
    if (pos.size() != 2 || pos[0] != "report") return Fail("usage: zone report [--output=human|json] FILE");
    auto oi = OpenForTool(pos[1], fmt, false);
    if (!oi.ok()) return Fail(oi.status());
    if (!oi->qcow2 || !oi->qcow2->zoned()) return Fail("'" + pos[1] + "' is not a zoned image");
    qcow2::Image& img = *oi->qcow2;
    const auto& g = *img.zoned();
    std::vector<uint64_t> words(g.nr_zones);
    Status st = img.ReadZoneWords(0, g.nr_zones, words.data());
    if (!st.ok()) return Fail(st);
    uint64_t zs = g.zone_size / 512, cap = g.zone_capacity / 512;
    Json arr = Json::MakeArray();
    for (uint32_t z = 0; z < g.nr_zones; z++) {
        ZoneWord w{words[z]};
        uint64_t start = uint64_t{z} * zs;
        bool conv = w.type() == ZoneType::kConventional;
        uint64_t wp_rel = conv ? 0 : w.wp() - start;
        if (out == OutputFormat::kJson) {
            Json j = Json::MakeObject();
            j.Set("zone", z)
                .Set("start", start)
                .Set("len", zs)
                .Set("cap", conv ? zs : cap)
                .Set("wptr", wp_rel)
                .Set("state", ZoneStateLabel(w.state()))
                .Set("type", conv ? "conventional" : "seq-write-required")
                .Set("attrs", w.attrs());
            arr.Push(std::move(j));
        } else {
            printf("  start: 0x%09llx, len 0x%06llx, cap 0x%06llx, wptr 0x%06llx zcond:%2u(%s) [type: %u(%s)]\n",
                   static_cast<unsigned long long>(start), static_cast<unsigned long long>(zs),
                   static_cast<unsigned long long>(conv ? zs : cap), static_cast<unsigned long long>(wp_rel),
                   w.state_bits(), ZoneStateAbbrev(w.state()), conv ? 1u : 2u,
                   conv ? "CONVENTIONAL" : "SEQ_WRITE_REQUIRED");
        }
    }
    if (out == OutputFormat::kJson) printf("%s\n", arr.Dump(4).c_str());
    return 0;
}

}  // namespace qzns::img
