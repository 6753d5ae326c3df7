// qzns-img map: where each run of guest data lives, in qemu-img map's two output forms.
#include "tools/img/img-common.h"
#include "util/json.h"

namespace qzns::img {

int CmdMap(Args& a) {
    std::string fmt;
    OutputFormat out = OutputFormat::kHuman;
    while (true) {
        auto n = a.Next({"f", "output"});
        if (!n.ok()) return Fail(n.status());
        if (n->empty()) break;
        if (*n == "f") fmt = a.value();
        else if (*n == "output") {
            auto o = ParseOutputFormat(a.value());
            if (!o.ok()) return Fail(o.status());
            out = *o;
        } else if (*n == "U") {
        } else return Fail("map: unknown option '" + *n + "'");
    }
    if (a.positional().size() != 1) return Fail("Expecting one image file name");
    const std::string& path = a.positional()[0];
    auto oi = OpenForTool(path, fmt, false);
    if (!oi.ok()) return Fail(oi.status());
    BlockDriver& drv = *oi->drv;

    struct Run {
        uint64_t start, length;
        BlockStatus bs;
    };
    std::vector<Run> runs;
    for (uint64_t off = 0; off < drv.size();) {
        auto bs = drv.GetStatus(off, drv.size() - off);
        if (!bs.ok()) return Fail(bs.status());
        Run r{off, bs->bytes, *bs};
        // Merge with the previous run when nothing but the length differs.
        if (!runs.empty()) {
            Run& p = runs.back();
            bool same = p.bs.allocated == r.bs.allocated && p.bs.zero == r.bs.zero && p.bs.data == r.bs.data &&
                        p.bs.compressed == r.bs.compressed &&
                        (!r.bs.data || r.bs.compressed || p.bs.host_offset + p.length == r.bs.host_offset);
            if (same) {
                p.length += r.length;
                off += bs->bytes;
                continue;
            }
        }
        runs.push_back(r);
        off += bs->bytes;
    }
    if (out == OutputFormat::kJson) {
        printf("[");
        for (size_t i = 0; i < runs.size(); i++) {
            const Run& r = runs[i];
            Json j = Json::MakeObject();
            j.Set("start", r.start)
                .Set("length", r.length)
                .Set("depth", r.bs.allocated ? 0 : 1)
                .Set("present", r.bs.allocated || r.bs.data)
                .Set("zero", r.bs.zero)
                .Set("data", r.bs.data)
                .Set("compressed", r.bs.compressed);
            if (r.bs.data && !r.bs.compressed) j.Set("offset", r.bs.host_offset);
            printf("%s%s", i ? ",\n" : "", j.Dump(-1).c_str());
        }
        printf("]\n");
    } else {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
        for (const Run& r : runs) {
            if (!r.bs.data || r.bs.compressed || !r.bs.allocated) continue;
            printf("%#-16llx%#-16llx%#-16llx%s\n", static_cast<unsigned long long>(r.start),
                   static_cast<unsigned long long>(r.length), static_cast<unsigned long long>(r.bs.host_offset),
                   path.c_str());
        }
    }
    return 0;
}

}  // namespace qzns::img
