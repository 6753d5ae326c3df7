// The zoned block layer through its public API (BlockBackend) on real qcow2 images: every
// state x action pair with the spec's status, write/append/read boundaries, open/active zone
// accounting, reset/finish storage effects, ZDED and fault injection across reopen, and
// concurrent appends and writers.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "util/mutex.h"

namespace qzns {
namespace {

using S = ZoneState;
using E = ZoneError;

constexpr uint64_t kK = 1024;
constexpr uint64_t kZone = 64 * kK;  // zone size
constexpr uint64_t kCap = 48 * kK;   // zone capacity (< size)
constexpr uint32_t kConv = 2;        // conventional zones at the start
constexpr uint32_t kZones = 16;

qcow2::ZonedGeometry ZnsGeo(uint32_t max_open = 0, uint32_t max_active = 0) {
    qcow2::ZonedGeometry g;
    g.profile = qcow2::ZonedProfile::kZns;
    g.zone_size = kZone;
    g.zone_capacity = kCap;
    g.nr_conv_zones = kConv;
    g.max_open_zones = max_open;
    g.max_active_zones = max_active;
    g.max_append_bytes = 16 * kK;
    g.zd_extension_size = 64;
    return g;
}

// An image on a fault-injecting in-memory file, so a test can look at what is durable.
class Disk {
public:
    explicit Disk(const qcow2::ZonedGeometry& g, uint64_t size = kZones * kZone, uint32_t cluster = 4096)
        : ff_(NewFaultFile(NewMemFile())) {
        qcow2::CreateOptions co;
        co.size = size;
        co.cluster_size = cluster;
        co.zoned = g;
        Status st = qcow2::Create(BorrowFile(ff_.get()), co);
        EXPECT_TRUE(st.ok()) << st.message();
        EXPECT_TRUE(ff_->Sync().ok());
    }

    std::unique_ptr<BlockBackend> Open() { return OpenFile(BorrowFile(ff_.get())); }

    // Opens a copy of what a power cut right now would leave.
    std::unique_ptr<BlockBackend> OpenDurableCopy() {
        auto copy = ff_->CloneDurable();
        EXPECT_TRUE(copy.ok());
        copies_.push_back(std::move(*copy));
        return OpenFile(BorrowFile(copies_.back().get()));
    }

    static std::unique_ptr<BlockBackend> OpenFile(std::unique_ptr<File> f) {
        auto img = qcow2::Image::Open(std::move(f), {.write = true}, nullptr);
        EXPECT_TRUE(img.ok()) << img.status().message();
        if (!img.ok()) return nullptr;
        auto be = BlockBackend::OpenDriver(std::move(*img));
        EXPECT_TRUE(be.ok()) << be.status().message();
        return be.ok() ? std::move(*be) : nullptr;
    }

