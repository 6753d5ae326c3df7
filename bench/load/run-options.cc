#include "bench/load/run-options.h"

#include <cstdio>
#include <cstdlib>

namespace qzns::load {

namespace {

enum : int {
    kQd = kRunOptionFirst, kBs, kRuntime, kRw, kZpq, kReadPct, kAppendPct, kAppendsPerZone, kReportMs, kNsid, kSeed,
    kJson,
};

}  // namespace

const char kRunOptionsUsage[] =
    "  --qd N               commands in flight per queue (default 32)\n"
    "  --bs BYTES           bytes per write/append/read (default 4096)\n"
    "  --runtime SECONDS    how long to run (default 10)\n"
    "  --rw MODE            mixed (default: the verified zoned mix), or randread, randwrite,\n"
    "                       seqwrite over a namespace without zones (not verified)\n"
    "  --zones-per-queue N  zones each queue owns (default: all zones / queues)\n"
    "  --read-pct N         share of random reads of acknowledged data (default 30)\n"
    "  --append-pct N       share of zones filled with Zone Append (default 50)\n"
    "  --appends-per-zone N appends in flight per zone (default 8)\n"
    "  --report-ms N        Report Zones period per queue (default 500)\n"
    "  --nsid N             namespace (default 1)\n"
    "  --seed N             random seed (default 1)\n"
    "  --json FILE          write the summary there too\n";

void AddRunOptions(std::vector<option>* t) {
    t->insert(t->end(), {{"qd", required_argument, nullptr, kQd},
                         {"bs", required_argument, nullptr, kBs},
                         {"runtime", required_argument, nullptr, kRuntime},
                         {"rw", required_argument, nullptr, kRw},
                         {"zones-per-queue", required_argument, nullptr, kZpq},
                         {"read-pct", required_argument, nullptr, kReadPct},
                         {"append-pct", required_argument, nullptr, kAppendPct},
                         {"appends-per-zone", required_argument, nullptr, kAppendsPerZone},
                         {"report-ms", required_argument, nullptr, kReportMs},
                         {"nsid", required_argument, nullptr, kNsid},
                         {"seed", required_argument, nullptr, kSeed},
                         {"json", required_argument, nullptr, kJson}});
}

int ParseRunOption(int c, const char* arg, RunOptions* o) {
    const unsigned long v = arg ? std::strtoul(arg, nullptr, 0) : 0;
    const uint32_t v32 = static_cast<uint32_t>(v);
    switch (c) {
        case kQd: o->w.qd = v32; return 1;
        case kBs: o->w.bs = v32; return 1;
        case kRuntime: o->runtime = std::strtod(arg, nullptr); return 1;
        case kRw:
            if (ParseRw(arg, &o->w.rw)) return 1;
            fprintf(stderr, "bad --rw '%s'\n", arg);
            return -1;
        case kZpq: o->zones_per_queue = v32; return 1;
        case kReadPct: o->w.read_pct = v32; return 1;
        case kAppendPct: o->w.append_pct = v32; return 1;
        case kAppendsPerZone: o->w.appends_per_zone = v32; return 1;
        case kReportMs: o->w.report_ms = v32; return 1;
        case kNsid: o->nsid = v32; return 1;
        case kSeed: o->seed = v; return 1;
        case kJson: o->json_path = arg; return 1;
        default: return 0;
    }
}

}  // namespace qzns::load
