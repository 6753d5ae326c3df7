// qzns-bench-scale: how opening a zoned image scales with its number of zones (bench row 5).
//   qzns-bench-scale open IMAGE    open for writing, report all zones, close; prints JSON with
//                                  open/report/close times and the RSS the open added
//   qzns-bench-scale dirty IMAGE   open, write one block into up to 4096 zones, flush and _exit
//                                  without closing, so the next open runs crash recovery
// Built by `make bench` against build/block/libqzns-block.a; not part of the product.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "block/block-backend.h"

namespace {

double Now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Resident set size in bytes (/proc/self/statm, second field).
long Rss() {
    std::ifstream f("/proc/self/statm");
    long size = 0, resident = 0;
    f >> size >> resident;
    return resident * sysconf(_SC_PAGESIZE);
}

int Die(const std::string& what, const qzns::Status& st) {
    fprintf(stderr, "qzns-bench-scale: %s: %s\n", what.c_str(), st.message().c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: qzns-bench-scale open|dirty IMAGE\n");
        return 2;
    }
    std::string mode = argv[1];
    qzns::BlockBackendOptions o;
    o.filename = argv[2];
    o.format = "qcow2";

    long rss0 = Rss();
    double t0 = Now();
    auto be = qzns::BlockBackend::Open(o);
    double t1 = Now();
    if (!be.ok()) return Die("open", be.status());
    long rss1 = Rss();
    qzns::BlockBackend& b = **be;
    uint32_t n = b.nr_zones();

    if (mode == "dirty") {
        std::vector<uint8_t> buf(4096, 0x5a);
        uint32_t stride = n > 4096 ? n / 4096 : 1;
        for (uint32_t z = b.nr_conv_zones(); z < n; z += stride) {
            qzns::BlkResult r = b.Write(uint64_t{z} * b.zone_size(), buf.data(), buf.size(), false);
            if (!r.ok()) return Die("write", r.status);
        }
        qzns::BlkResult r = b.Flush();
        if (!r.ok()) return Die("flush", r.status);
        fflush(stdout);
        _exit(0);  // no Close: the image stays marked in use, like after a crash
    }

    double t2 = Now();
    auto zones = b.ReportZones(0, n);
    double t3 = Now();
    if (!zones.ok()) return Die("report zones", zones.status());
    size_t reported = zones->size();
    zones->clear();
    zones->shrink_to_fit();
    double t4 = Now();
    qzns::Status st = b.Close();
    double t5 = Now();
    if (!st.ok()) return Die("close", st);
    printf("{\"zones\": %u, \"open_ms\": %.3f, \"rss_open_bytes\": %ld, \"report_ms\": %.3f, "
           "\"reported\": %zu, \"close_ms\": %.3f, \"zded_bytes\": %u}\n",
           n, (t1 - t0) * 1e3, rss1 - rss0, (t3 - t2) * 1e3, reported, (t5 - t4) * 1e3, b.zd_extension_size());
    return 0;
}