    FaultFile& file() { return *ff_; }

private:
    std::unique_ptr<FaultFile> ff_;
    std::vector<std::unique_ptr<File>> copies_;
};

uint64_t ZoneStart(uint32_t z) { return uint64_t{z} * kZone; }

ZoneInfo Zone(BlockBackend& b, uint32_t z) {
    auto zi = b.GetZone(z);
    EXPECT_TRUE(zi.ok()) << zi.status().message();
    return zi.ok() ? *zi : ZoneInfo{};
}

std::vector<uint8_t> Pattern(uint64_t len, uint8_t seed) {
    std::vector<uint8_t> v(len);
    for (uint64_t i = 0; i < len; i++) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
    return v;
}

std::vector<uint8_t> ReadBytes(BlockBackend& b, uint64_t off, uint64_t len) {
    std::vector<uint8_t> v(len, 0xee);
    BlkResult r = b.Read(off, v.data(), len);
    EXPECT_TRUE(r.ok()) << r.message();
    return v;
}

BlkResult WriteP(BlockBackend& b, uint64_t off, uint64_t len, uint8_t seed = 1, bool fua = false) {
    auto p = Pattern(len, seed);
    return b.Write(off, p.data(), len, fua);
}

BlkResult AppendP(BlockBackend& b, uint32_t z, uint64_t len, uint8_t seed = 1) {
    auto p = Pattern(len, seed);
    return b.Append(ZoneStart(z), p.data(), len, false);
}

#define EXPECT_OK(expr)                                      \
    do {                                                     \
        BlkResult r_ = (expr);                               \
        EXPECT_TRUE(r_.ok()) << #expr << ": " << r_.message(); \
    } while (0)
#define ASSERT_OK(expr)                                      \
    do {                                                     \
        BlkResult r_ = (expr);                               \
        ASSERT_TRUE(r_.ok()) << #expr << ": " << r_.message(); \
    } while (0)
#define EXPECT_ZONE_ERR(expr, err)                                                    \
    do {                                                                              \
        BlkResult r_ = (expr);                                                        \
        EXPECT_EQ(r_.zone_error, (err)) << #expr << ": " << ZoneErrorName(r_.zone_error); \
    } while (0)

// ---------------------------------------------------------------------------------------------
// Every (state, action) pair, each state built by real operations.

enum class Build { kEmpty, kImplicitOpen, kExplicitOpen, kExplicitOpenNoData, kClosed, kFull, kReadOnly, kOffline };
enum class Act { kWrite, kAppend, kOpen, kClose, kFinish, kReset, kOffline, kSetZde };

const char* BuildName(Build b) {
    static const char* n[] = {"Empty", "ImplicitOpen", "ExplicitOpen", "ExplicitOpen(no data)",
                              "Closed", "Full", "ReadOnly", "Offline"};
    return n[static_cast<int>(b)];
}
const char* ActName(Act a) {
    static const char* n[] = {"Write", "Append", "Open", "Close", "Finish", "Reset", "Offline", "SetZde"};
    return n[static_cast<int>(a)];
}

void BuildState(BlockBackend& b, uint32_t z, Build s) {
    uint64_t zs = ZoneStart(z);
    switch (s) {
    case Build::kEmpty: break;
    case Build::kImplicitOpen: ASSERT_OK(WriteP(b, zs, 8 * kK)); break;
    case Build::kExplicitOpen:
        ASSERT_OK(b.ZoneMgmt(ZoneMgmtOp::kOpen, zs, false));
        ASSERT_OK(WriteP(b, zs, 8 * kK));
        break;
    case Build::kExplicitOpenNoData: ASSERT_OK(b.ZoneMgmt(ZoneMgmtOp::kOpen, zs, false)); break;
    case Build::kClosed:
        ASSERT_OK(WriteP(b, zs, 8 * kK));
        ASSERT_OK(b.ZoneMgmt(ZoneMgmtOp::kClose, zs, false));
        break;
    case Build::kFull: ASSERT_OK(WriteP(b, zs, kCap)); break;
    case Build::kReadOnly:
        ASSERT_OK(WriteP(b, zs, 8 * kK));
        ASSERT_OK(b.InjectZoneFault(z, S::kReadOnly));
        break;
    case Build::kOffline: ASSERT_OK(b.InjectZoneFault(z, S::kOffline)); break;
    }
}

BlkResult DoAct(BlockBackend& b, uint32_t z, Act a) {
    uint64_t zs = ZoneStart(z);
    switch (a) {
    case Act::kWrite: {
        auto zi = b.GetZone(z);
        return WriteP(b, zi.ok() ? zi->wp : zs, 4 * kK, 9);
    }
    case Act::kAppend: return AppendP(b, z, 4 * kK, 9);
    case Act::kOpen: return b.ZoneMgmt(ZoneMgmtOp::kOpen, zs, false);
    case Act::kClose: return b.ZoneMgmt(ZoneMgmtOp::kClose, zs, false);
    case Act::kFinish: return b.ZoneMgmt(ZoneMgmtOp::kFinish, zs, false);
    case Act::kReset: return b.ZoneMgmt(ZoneMgmtOp::kReset, zs, false);
    case Act::kOffline: return b.ZoneMgmt(ZoneMgmtOp::kOffline, zs, false);
    case Act::kSetZde: {
        std::vector<uint8_t> d(64, 0x5d);
        return b.SetZoneDescExt(zs, d.data());
    }
    }
    return BlkResult::Ok();
}

struct Expect {
    E err;
    S state;  // after the action (when err == kNone)
};

constexpr Expect Ok(S s) { return {E::kNone, s}; }
constexpr Expect Err(E e) { return {e, S::kEmpty}; }
constexpr Expect kX = {E::kInvalidZoneStateTransition, S::kEmpty};

// ZNS 1.1b §2.1 / §3.4.3, columns in Act order.
const std::map<Build, std::vector<Expect>> kZnsTable = {
    {Build::kEmpty, {Ok(S::kImplicitOpen), Ok(S::kImplicitOpen), Ok(S::kExplicitOpen), kX, Ok(S::kFull),
                     Ok(S::kEmpty), kX, Ok(S::kClosed)}},
    {Build::kImplicitOpen, {Ok(S::kImplicitOpen), Ok(S::kImplicitOpen), Ok(S::kExplicitOpen), Ok(S::kClosed),
                            Ok(S::kFull), Ok(S::kEmpty), kX, kX}},
    {Build::kExplicitOpen, {Ok(S::kExplicitOpen), Ok(S::kExplicitOpen), Ok(S::kExplicitOpen), Ok(S::kClosed),
                            Ok(S::kFull), Ok(S::kEmpty), kX, kX}},
    {Build::kExplicitOpenNoData, {Ok(S::kExplicitOpen), Ok(S::kExplicitOpen), Ok(S::kExplicitOpen),
                                  Ok(S::kClosed), Ok(S::kFull), Ok(S::kEmpty), kX, kX}},
    {Build::kClosed, {Ok(S::kImplicitOpen), Ok(S::kImplicitOpen), Ok(S::kExplicitOpen), Ok(S::kClosed),
                      Ok(S::kFull), Ok(S::kEmpty), kX, kX}},
    {Build::kFull, {Err(E::kZoneIsFull), Err(E::kZoneIsFull), kX, kX, Ok(S::kFull), Ok(S::kEmpty), kX, kX}},
    {Build::kReadOnly, {Err(E::kZoneIsReadOnly), Err(E::kZoneIsReadOnly), kX, kX, kX, kX, Ok(S::kOffline), kX}},
    {Build::kOffline, {Err(E::kZoneIsOffline), Err(E::kZoneIsOffline), kX, kX, kX, kX, Ok(S::kOffline), kX}},
};

// After a power cycle opened zones come back Closed (or Empty when nothing is in them).
S AfterPowerCycle(S s, const ZoneInfo& zi) {
    if (s != S::kImplicitOpen && s != S::kExplicitOpen) return s;
    return zi.wp == zi.start && !(zi.attrs & kZoneAttrZdev) ? S::kEmpty : S::kClosed;
}

TEST(ZonedBackend, EveryStateActionPairThroughTheBackend) {
    int pairs = 0;
    for (const auto& [build, row] : kZnsTable) {
        for (size_t ai = 0; ai < row.size(); ai++) {
            Act act = static_cast<Act>(ai);
            const Expect& want = row[ai];
            SCOPED_TRACE(std::string(BuildName(build)) + " x " + ActName(act));
            Disk d(ZnsGeo());
            auto b = d.Open();
            ASSERT_TRUE(b);
            constexpr uint32_t z = kConv + 3;
            BuildState(*b, z, build);
            ZoneInfo before = Zone(*b, z);
            BlkResult r = DoAct(*b, z, act);
            EXPECT_EQ(r.zone_error, want.err) << ZoneErrorName(r.zone_error) << " / " << r.message();
            ZoneInfo after = Zone(*b, z);
            if (want.err == E::kNone) {
                EXPECT_TRUE(r.ok()) << r.message();
                EXPECT_EQ(after.state, want.state) << ZoneStateName(after.state);
                if (want.state == S::kFull) {
                    EXPECT_EQ(after.wp, after.start + kCap);
                }
                if (want.state == S::kEmpty || want.state == S::kOffline) {
                    EXPECT_EQ(after.wp, after.start);
                }
                if (act == Act::kWrite || act == Act::kAppend) {
                    EXPECT_EQ(after.wp, before.wp + 4 * kK);
                }
                if (act == Act::kSetZde) {
                    EXPECT_TRUE(after.attrs & kZoneAttrZdev);
                }
                if (act == Act::kReset) {
                    EXPECT_EQ(after.attrs, 0);
                }
            } else {
                EXPECT_EQ(after.state, before.state) << "a refused action changed the zone";
                EXPECT_EQ(after.wp, before.wp);
            }
            // Management actions are durable when they complete.
            bool mgmt = act != Act::kWrite && act != Act::kAppend;
            if (mgmt && want.err == E::kNone) {
                auto c = d.OpenDurableCopy();
                ASSERT_TRUE(c);
                ZoneInfo dz = Zone(*c, z);
                EXPECT_EQ(dz.state, AfterPowerCycle(after.state, after)) << ZoneStateName(dz.state);
                EXPECT_EQ(dz.wp, after.wp);
                EXPECT_EQ(dz.attrs, after.attrs);
            }
            EXPECT_TRUE(b->Close().ok());
            pairs++;
        }
    }
    EXPECT_EQ(pairs, 8 * 8);
}

TEST(ZonedBackend, ConventionalZonesRefuseZoneActions) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    for (int a = 1; a < 8; a++) {  // all but write
        SCOPED_TRACE(ActName(static_cast<Act>(a)));
        EXPECT_ZONE_ERR(DoAct(*b, 0, static_cast<Act>(a)), E::kInvalidField);
    }
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ManagementNeedsAZoneStart) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    EXPECT_ZONE_ERR(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(kConv) + 4096, false), E::kInvalidField);
    EXPECT_ZONE_ERR(b->ZoneMgmt(ZoneMgmtOp::kReset, kZones * kZone, false), E::kLbaOutOfRange);
    auto p = Pattern(4096, 1);
    EXPECT_ZONE_ERR(b->Append(ZoneStart(kConv) + 512, p.data(), 4096, false), E::kInvalidField);
    EXPECT_ZONE_ERR(b->Append(kZones * kZone, p.data(), 4096, false), E::kLbaOutOfRange);
    ASSERT_TRUE(b->Close().ok());
}

// ---------------------------------------------------------------------------------------------
// Data path boundaries.

