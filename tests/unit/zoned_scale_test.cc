// A zoned image with 1,048,576 zones (64 GiB of 64 KiB zones, 64 KiB clusters): created, opened
// and reported through the block backend, then reopened after an unclean exit. Prints the times;
// asserts only that everything completes and is right.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"

namespace qzns {
namespace {

constexpr uint64_t kZone = 64 * 1024;
constexpr uint32_t kNrZones = 1u << 20;

double Since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(ZonedScale, MillionZonesOpenAndReport) {
    char tmpl[] = "/tmp/qzns-1m-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string dir = tmpl, path = dir + "/1m.qcow2";

    auto t0 = std::chrono::steady_clock::now();
    {
        auto f = OpenPosixFile(path, {.write = true, .create = true, .lock = false});
        ASSERT_TRUE(f.ok()) << f.status().message();
        qcow2::CreateOptions co;
        co.size = uint64_t{kNrZones} * kZone;
        co.cluster_size = 65536;
        qcow2::ZonedGeometry g;
        g.zone_size = kZone;
        g.max_open_zones = 128;
        g.max_active_zones = 256;
        co.zoned = g;
        Status st = qcow2::Create(std::move(*f), co);
        ASSERT_TRUE(st.ok()) << st.message();
    }
    double create_s = Since(t0);

    BlockBackendOptions o;
    o.filename = path;
    o.lock = false;
    // The first session runs on a fault-injecting wrapper of the file so it can die uncleanly.
    t0 = std::chrono::steady_clock::now();
    auto pf = OpenPosixFile(path, {.write = true, .lock = false});
    ASSERT_TRUE(pf.ok()) << pf.status().message();
    auto ff = NewFaultFile(std::move(*pf));
    auto img = qcow2::Image::Open(BorrowFile(ff.get()), {.write = true}, nullptr);
    ASSERT_TRUE(img.ok()) << img.status().message();
    auto b = BlockBackend::OpenDriver(std::move(*img));
    ASSERT_TRUE(b.ok()) << b.status().message();
    double open_s = Since(t0);
    ASSERT_EQ((*b)->nr_zones(), kNrZones);
    t0 = std::chrono::steady_clock::now();
    auto rep = (*b)->ReportZones(0, kNrZones);
    double report_s = Since(t0);
    ASSERT_TRUE(rep.ok());
    ASSERT_EQ(rep->size(), size_t{kNrZones});
    EXPECT_EQ(rep->back().start, uint64_t{kNrZones - 1} * kZone);
    EXPECT_EQ(rep->back().state, ZoneState::kEmpty);

    // Some zone activity spread over the disk, then an exit without Close (the image stays
    // marked in use): the next open recovers every zone.
    std::vector<uint8_t> buf(4096, 0x3c);
    for (uint32_t z = 0; z < kNrZones; z += kNrZones / 64) {
        BlkResult r = (*b)->Write(uint64_t{z} * kZone, buf.data(), buf.size(), false);
        ASSERT_TRUE(r.ok()) << r.message();
    }
    ASSERT_TRUE((*b)->ZoneMgmt(ZoneMgmtOp::kFinish, uint64_t{kNrZones - 1} * kZone, false).ok());
    ASSERT_TRUE((*b)->Flush().ok());
    ASSERT_TRUE(ff->SimulateCrash(CrashMode::kDropUnsynced, 1).ok());  // power off: no clean close
    b->reset();

    t0 = std::chrono::steady_clock::now();
    auto b2 = BlockBackend::Open(o);
    ASSERT_TRUE(b2.ok()) << b2.status().message();
    double unclean_open_s = Since(t0);
    auto rep2 = (*b2)->ReportZones(0, kNrZones);
    ASSERT_TRUE(rep2.ok());
    uint32_t closed = 0;
    for (const ZoneInfo& zi : *rep2) closed += zi.state == ZoneState::kClosed;
    EXPECT_EQ(closed, 64u);
    EXPECT_EQ(rep2->back().state, ZoneState::kFull);
    t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE((*b2)->Close().ok());
    double close_s = Since(t0);

    printf("[1M zones] create %.3f s, open %.3f s, report of %u zones %.3f s (open+report %.3f s), "
           "unclean reopen %.3f s, close %.3f s\n",
           create_s, open_s, kNrZones, report_s, open_s + report_s, unclean_open_s, close_s);
    unlink(path.c_str());
    rmdir(dir.c_str());
}

}  // namespace
}  // namespace qzns
