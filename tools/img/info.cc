// qzns-img info: what qemu-img info shows, plus the zoned geometry and a zone-state summary.
#include <map>

#include "tools/img/img-common.h"
#include "block/zoned/zone-names.h"
#include "util/json.h"
#include "util/size.h"

namespace qzns::img {
namespace {

Result<std::map<ZoneState, uint64_t>> CountZoneStates(qcow2::Image& img) {
    std::map<ZoneState, uint64_t> counts;
    const auto& g = *img.zoned();
    std::vector<uint64_t> words(std::min<uint64_t>(g.nr_zones, 65536));
    for (uint32_t first = 0; first < g.nr_zones;) {
        uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(words.size(), g.nr_zones - first));
        QZNS_TRY(img.ReadZoneWords(first, n, words.data()));
        for (uint32_t i = 0; i < n; i++) counts[ZoneWord{words[i]}.state()]++;
        first += n;
    }
    return counts;
}

std::string Limit(uint32_t v) { return v ? std::to_string(v) : std::string("0 (no limit)"); }

}  // namespace

int CmdInfo(Args& a) {
    std::string fmt;
    OutputFormat out = OutputFormat::kHuman;
    bool force_share = false;
    while (true) {
        auto n = a.Next({"f", "output"});
        if (!n.ok()) return Fail(n.status());
        if (n->empty()) break;
        if (*n == "f") fmt = a.value();
        else if (*n == "output") {
            auto o = ParseOutputFormat(a.value());
            if (!o.ok()) return Fail(o.status());
            out = *o;
        } else if (*n == "U" || *n == "force-share") force_share = true;
        else return Fail("info: unknown option '" + *n + "'");
    }
    if (a.positional().size() != 1) return Fail("Expecting one image file name");
    const std::string& path = a.positional()[0];
    auto oi = OpenForTool(path, fmt, false, force_share);
    if (!oi.ok()) return Fail(oi.status());
    BlockDriver& drv = *oi->drv;
    // The file's own footprint on the host.
    FileOpenFlags ff;
    ff.lock = false;
    uint64_t actual = 0;
    if (auto f = OpenPosixFile(path, ff); f.ok()) {
        if (auto b = (*f)->AllocatedBytes(); b.ok()) actual = *b;
    }

    Json j = Json::MakeObject();
    j.Set("virtual-size", drv.size());
    j.Set("filename", path);
    std::string human = "image: " + path + "\nfile format: " + drv.format_name() + "\nvirtual size: " +
                        FormatSize(drv.size()) + " (" + std::to_string(drv.size()) + " bytes)\ndisk size: " +
                        FormatSize(actual) + "\n";
    j.Set("format", drv.format_name());
    j.Set("actual-size", actual);
    if (oi->qcow2) {
        qcow2::Image& img = *oi->qcow2;
        const auto& in = img.info();
        j.Set("cluster-size", in.cluster_size);
        human += "cluster_size: " + std::to_string(in.cluster_size) + "\n";
        if (!in.backing_file.empty()) {
            j.Set("backing-filename", in.backing_file);
            human += "backing file: " + in.backing_file + "\n";
            if (!in.backing_format.empty()) {
                j.Set("backing-filename-format", in.backing_format);
                human += "backing file format: " + in.backing_format + "\n";
            }
        }
        if (!in.snapshots.empty()) {
            human += "Snapshot list:\nID        TAG               VM SIZE\n";
            Json snaps = Json::MakeArray();
            for (const auto& s : in.snapshots) {
                Json sj = Json::MakeObject();
                sj.Set("id", s.id).Set("name", s.name).Set("vm-state-size", s.vm_state_size);
                snaps.Push(std::move(sj));
                char line[128];
                snprintf(line, sizeof(line), "%-9s %-17s %s\n", s.id.c_str(), s.name.c_str(),
                         FormatSize(s.vm_state_size).c_str());
                human += line;
            }
            j.Set("snapshots", std::move(snaps));
        }
        Json data = Json::MakeObject();
        data.Set("compat", in.version == 3 ? "1.1" : "0.10");
        data.Set("compression-type", "zlib");
        data.Set("lazy-refcounts", (in.compatible_features & qcow2::kCompatLazyRefcounts) != 0);
        data.Set("refcount-bits", in.refcount_bits);
        data.Set("corrupt", in.corrupt);
        data.Set("extended-l2", false);
        Json fs = Json::MakeObject();
        fs.Set("type", "qcow2").Set("data", std::move(data));
        j.Set("format-specific", std::move(fs));
        human += "Format specific information:\n    compat: " + std::string(in.version == 3 ? "1.1" : "0.10") +
                 "\n    compression type: zlib\n    lazy refcounts: " +
                 ((in.compatible_features & qcow2::kCompatLazyRefcounts) ? "true" : "false") +
                 "\n    refcount bits: " + std::to_string(in.refcount_bits) +
                 "\n    corrupt: " + (in.corrupt ? "true" : "false") + "\n    extended l2: false\n";
        j.Set("dirty-flag", in.dirty);
        if (in.zoned) {
            const auto& g = *in.zoned;
            const char* prof = g.profile == qcow2::ZonedProfile::kZns ? "zns" : "zbc";
            Json z = Json::MakeObject();
            z.Set("profile", prof)
                .Set("zone-size", g.zone_size)
                .Set("zone-capacity", g.zone_capacity)
                .Set("nr-zones", g.nr_zones)
                .Set("nr-conventional-zones", g.nr_conv_zones)
                .Set("max-open-zones", g.max_open_zones)
                .Set("max-active-zones", g.max_active_zones)
                .Set("max-append-bytes", g.max_append_bytes)
                .Set("zd-extension-size", g.zd_extension_size)
                .Set("clean", !in.zoned_in_use)
                .Set("layout", in.seed_layout ? "seed-series" : "qzns-v1");
            human += "Zoned information:\n    profile: " + std::string(prof) +
                     "\n    zone size: " + FormatSize(g.zone_size) + "\n    zone capacity: " + FormatSize(g.zone_capacity) +
                     "\n    nr zones: " + std::to_string(g.nr_zones) +
                     "\n    conventional zones: " + std::to_string(g.nr_conv_zones) +
                     "\n    max open zones: " + Limit(g.max_open_zones) +
                     "\n    max active zones: " + Limit(g.max_active_zones) +
                     "\n    max append: " + std::to_string(g.max_append_bytes / 512) + " sectors" +
                     "\n    zone descriptor extension: " + std::to_string(g.zd_extension_size) + " bytes" +
                     "\n    clean shutdown: " + (in.zoned_in_use ? "no" : "yes") + "\n";
            if (in.seed_layout) human += "    layout: seed series (read only)\n";
            if (!in.zoned_problem.empty()) {
                z.Set("problem", in.zoned_problem);
                human += "    problem: " + in.zoned_problem + "\n";
            } else {
                auto counts = CountZoneStates(img);
                if (!counts.ok()) return Fail(counts.status());
                Json st = Json::MakeObject();
                human += "    zone states:";
                for (ZoneState s : kAllZoneStates) {
                    uint64_t c = counts->count(s) ? counts->at(s) : 0;
                    st.Set(ZoneStateLabel(s), c);
                    if (c) human += std::string(" ") + ZoneStateLabel(s) + " " + std::to_string(c);
                }
                human += "\n";
                z.Set("zone-states", std::move(st));
            }
            j.Set("zoned", std::move(z));
        }
    }
    if (out == OutputFormat::kJson) printf("%s\n", j.Dump(4).c_str());
    else printf("%s", human.c_str());
    return 0;
}

}  // namespace qzns::img