TEST(ZonedBackend, WriteMustStartAtTheWritePointer) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    uint32_t z = kConv;
    uint64_t zs = ZoneStart(z);
    EXPECT_ZONE_ERR(WriteP(*b, zs + 4096, 4096), E::kZoneInvalidWrite);  // above wp
    ASSERT_OK(WriteP(*b, zs, 8192, 3));                                 // at wp
    EXPECT_ZONE_ERR(WriteP(*b, zs, 4096), E::kZoneInvalidWrite);         // below wp
    EXPECT_ZONE_ERR(WriteP(*b, zs + 4096, 4096), E::kZoneInvalidWrite);  // below wp, overlapping
    EXPECT_ZONE_ERR(WriteP(*b, zs + 12288, 4096), E::kZoneInvalidWrite); // above wp
    ASSERT_OK(WriteP(*b, zs + 8192, 512, 4));                            // sector granularity
    EXPECT_EQ(Zone(*b, z).wp, zs + 8192 + 512);
    EXPECT_ZONE_ERR(b->Write(zs + 8704, "x", 1, false), E::kInvalidField);  // unaligned
    EXPECT_EQ(ReadBytes(*b, zs, 8192), Pattern(8192, 3));
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, WritesStopAtZoneCapacity) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    uint32_t z = kConv + 1;
    uint64_t zs = ZoneStart(z);
    ASSERT_OK(WriteP(*b, zs, kCap - 4096));
    // Crossing the capacity (still inside the zone's size).
    EXPECT_ZONE_ERR(WriteP(*b, zs + kCap - 4096, 8192), E::kZoneBoundaryError);
    // Crossing the zone end into the next zone.
    EXPECT_ZONE_ERR(WriteP(*b, zs + kCap - 4096, kZone), E::kZoneBoundaryError);
    EXPECT_EQ(Zone(*b, z).state, S::kImplicitOpen);
    ASSERT_OK(WriteP(*b, zs + kCap - 4096, 4096));  // exactly to capacity
    ZoneInfo zi = Zone(*b, z);
    EXPECT_EQ(zi.state, S::kFull);
    EXPECT_EQ(zi.wp, zs + kCap);
    EXPECT_EQ(zi.cap, kCap);
    EXPECT_EQ(zi.len, kZone);
    // Past the capacity, inside the zone: the zone is full.
    EXPECT_ZONE_ERR(WriteP(*b, zs + kCap, 4096), E::kZoneIsFull);
    // The gap between capacity and zone size reads as zeros.
    EXPECT_EQ(ReadBytes(*b, zs + kCap, kZone - kCap), std::vector<uint8_t>(kZone - kCap, 0));
    // A write crossing the end of the disk.
    uint32_t last = kZones - 1;
    EXPECT_ZONE_ERR(WriteP(*b, ZoneStart(last), 2 * kZone), E::kLbaOutOfRange);
    EXPECT_ZONE_ERR(WriteP(*b, kZones * kZone, 4096), E::kLbaOutOfRange);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, AppendReturnsAssignedLbaAndRespectsLimits) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    uint32_t z = kConv + 2;
    uint64_t zs = ZoneStart(z);
    auto p1 = Pattern(4096, 11), p2 = Pattern(8192, 12);
    BlkResult r1 = b->Append(zs, p1.data(), p1.size(), false);
    ASSERT_OK(r1);
    EXPECT_EQ(r1.value, zs);
    BlkResult r2 = b->Append(zs, p2.data(), p2.size(), true);
    ASSERT_OK(r2);
    EXPECT_EQ(r2.value, zs + 4096);
    EXPECT_EQ(ReadBytes(*b, zs, 4096), p1);
    EXPECT_EQ(ReadBytes(*b, zs + 4096, 8192), p2);
    // Larger than max_append_bytes (16K).
    EXPECT_ZONE_ERR(AppendP(*b, z, 16 * kK + 512), E::kInvalidField);
    EXPECT_ZONE_ERR(AppendP(*b, z, 0), E::kInvalidField);
    // Filling to capacity, then one more sector.
    while (Zone(*b, z).wp + 16 * kK <= zs + kCap) ASSERT_OK(AppendP(*b, z, 16 * kK));
    uint64_t room = zs + kCap - Zone(*b, z).wp;
    if (room) {
        EXPECT_ZONE_ERR(AppendP(*b, z, room + 512), E::kZoneBoundaryError);
        ASSERT_OK(AppendP(*b, z, room));
    }
    EXPECT_EQ(Zone(*b, z).state, S::kFull);
    EXPECT_ZONE_ERR(AppendP(*b, z, 512), E::kZoneIsFull);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ReadsPastTheWritePointerAreZeros) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    uint32_t z = kConv;
    uint64_t zs = ZoneStart(z);
    ASSERT_OK(WriteP(*b, zs, 6144, 5));
    auto v = ReadBytes(*b, zs, kZone);
    EXPECT_TRUE(std::equal(v.begin(), v.begin() + 6144, Pattern(6144, 5).begin()));
    EXPECT_TRUE(std::all_of(v.begin() + 6144, v.end(), [](uint8_t c) { return c == 0; }));
    // A read spanning several zones (conventional + sequential) and the end of the disk.
    EXPECT_OK(b->Read(0, std::vector<uint8_t>(3 * kZone).data(), 3 * kZone));
    std::vector<uint8_t> big(kZone);
    EXPECT_ZONE_ERR(b->Read(kZones * kZone - 4096, big.data(), 8192), E::kLbaOutOfRange);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ReadsPastWpAreZerosEvenWithStaleClusters) {
    Disk d(ZnsGeo());
    uint32_t z = kConv + 4;
    uint64_t zs = ZoneStart(z);
    {
        auto b = d.Open();
        ASSERT_OK(WriteP(*b, zs, 8192, 1));
        ASSERT_TRUE(b->Close().ok());
    }
    // Data past the wp that reached the disk while the zone word did not (a crash between the
    // data flush and the zone-word write): written here through the format driver directly.
    std::unique_ptr<File> unclean;
    {
        auto img = qcow2::Image::Open(BorrowFile(&d.file()), {.write = true}, nullptr);
        ASSERT_TRUE(img.ok()) << img.status().message();
        auto stale = Pattern(kCap - 8192, 2);
        ASSERT_TRUE((*img)->Write(zs + 8192, stale.data(), stale.size()).ok());
        ASSERT_TRUE((*img)->Flush().ok());
        auto copy = d.file().CloneDurable();  // the in-use flag is still set: an unclean image
        ASSERT_TRUE(copy.ok());
        unclean = std::move(*copy);
        ASSERT_TRUE((*img)->Close().ok());  // a clean image with stale clusters
    }
    for (bool clean : {true, false}) {
        SCOPED_TRACE(clean ? "clean" : "unclean");
        auto c = clean ? d.Open() : Disk::OpenFile(BorrowFile(unclean.get()));
        ASSERT_TRUE(c);
        ZoneInfo zi = Zone(*c, z);
        EXPECT_EQ(zi.wp, zs + 8192);
        EXPECT_EQ(ReadBytes(*c, zs + 8192, 16384), std::vector<uint8_t>(16384, 0));
        EXPECT_EQ(ReadBytes(*c, zs, kZone).size(), kZone);
        // Finishing the zone makes [wp, cap) readable: still zeros, not the stale data.
        ASSERT_OK(c->ZoneMgmt(ZoneMgmtOp::kFinish, zs, false));
        EXPECT_EQ(ReadBytes(*c, zs + 8192, kCap - 8192), std::vector<uint8_t>(kCap - 8192, 0));
        EXPECT_EQ(ReadBytes(*c, zs, 8192), Pattern(8192, 1));
        ASSERT_TRUE(c->Close().ok());
    }
}

TEST(ZonedBackend, FinishZeroesStaleDataOfAnEarlierLife) {
    // Zones smaller than a cluster: a reset cannot drop a shared cluster, so the zone's previous
    // data may stay in it past the wp; Finish must zero it rather than expose it.
    qcow2::ZonedGeometry g = ZnsGeo();
    g.zone_size = 16 * kK;
    g.zone_capacity = 12 * kK;
    g.max_append_bytes = 4096;
    Disk d(g, 16 * 16 * kK, 65536);
    auto b = d.Open();
    uint64_t zs = 16 * kK * 3;
    ASSERT_OK(WriteP(*b, zs, 12 * kK, 7));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kReset, zs, false));
    EXPECT_EQ(ReadBytes(*b, zs, 12 * kK), std::vector<uint8_t>(12 * kK, 0));
    ASSERT_OK(WriteP(*b, zs, 2048, 8));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kFinish, zs, false));
    auto v = ReadBytes(*b, zs, 16 * kK);
    EXPECT_TRUE(std::equal(v.begin(), v.begin() + 2048, Pattern(2048, 8).begin()));
    EXPECT_TRUE(std::all_of(v.begin() + 2048, v.end(), [](uint8_t c) { return c == 0; }));
    // The neighbours sharing the cluster are untouched.
    EXPECT_EQ(Zone(*b, 2).state, S::kEmpty);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ConventionalZonesArePlainDisk) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    // Random order, overwrite, unaligned in-zone offsets, crossing conv zone 0 -> 1.
    ASSERT_OK(WriteP(*b, 8192, 4096, 1));
    ASSERT_OK(WriteP(*b, 0, 4096, 2));
    ASSERT_OK(WriteP(*b, 8192, 4096, 3));
    ASSERT_OK(WriteP(*b, kZone - 4096, 8192, 4));
    EXPECT_EQ(ReadBytes(*b, 0, 4096), Pattern(4096, 2));
    EXPECT_EQ(ReadBytes(*b, 8192, 4096), Pattern(4096, 3));
    EXPECT_EQ(ReadBytes(*b, kZone - 4096, 8192), Pattern(8192, 4));
    EXPECT_EQ(Zone(*b, 0).state, S::kNotWritePointer);
    EXPECT_EQ(Zone(*b, 0).type, ZoneType::kConventional);
    EXPECT_EQ(Zone(*b, 0).wp, 0u);
    // Crossing from the last conventional zone into the first sequential one.
    EXPECT_ZONE_ERR(WriteP(*b, ZoneStart(kConv) - 4096, 8192), E::kZoneBoundaryError);
    EXPECT_EQ(Zone(*b, kConv).wp, ZoneStart(kConv));
    // Discard: conventional only.
    ASSERT_OK(b->Discard(0, 8192));
    EXPECT_EQ(ReadBytes(*b, 0, 4096), std::vector<uint8_t>(4096, 0));
    EXPECT_ZONE_ERR(b->Discard(ZoneStart(kConv), kZone), E::kInvalidField);
    // Write Zeroes and FUA.
    ASSERT_OK(WriteP(*b, kZone, 4096, 9, true));
    ASSERT_OK(b->WriteZeroes(kZone, 512, false));
    auto v = ReadBytes(*b, kZone, 4096);
    EXPECT_TRUE(std::all_of(v.begin(), v.begin() + 512, [](uint8_t c) { return c == 0; }));
    ASSERT_TRUE(b->Close().ok());
    auto again = d.Open();
    auto v2 = ReadBytes(*again, kZone - 4096, 8192);
    auto p4 = Pattern(8192, 4), p9 = Pattern(4096, 9);
    EXPECT_TRUE(std::equal(v2.begin(), v2.begin() + 4096, p4.begin()));
    EXPECT_TRUE(std::all_of(v2.begin() + 4096, v2.begin() + 4608, [](uint8_t c) { return c == 0; }));
    EXPECT_TRUE(std::equal(v2.begin() + 4608, v2.end(), p9.begin() + 512));
    ASSERT_TRUE(again->Close().ok());
}

TEST(ZonedBackend, WriteZeroesAdvancesTheWritePointer) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    uint64_t zs = ZoneStart(kConv);
    ASSERT_OK(b->WriteZeroes(zs, 8192, false));
    EXPECT_EQ(Zone(*b, kConv).wp, zs + 8192);
    EXPECT_ZONE_ERR(b->WriteZeroes(zs, 512, false), E::kZoneInvalidWrite);
    ASSERT_TRUE(b->Close().ok());
}

// ---------------------------------------------------------------------------------------------
// Resources.

TEST(ZonedBackend, ImplicitOpenEvictsTheLeastRecentlyWrittenImplicitZone) {
    Disk d(ZnsGeo(/*max_open=*/3, /*max_active=*/5));
    auto b = d.Open();
    uint32_t a = kConv, c = kConv + 1, e = kConv + 2, f = kConv + 3;
    ASSERT_OK(WriteP(*b, ZoneStart(a), 4096));
    ASSERT_OK(WriteP(*b, ZoneStart(c), 4096));
    ASSERT_OK(WriteP(*b, ZoneStart(e), 4096));
    ASSERT_OK(WriteP(*b, ZoneStart(a) + 4096, 4096));  // a is now the most recent
    // A fourth implicit open closes the least recently written implicitly opened zone (c).
    ASSERT_OK(WriteP(*b, ZoneStart(f), 4096));
    EXPECT_EQ(Zone(*b, c).state, S::kClosed);
    EXPECT_EQ(Zone(*b, a).state, S::kImplicitOpen);
    EXPECT_EQ(Zone(*b, e).state, S::kImplicitOpen);
    EXPECT_EQ(Zone(*b, f).state, S::kImplicitOpen);
    // Active: a, c(closed), e, f = 4; one more fits, then the active limit bites.
    uint32_t g = kConv + 4, h = kConv + 5;
    ASSERT_OK(AppendP(*b, g, 4096));
    EXPECT_EQ(Zone(*b, g).state, S::kImplicitOpen);
    EXPECT_ZONE_ERR(WriteP(*b, ZoneStart(h), 4096), E::kTooManyActiveZones);
    EXPECT_ZONE_ERR(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(h), false), E::kTooManyActiveZones);
    EXPECT_EQ(Zone(*b, h).state, S::kEmpty);
    // Finishing one frees an active resource.
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kFinish, ZoneStart(c), false));
    ASSERT_OK(WriteP(*b, ZoneStart(h), 4096));
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ExplicitOpensAreNeverEvicted) {
    Disk d(ZnsGeo(/*max_open=*/2));
    auto b = d.Open();
    uint32_t a = kConv, c = kConv + 1, e = kConv + 2;
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(a), false));
    ASSERT_OK(WriteP(*b, ZoneStart(c), 4096));  // implicit
    // ZNS: an explicit open does not close an implicitly opened zone to make room.
    EXPECT_ZONE_ERR(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(e), false), E::kTooManyOpenZones);
    // An implicit open does.
    ASSERT_OK(WriteP(*b, ZoneStart(e), 4096));
    EXPECT_EQ(Zone(*b, c).state, S::kClosed);
    EXPECT_EQ(Zone(*b, a).state, S::kExplicitOpen);
    // Now both open resources are held by a (explicit) and e (implicit): closing e explicitly
    // makes room for an explicit open.
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kClose, ZoneStart(e), false));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(kConv + 3), false));
    // Two explicit opens: no implicit zone to evict, a write to a closed zone fails.
    EXPECT_ZONE_ERR(WriteP(*b, Zone(*b, c).wp, 4096), E::kTooManyOpenZones);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, SelectAllActions) {
    Disk d(ZnsGeo(/*max_open=*/4));
    auto b = d.Open();
    ASSERT_OK(WriteP(*b, ZoneStart(kConv), 4096));                        // IO
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(kConv + 1), false)); // EO
    ASSERT_OK(WriteP(*b, ZoneStart(kConv + 2), 4096));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kClose, ZoneStart(kConv + 2), false)); // C
    ASSERT_OK(WriteP(*b, ZoneStart(kConv + 3), kCap));                     // Full
    ASSERT_OK(b->InjectZoneFault(kConv + 4, S::kReadOnly));
    // Close all: opened zones only.
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kClose, 0, true));
    EXPECT_EQ(Zone(*b, kConv).state, S::kClosed);
    EXPECT_EQ(Zone(*b, kConv + 1).state, S::kClosed);
    EXPECT_EQ(Zone(*b, kConv + 5).state, S::kEmpty);
    // Open all: closed zones (3 of them, fits max_open 4).
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, 0, true));
    for (uint32_t z = kConv; z < kConv + 3; z++) EXPECT_EQ(Zone(*b, z).state, S::kExplicitOpen);
    EXPECT_EQ(Zone(*b, kConv + 5).state, S::kEmpty);
    // Finish all: opened and closed.
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kFinish, 0, true));
    for (uint32_t z = kConv; z < kConv + 4; z++) EXPECT_EQ(Zone(*b, z).state, S::kFull);
    EXPECT_EQ(Zone(*b, kConv + 4).state, S::kReadOnly);
    // Reset all: the full zones; read-only stays.
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kReset, 0, true));
    for (uint32_t z = kConv; z < kConv + 4; z++) {
        EXPECT_EQ(Zone(*b, z).state, S::kEmpty);
        EXPECT_EQ(Zone(*b, z).wp, ZoneStart(z));
    }
    EXPECT_EQ(Zone(*b, kConv + 4).state, S::kReadOnly);
    // Offline all: read-only zones.
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOffline, 0, true));
    EXPECT_EQ(Zone(*b, kConv + 4).state, S::kOffline);
    EXPECT_EQ(Zone(*b, kConv).state, S::kEmpty);
    EXPECT_EQ(Zone(*b, 0).state, S::kNotWritePointer);
    ASSERT_TRUE(b->Close().ok());
    // All of it is durable.
    auto again = d.Open();
    EXPECT_EQ(Zone(*again, kConv + 4).state, S::kOffline);
    EXPECT_EQ(Zone(*again, kConv + 3).state, S::kEmpty);
    ASSERT_TRUE(again->Close().ok());
}

TEST(ZonedBackend, SelectAllOpenIsAllOrNothing) {
    Disk d(ZnsGeo(/*max_open=*/2));
    auto b = d.Open();
    for (uint32_t z = kConv; z < kConv + 3; z++) {
        ASSERT_OK(WriteP(*b, ZoneStart(z), 4096));
        ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kClose, ZoneStart(z), false));
    }
    EXPECT_ZONE_ERR(b->ZoneMgmt(ZoneMgmtOp::kOpen, 0, true), E::kTooManyOpenZones);
    for (uint32_t z = kConv; z < kConv + 3; z++) EXPECT_EQ(Zone(*b, z).state, S::kClosed);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ResetAndFinishAreDurableAndFreeData) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    uint32_t z = kConv + 6;
    uint64_t zs = ZoneStart(z);
    ASSERT_OK(WriteP(*b, zs, 16384, 4));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kReset, zs, false));
    EXPECT_EQ(ReadBytes(*b, zs, 16384), std::vector<uint8_t>(16384, 0));
    {
        auto c = d.OpenDurableCopy();
        EXPECT_EQ(Zone(*c, z).state, S::kEmpty);
        EXPECT_EQ(ReadBytes(*c, zs, 16384), std::vector<uint8_t>(16384, 0));
    }
    ASSERT_OK(WriteP(*b, zs, 4096, 5));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kFinish, zs, false));
    {
        auto c = d.OpenDurableCopy();
        EXPECT_EQ(Zone(*c, z).state, S::kFull);
        EXPECT_EQ(ReadBytes(*c, zs, 4096), Pattern(4096, 5));  // finish flushed the data too
        EXPECT_EQ(ReadBytes(*c, zs + 4096, kCap - 4096), std::vector<uint8_t>(kCap - 4096, 0));
    }
    ASSERT_TRUE(b->Close().ok());
}

std::string TempDir() {
    char tmpl[] = "/tmp/qzns-zoned-XXXXXX";
    char* p = mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    return p ? p : "/tmp";
}

TEST(ZonedBackend, ResetFreesClustersInAPosixFile) {
    std::string dir = TempDir();
    std::string path = dir + "/reset.qcow2";
    {
        auto f = OpenPosixFile(path, {.write = true, .create = true, .lock = false});
        ASSERT_TRUE(f.ok()) << f.status().message();
        qcow2::CreateOptions co;
        co.size = 16 * (1ull << 20);
        co.zoned = ZnsGeo();
        co.zoned->zone_size = 1ull << 20;
        co.zoned->zone_capacity = 1ull << 20;
        co.zoned->max_append_bytes = 0;
        ASSERT_TRUE(qcow2::Create(std::move(*f), co).ok());
    }
    BlockBackendOptions o;
    o.filename = path;
    o.lock = false;
    auto b = BlockBackend::Open(o);
    ASSERT_TRUE(b.ok()) << b.status().message();
    auto alloc = [&] {
        auto f = OpenPosixFile(path, {.write = false, .lock = false});
        auto n = (*f)->AllocatedBytes();
        return n.ok() ? *n : 0;
    };
    uint64_t empty = alloc();
    std::vector<uint8_t> data = Pattern(1ull << 20, 3);
    for (uint32_t z = kConv; z < kConv + 4; z++) ASSERT_OK((*b)->Write(z * (1ull << 20), data.data(), data.size(), false));
    ASSERT_OK((*b)->Flush());
    uint64_t full = alloc();
    EXPECT_GE(full, empty + 4 * (1ull << 20));
    ASSERT_OK((*b)->ZoneMgmt(ZoneMgmtOp::kReset, 0, true));
    uint64_t after = alloc();
    EXPECT_LE(after, empty + (1ull << 20)) << "empty " << empty << " full " << full;
    ASSERT_TRUE((*b)->Close().ok());
    unlink(path.c_str());
    rmdir(dir.c_str());
}

// ---------------------------------------------------------------------------------------------
// Profiles, ZDED, fault injection.

TEST(ZonedBackend, ZbcProfileHasNoAppendAndFullCapacity) {
    qcow2::ZonedGeometry g;
    g.profile = qcow2::ZonedProfile::kZbc;
    g.zone_size = kZone;
    g.nr_conv_zones = 1;
    g.max_open_zones = 2;
    Disk d(g);
    auto b = d.Open();
    EXPECT_EQ(b->profile(), ZonedProfile::kZbc);
    EXPECT_EQ(b->zone_capacity(), kZone);
    EXPECT_EQ(Zone(*b, 1).cap, kZone);
    EXPECT_ZONE_ERR(AppendP(*b, 1, 4096), E::kInvalidOpcode);
    EXPECT_ZONE_ERR(b->ZoneMgmt(ZoneMgmtOp::kOffline, ZoneStart(1), false), E::kInvalidField);
    std::vector<uint8_t> zde(64);
    EXPECT_ZONE_ERR(b->SetZoneDescExt(ZoneStart(1), zde.data()), E::kInvalidField);
    // The whole zone is writable.
    ASSERT_OK(WriteP(*b, ZoneStart(1), kZone));
    EXPECT_EQ(Zone(*b, 1).state, S::kFull);
    // ZBC: OPEN of a full zone is a no-op; CLOSE of an opened zone with nothing written -> Empty;
    // an explicit open may close an implicitly opened zone to make room.
    EXPECT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(1), false));
    EXPECT_EQ(Zone(*b, 1).state, S::kFull);
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(2), false));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kClose, ZoneStart(2), false));
    EXPECT_EQ(Zone(*b, 2).state, S::kEmpty);
    ASSERT_OK(WriteP(*b, ZoneStart(2), 4096));
    ASSERT_OK(WriteP(*b, ZoneStart(3), 4096));
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(4), false));
    EXPECT_EQ(Zone(*b, 2).state, S::kClosed);
    EXPECT_EQ(Zone(*b, 4).state, S::kExplicitOpen);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ZoneDescriptorExtensionSurvivesReopen) {
    Disk d(ZnsGeo());
    uint32_t z = kConv + 7;
    std::vector<uint8_t> zde(64);
    for (size_t i = 0; i < zde.size(); i++) zde[i] = static_cast<uint8_t>(0xa0 + i);
    {
        auto b = d.Open();
        ASSERT_OK(b->SetZoneDescExt(ZoneStart(z), zde.data()));
        ZoneInfo zi = Zone(*b, z);
        EXPECT_EQ(zi.state, S::kClosed);
        EXPECT_TRUE(zi.attrs & kZoneAttrZdev);
        // Set ZDE needs an Empty zone.
        EXPECT_ZONE_ERR(b->SetZoneDescExt(ZoneStart(z), zde.data()), E::kInvalidZoneStateTransition);
        // Durable on completion: a power cut now keeps it.
        auto c = d.OpenDurableCopy();
        std::vector<uint8_t> got(64);
        ASSERT_TRUE(c->ReadZoneDescExt(z, got.data()).ok());
        EXPECT_EQ(got, zde);
        EXPECT_TRUE(Zone(*c, z).attrs & kZoneAttrZdev);
        EXPECT_EQ(Zone(*c, z).state, S::kClosed);
        ASSERT_TRUE(b->Close().ok());
    }
    {
        auto b = d.Open();
        std::vector<uint8_t> got(64);
        ASSERT_TRUE(b->ReadZoneDescExt(z, got.data()).ok());
        EXPECT_EQ(got, zde);
        ZoneInfo zi = Zone(*b, z);
        EXPECT_EQ(zi.state, S::kClosed);
        EXPECT_TRUE(zi.attrs & kZoneAttrZdev);
        // A write to the zone keeps ZDEV; a reset clears it.
        ASSERT_OK(WriteP(*b, ZoneStart(z), 4096));
        EXPECT_TRUE(Zone(*b, z).attrs & kZoneAttrZdev);
        ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kReset, ZoneStart(z), false));
        EXPECT_EQ(Zone(*b, z).attrs, 0);
        ASSERT_TRUE(b->Close().ok());
    }
    {
        auto b = d.Open();
        EXPECT_EQ(Zone(*b, z).state, S::kEmpty);
        EXPECT_EQ(Zone(*b, z).attrs, 0);
        ASSERT_TRUE(b->Close().ok());
    }
}

TEST(ZonedBackend, InjectedZoneFaultPersistsAndNotifies) {
    Disk d(ZnsGeo());
    std::vector<uint32_t> changed;
    util::Mutex mu;  // guards changed (a local: GUARDED_BY takes members only)
    {
        auto b = d.Open();
        b->SetZoneChangedCallback([&](uint32_t z) {
            util::MutexLock lk(mu);
            changed.push_back(z);
        });
        ASSERT_OK(WriteP(*b, ZoneStart(kConv + 1), 8192, 6));
        ASSERT_OK(b->InjectZoneFault(kConv + 1, S::kReadOnly));
        ASSERT_OK(b->InjectZoneFault(kConv + 2, S::kOffline));
        ASSERT_OK(b->InjectZoneFault(0, S::kReadOnly));  // a conventional zone
        EXPECT_FALSE(b->InjectZoneFault(kConv + 3, S::kFull).ok());
        EXPECT_FALSE(b->InjectZoneFault(kZones, S::kOffline).ok());
        // Host-requested changes do not call back.
        ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(kConv + 4), false));
        EXPECT_EQ(changed, (std::vector<uint32_t>{kConv + 1, kConv + 2, 0}));
        EXPECT_ZONE_ERR(WriteP(*b, 0, 4096), E::kZoneIsReadOnly);
        EXPECT_EQ(ReadBytes(*b, ZoneStart(kConv + 1), 8192), Pattern(8192, 6));
        std::vector<uint8_t> buf(4096);
        EXPECT_ZONE_ERR(b->Read(ZoneStart(kConv + 2), buf.data(), 4096), E::kZoneIsOffline);
        // Durable at once.
        auto c = d.OpenDurableCopy();
        EXPECT_EQ(Zone(*c, kConv + 1).state, S::kReadOnly);
        EXPECT_EQ(Zone(*c, kConv + 2).state, S::kOffline);
        EXPECT_EQ(Zone(*c, 0).state, S::kReadOnly);
        ASSERT_TRUE(b->Close().ok());
    }
    auto b = d.Open();
    EXPECT_EQ(Zone(*b, kConv + 1).state, S::kReadOnly);
    EXPECT_EQ(Zone(*b, kConv + 1).wp, ZoneStart(kConv + 1) + 8192);
    EXPECT_EQ(Zone(*b, kConv + 2).state, S::kOffline);
    EXPECT_EQ(ReadBytes(*b, ZoneStart(kConv + 1), 8192), Pattern(8192, 6));
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, UncleanOpenClosesOpenedZones) {
    Disk d(ZnsGeo());
    {
        auto b = d.Open();
        ASSERT_OK(WriteP(*b, ZoneStart(kConv), 4096, 1));
        ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(kConv + 1), false));
        ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kOpen, ZoneStart(kConv + 2), false));
        ASSERT_OK(WriteP(*b, ZoneStart(kConv + 2), 4096, 2));
        ASSERT_OK(b->Flush());
        auto c = d.OpenDurableCopy();
        EXPECT_EQ(Zone(*c, kConv).state, S::kClosed);
        EXPECT_EQ(Zone(*c, kConv + 1).state, S::kEmpty);
        EXPECT_EQ(Zone(*c, kConv + 2).state, S::kClosed);
        EXPECT_EQ(ReadBytes(*c, ZoneStart(kConv + 2), 4096), Pattern(4096, 2));
        ASSERT_TRUE(b->Close().ok());
    }
    // A clean close and reopen is a power cycle for the zones as well.
    auto b = d.Open();
    EXPECT_EQ(Zone(*b, kConv).state, S::kClosed);
    EXPECT_EQ(Zone(*b, kConv + 2).state, S::kClosed);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ReportZones) {
    Disk d(ZnsGeo());
    auto b = d.Open();
    EXPECT_EQ(b->nr_zones(), kZones);
    auto all = b->ReportZones(0, 1000);
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->size(), kZones);
    for (uint32_t z = 0; z < kZones; z++) {
        EXPECT_EQ((*all)[z].start, ZoneStart(z));
        EXPECT_EQ((*all)[z].type, z < kConv ? ZoneType::kConventional : ZoneType::kSeqWriteRequired);
        EXPECT_EQ((*all)[z].cap, z < kConv ? kZone : kCap);
    }
    auto some = b->ReportZones(ZoneStart(5) + 100, 3);
    ASSERT_TRUE(some.ok());
    ASSERT_EQ(some->size(), 3u);
    EXPECT_EQ((*some)[0].start, ZoneStart(5));
    EXPECT_FALSE(b->ReportZones(kZones * kZone, 1).ok());
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ReadOnlyOpenRefusesChanges) {
    Disk d(ZnsGeo());
    {
        auto b = d.Open();
        ASSERT_OK(WriteP(*b, ZoneStart(kConv), 4096, 1));
        ASSERT_TRUE(b->Close().ok());
    }
    auto img = qcow2::Image::Open(BorrowFile(&d.file()), {.write = false}, nullptr);
    ASSERT_TRUE(img.ok());
    auto b = BlockBackend::OpenDriver(std::move(*img));
    ASSERT_TRUE(b.ok());
    EXPECT_FALSE((*b)->Write(ZoneStart(kConv) + 4096, Pattern(512, 1).data(), 512, false).ok());
    EXPECT_FALSE((*b)->ZoneMgmt(ZoneMgmtOp::kReset, ZoneStart(kConv), false).ok());
    EXPECT_EQ(ReadBytes(**b, ZoneStart(kConv), 4096), Pattern(4096, 1));
    EXPECT_TRUE((*b)->Close().ok());
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

TEST(ZonedBackend, ConcurrentAppendsGetDistinctContiguousLbas) {
    qcow2::ZonedGeometry g = ZnsGeo();
    g.zone_size = 1ull << 20;
    g.zone_capacity = 1ull << 20;
    g.max_append_bytes = 0;
    Disk d(g, 8ull << 20, 4096);
    auto b = d.Open();
    constexpr int kThreads = 8, kPerThread = 32;
    constexpr uint64_t kLen = 4096;  // 8 * 32 * 4K = 1 MiB = the whole zone
    const uint64_t zs = uint64_t{kConv} << 20;
    util::Mutex mu;  // guards where (a local: GUARDED_BY takes members only)
    std::map<uint64_t, uint32_t> where;  // offset -> tag
    std::atomic<int> failures{0};
    std::vector<std::thread> th;
    for (int t = 0; t < kThreads; t++) {
        th.emplace_back([&, t] {
            std::vector<uint8_t> buf(kLen);
            for (int i = 0; i < kPerThread; i++) {
                uint32_t tag = static_cast<uint32_t>(t * 1000 + i + 1);
                for (uint64_t k = 0; k < kLen; k += 4) std::memcpy(&buf[k], &tag, 4);
                BlkResult r = b->Append(zs, buf.data(), kLen, i % 8 == 7);
                if (!r.ok()) {
                    failures++;
                    continue;
                }
                util::MutexLock lk(mu);
                EXPECT_TRUE(where.emplace(r.value, tag).second) << "offset handed out twice: " << r.value;
            }
        });
    }
    for (auto& x : th) x.join();
    EXPECT_EQ(failures.load(), 0);
    ASSERT_EQ(where.size(), size_t{kThreads * kPerThread});
    uint64_t expect = zs;
    for (auto [off, tag] : where) {
        EXPECT_EQ(off, expect) << "gap or overlap";
        expect = off + kLen;
    }
    EXPECT_EQ(Zone(*b, kConv).state, S::kFull);
    EXPECT_ZONE_ERR(b->Append(zs, Pattern(512, 1).data(), 512, false), E::kZoneIsFull);
    auto check = [&](BlockBackend& be) {
        std::vector<uint8_t> all(1ull << 20);
        ASSERT_OK(be.Read(zs, all.data(), all.size()));
        for (auto [off, tag] : where) {
            for (uint64_t k = 0; k < kLen; k += 4) {
                uint32_t got;
                std::memcpy(&got, &all[off - zs + k], 4);
                ASSERT_EQ(got, tag) << "at " << off + k;
            }
        }
    };
    check(*b);
    ASSERT_OK(b->Flush());
    ASSERT_TRUE(b->Close().ok());
    auto again = d.Open();
    check(*again);
    ASSERT_TRUE(again->Close().ok());
}

TEST(ZonedBackend, QueueDepth32SequentialWritersLoseNothing) {
    // 32 requests in flight: each worker takes the next chunk of a zone under a small lock (the
    // way a transport keeps its submission order), submits, and completes independently. Writes
    // to one zone must arrive in wp order, so the lock covers submission only for appends; for
    // writes each zone has one writer and 32 zones run at once.
    qcow2::ZonedGeometry g = ZnsGeo();
    g.zone_size = 256 * kK;
    g.zone_capacity = 256 * kK;
    g.nr_conv_zones = 0;
    g.max_append_bytes = 0;
    constexpr uint32_t kN = 64;
    Disk d(g, kN * 256 * kK, 4096);
    auto b = d.Open();
    constexpr int kDepth = 32;
    constexpr uint64_t kChunk = 8 * kK;
    std::atomic<int> errors{0};
    std::vector<std::thread> th;
    // Workers 0..15 own zones by writes (two zones each), workers 16..31 append into zones 32..63.
    for (int t = 0; t < kDepth; t++) {
        th.emplace_back([&, t] {
            std::vector<uint8_t> buf(kChunk);
            for (int rep = 0; rep < 2; rep++) {
                uint32_t z = static_cast<uint32_t>(t * 2 + rep);
                uint64_t zs = uint64_t{z} * 256 * kK;
                for (uint64_t off = 0; off < 256 * kK; off += kChunk) {
                    for (uint64_t k = 0; k < kChunk; k += 8) {
                        uint64_t v = zs + off + k;
                        std::memcpy(&buf[k], &v, 8);
                    }
                    BlkResult r;
                    if (t < 16) {
                        r = b->Write(zs + off, buf.data(), kChunk, false);
                    } else {
                        r = b->Append(zs, buf.data(), kChunk, false);
                        if (r.ok() && r.value != zs + off) errors++;
                    }
                    if (!r.ok()) errors++;
                    if (off % (64 * kK) == 0 && !b->Flush().ok()) errors++;
                }
            }
        });
    }
    for (auto& x : th) x.join();
    EXPECT_EQ(errors.load(), 0);
    ASSERT_OK(b->Flush());
    auto verify = [&](BlockBackend& be) {
        std::vector<uint8_t> all(256 * kK);
        for (uint32_t z = 0; z < kN; z++) {
            uint64_t zs = uint64_t{z} * 256 * kK;
            EXPECT_EQ(Zone(be, z).state, S::kFull);
            ASSERT_OK(be.Read(zs, all.data(), all.size()));
            for (uint64_t k = 0; k < all.size(); k += 8) {
                uint64_t v;
                std::memcpy(&v, &all[k], 8);
                ASSERT_EQ(v, zs + k) << "zone " << z;
            }
        }
    };
    verify(*b);
    auto c = d.OpenDurableCopy();
    verify(*c);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ResourceLimitsHoldUnderConcurrentOpensEvictionsAndResets) {
    // Seven threads, two zones each, write, get evicted, hit the active limit and reset, all at
    // once: zones sit in different lock shards, and only the transition lock keeps the counters
    // right. Afterwards every zone holds exactly what its thread wrote, and the counters are
    // back to exact: after a reset of all, max_active zones open and one more does not.
    constexpr uint32_t kOpen = 3, kActive = 5, kThreads = 7;
    Disk d(ZnsGeo(kOpen, kActive));
    auto b = d.Open();
    std::vector<uint64_t> expect_wp(kZones, 0);  // bytes into the zone; each thread owns its zones
    std::atomic<int> writes{0}, refusals{0}, unexpected{0};
    std::vector<std::thread> th;
    for (uint32_t t = 0; t < kThreads; t++) {
        th.emplace_back([&, t] {
            const uint32_t mine[2] = {kConv + t, kConv + t + kThreads};
            for (int i = 0; i < 300; i++) {
                uint32_t z = mine[i % 2];
                if (expect_wp[z] == kCap) {
                    if (!b->ZoneMgmt(ZoneMgmtOp::kReset, ZoneStart(z), false).ok()) unexpected++;
                    expect_wp[z] = 0;
                    continue;
                }
                auto p = Pattern(4096, static_cast<uint8_t>(z * 16 + expect_wp[z] / 4096));
                BlkResult r = b->Write(ZoneStart(z) + expect_wp[z], p.data(), 4096, false);
                if (r.ok()) {
                    expect_wp[z] += 4096;
                    writes++;
                } else if (r.zone_error == E::kTooManyActiveZones) {
                    // Give an active resource back: reset the other zone of this thread.
                    refusals++;
                    uint32_t o = mine[(i + 1) % 2];
                    if (expect_wp[o] && b->ZoneMgmt(ZoneMgmtOp::kReset, ZoneStart(o), false).ok()) expect_wp[o] = 0;
                    std::this_thread::yield();
                } else {
                    unexpected++;
                }
            }
        });
    }
    for (auto& x : th) x.join();
    EXPECT_EQ(unexpected.load(), 0);
    EXPECT_GT(writes.load(), 500);
    EXPECT_GT(refusals.load(), 0) << "the active limit was never reached: the test proves nothing";
    uint32_t open = 0, active = 0;
    for (uint32_t z = kConv; z < kZones; z++) {
        ZoneInfo zi = Zone(*b, z);
        EXPECT_EQ(zi.wp - zi.start, expect_wp[z]) << "zone " << z;
        open += zi.state == S::kImplicitOpen || zi.state == S::kExplicitOpen;
        active += zi.state == S::kImplicitOpen || zi.state == S::kExplicitOpen || zi.state == S::kClosed;
        if (expect_wp[z]) {
            uint64_t last = expect_wp[z] - 4096;
            EXPECT_EQ(ReadBytes(*b, ZoneStart(z) + last, 4096), Pattern(4096, static_cast<uint8_t>(z * 16 + last / 4096)))
                << "zone " << z;
        }
    }
    EXPECT_LE(open, kOpen);
    EXPECT_LE(active, kActive);
    ASSERT_OK(b->ZoneMgmt(ZoneMgmtOp::kReset, 0, true));
    for (uint32_t z = kConv; z < kConv + kActive; z++) ASSERT_OK(WriteP(*b, ZoneStart(z), 4096));
    EXPECT_ZONE_ERR(WriteP(*b, ZoneStart(kConv + kActive), 4096), E::kTooManyActiveZones);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, AFailedAsynchronousWriteGivesItsSectorsBack) {
    // Through Submit as through Write: a write the file refuses does not move the wp, so the
    // host's retry at the same LBA lands and nothing unwritten ever sits below the wp.
    Disk d(ZnsGeo());
    auto b = d.Open();
    uint32_t z = kConv + 1;
    ASSERT_OK(WriteP(*b, ZoneStart(z), 4096, 1));  // maps the zone's extent
    auto p = Pattern(4096, 2);
    BlkRequest r;
    r.op = BlkOp::kWrite;
    r.off = ZoneStart(z) + 4096;
    r.len = 4096;
    r.buf = p.data();
    d.file().FailAfter(0, EIO, OpKind::kWrite, /*once=*/true);
    BlkResult res = SubmitAndWait(*b, r);
    EXPECT_FALSE(res.ok());
    EXPECT_EQ(Zone(*b, z).wp, ZoneStart(z) + 4096);
    EXPECT_EQ(Zone(*b, z).state, S::kImplicitOpen);
    ASSERT_OK(SubmitAndWait(*b, r));
    EXPECT_EQ(Zone(*b, z).wp, ZoneStart(z) + 8192);
    EXPECT_EQ(ReadBytes(*b, ZoneStart(z) + 4096, 4096), p);
    // A zone's only write failing leaves it Empty, with no open resource held.
    uint32_t y = kConv + 2;
    d.file().FailAfter(0, EIO, OpKind::kWrite, /*once=*/true);
    EXPECT_FALSE(WriteP(*b, ZoneStart(y), 4096).ok());
    EXPECT_EQ(Zone(*b, y).state, S::kEmpty);
    EXPECT_EQ(Zone(*b, y).wp, ZoneStart(y));
    ASSERT_OK(b->Flush());
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZonedBackend, ConcurrentAppendsAcrossZonesWithFlushes) {
    // Appends to several zones from many threads while another thread flushes; afterwards a
    // durable copy holds every append that completed before the last flush.
    qcow2::ZonedGeometry g = ZnsGeo();
    g.zone_size = 512 * kK;
    g.zone_capacity = 512 * kK;
    g.nr_conv_zones = 0;
    g.max_append_bytes = 0;
    Disk d(g, 8 * 512 * kK, 4096);
    auto b = d.Open();
    util::Mutex mu;  // guards where (a local: GUARDED_BY takes members only)
    std::map<uint64_t, uint64_t> where;  // offset -> tag
    std::atomic<bool> stop{false};
    std::thread flusher([&] {
        while (!stop) EXPECT_TRUE(b->Flush().ok());
    });
    std::vector<std::thread> th;
    for (int t = 0; t < 8; t++) {
        th.emplace_back([&, t] {
            std::vector<uint8_t> buf(4096);
            for (int i = 0; i < 64; i++) {
                uint32_t z = static_cast<uint32_t>((t + i) % 4);
                uint64_t tag = uint64_t(t) << 32 | static_cast<uint64_t>(i);
                for (uint64_t k = 0; k < 4096; k += 8) std::memcpy(&buf[k], &tag, 8);
                BlkResult r = b->Append(uint64_t{z} * 512 * kK, buf.data(), 4096, false);
                ASSERT_TRUE(r.ok()) << r.message();
                util::MutexLock lk(mu);
                where[r.value] = tag;
            }
        });
    }
    for (auto& x : th) x.join();
    stop = true;
    flusher.join();
    ASSERT_OK(b->Flush());
    auto c = d.OpenDurableCopy();
    for (auto [off, tag] : where) {
        auto v = ReadBytes(*c, off, 4096);
        uint64_t got;
        std::memcpy(&got, v.data(), 8);
        ASSERT_EQ(got, tag) << off;
    }
    ASSERT_TRUE(b->Close().ok());
}

}  // namespace
}  // namespace qzns
