// Reset / Finish Recommended Limits (RRL / FRL), byte-exact through the controller: the limits
// in Identify Namespace CSI 2, the FZR / RZR zone attributes in Zone Management Receive after a
// zone has been active / Full for the limit, the Changed Zone List (BFh) and the Zone Descriptor
// Changed notice, and host actions on the zone clearing the recommendation.
//
// The model measures how long a zone has been in its state from the first RRL/FRL scan that
// sees it there (Subsystem::ScanRecommendedLimits, run by a 1 s timer and callable from tests)
// and compares whole seconds. So each timed step here is: host action, scan (starts the clock),
// sleep 1.1 s, scan (limit reached). The background timer may run scans in between; that only
// makes the clock start earlier or the attribute appear earlier, never the other way round.
#include <algorithm>
#include <thread>

#include "tests/qtest/nvme-qtest.h"

namespace qzns::nvme::qtest {
namespace {

constexpr uint32_t kZs = 2048;  // zone size in 512-byte LBAs (1 MiB)
constexpr uint8_t kZfc = 0x01, kFzr = 0x02, kRzr = 0x04;
// Zone states (ZS bits 7:4).
constexpr int kEmpty = 0x1, kImplicitOpen = 0x2, kExplicitOpen = 0x3, kClosed = 0x4, kFull = 0xe;
// Zone Send actions.
constexpr uint8_t kClose = 0x01, kFinish = 0x02, kOpen = 0x03, kReset = 0x04;

struct ZoneDesc {
    int state;
    uint8_t za;
    uint64_t zslba, wp;
};

class RrlFrl : public NvmeQtest {
protected:
    void SetUp() override {
        NamespaceOptions o;
        o.rrl_seconds = 1;
        o.frl_seconds = 1;
        SetUpTarget(ZonedImageSpec{}, o);
        ConnectAndEnable();
    }
    Completion Write(uint64_t slba, uint32_t nlb, uint8_t seed = 1) {
        return Io().Run(Rw(0x01, zns_nsid(), slba, nlb).sgl(nlb * 512), Pattern(nlb * 512, seed));
    }
    Completion Send(uint64_t slba, uint8_t zsa, bool all = false) {
        return Io().Run(ZoneSend(zns_nsid(), slba, zsa, all));
    }
    // Zone `z` from a one-zone partial report, every field read at its spec offset.
    ZoneDesc Zone(uint32_t z) {
        Completion c = Io().RunC2h(ZoneRecv(zns_nsid(), uint64_t{z} * kZs, 128, 0, 0, true), 128);
        EXPECT_EQ(c.status(), 0);
        EXPECT_EQ(R64(c.data, 0), 1u) << "NZ";
        EXPECT_EQ(R8(c.data, 64) & 0xf, 0x2) << "Sequential Write Required";
        EXPECT_EQ(R64(c.data, 64 + 16), uint64_t{z} * kZs) << "ZSLBA";
        return {R8(c.data, 65) >> 4, R8(c.data, 66), R64(c.data, 64 + 16), R64(c.data, 64 + 24)};
    }
    // ZA of every zone from one full report (16 - 2 conventional = 14 zones).
    std::vector<uint8_t> AllZa() {
        const uint32_t len = 64 + 14 * 64;
        Completion c = Io().RunC2h(ZoneRecv(zns_nsid(), 0, len), len);
        EXPECT_EQ(c.status(), 0);
        EXPECT_EQ(R64(c.data, 0), 14u);
        std::vector<uint8_t> za;
        for (int i = 0; i < 14; i++) za.push_back(R8(c.data, 64 + 64 * i + 2));
        return za;
    }
    // Changed Zone List (BFh) of the zoned namespace, as a sorted list of ZIDs (RAE as given).
    std::vector<uint64_t> ChangedZones(bool rae = false) {
        Completion l = admin_->RunC2h(GetLogPage(0xbf, 4096, zns_nsid(), 2, rae), 4096);
        EXPECT_EQ(l.status(), 0);
        uint16_t n = R16(l.data, 0);
        EXPECT_LE(n, 511);
        for (size_t o = 2; o < 8; o++) EXPECT_EQ(R8(l.data, o), 0) << "reserved byte " << o;
        std::vector<uint64_t> z;
        for (uint16_t i = 0; i < n && i < 511; i++) z.push_back(R64(l.data, 8 + 8 * i));
        for (size_t o = 8 + 8 * size_t{n}; o < 4096; o++)
            if (R8(l.data, o)) {
                ADD_FAILURE() << "nonzero byte past the list at " << o;
                break;
            }
        std::sort(z.begin(), z.end());
        return z;
    }
    void Scan() { subsys_->ScanRecommendedLimits(); }
    void SleepPastLimit() { std::this_thread::sleep_for(std::chrono::milliseconds(1100)); }
};

// Distinct limits, so a swapped or shifted field shows.
class RrlFrlIdentify : public NvmeQtest {
protected:
    void SetUp() override {
        NamespaceOptions o;
        o.rrl_seconds = 0x01020304;
        o.frl_seconds = 0x0a0b0c0d;
        SetUpTarget(ZonedImageSpec{}, o);
        ConnectAndEnable();
    }
};

TEST_F(RrlFrlIdentify, LimitsAtTheirOffsets) {
    Completion id = admin_->RunC2h(Identify(0x05, zns_nsid(), 2), 4096);
    ASSERT_EQ(id.status(), 0);
    ASSERT_EQ(id.data.size(), 4096u);
    // Byte by byte, little endian: RRL bytes 15:12, FRL bytes 19:16.
    EXPECT_EQ(R8(id.data, 12), 0x04);
    EXPECT_EQ(R8(id.data, 13), 0x03);
    EXPECT_EQ(R8(id.data, 14), 0x02);
    EXPECT_EQ(R8(id.data, 15), 0x01);
    EXPECT_EQ(R8(id.data, 16), 0x0d);
    EXPECT_EQ(R8(id.data, 17), 0x0c);
    EXPECT_EQ(R8(id.data, 18), 0x0b);
    EXPECT_EQ(R8(id.data, 19), 0x0a);
    // RRL1-3 / FRL1-3 (bytes 43:20) are not reported.
    for (size_t o = 20; o < 44; o++) EXPECT_EQ(R8(id.data, o), 0) << "byte " << o;
    // Neighbours intact: MOR (bytes 11:8) = 4 open zones - 1, ZSZE of LBA format 0 at byte 2816.
    EXPECT_EQ(R32(id.data, 8), 3u);
    EXPECT_EQ(R64(id.data, 2816), kZs);
    // The NVM (CSI 0) namespace of the conventional zones has no ZNS Identify data.
    EXPECT_NE(admin_->RunC2h(Identify(0x05, conv_nsid(), 2), 4096).status(), 0);
}

// No limits configured (the default).
class NoLimits : public NvmeQtest {
protected:
    void SetUp() override {
        NvmeQtest::SetUp();
        ConnectAndEnable();
    }
};

TEST_F(NoLimits, ZeroAndNoAttributes) {
    Completion id = admin_->RunC2h(Identify(0x05, zns_nsid(), 2), 4096);
    ASSERT_EQ(id.status(), 0);
    EXPECT_EQ(R32(id.data, 12), 0u) << "RRL not reported";
    EXPECT_EQ(R32(id.data, 16), 0u) << "FRL not reported";
    // A scan never sets attributes without limits.
    ASSERT_EQ(Io().Run(ZoneSend(zns_nsid(), 0, kFinish)).status(), 0);
    ASSERT_EQ(Io().Run(Rw(0x01, zns_nsid(), kZs, 8).sgl(4096), Pattern(4096, 1)).status(), 0);
    subsys_->ScanRecommendedLimits();
    Completion c = Io().RunC2h(ZoneRecv(zns_nsid(), 0, 192, 0, 0, true), 192);
    ASSERT_EQ(c.status(), 0);
    EXPECT_EQ(R8(c.data, 64 + 1) >> 4, kFull);
    EXPECT_EQ(R8(c.data, 64 + 2), 0);
    EXPECT_EQ(R8(c.data, 128 + 1) >> 4, kImplicitOpen);
    EXPECT_EQ(R8(c.data, 128 + 2), 0);
}

TEST_F(RrlFrl, IdentifyReportsOneSecond) {
    Completion id = admin_->RunC2h(Identify(0x05, zns_nsid(), 2), 4096);
    ASSERT_EQ(id.status(), 0);
    EXPECT_EQ(R32(id.data, 12), 1u) << "RRL";
    EXPECT_EQ(R32(id.data, 16), 1u) << "FRL";
}

TEST_F(RrlFrl, AttributesEventLogAndClearing) {
    // Zone Descriptor Changed notice enabled (AEC bit 27), one AER outstanding.
    ASSERT_EQ(admin_->Run(SetFeatures(0x0b, 1u << 27)).status(), 0);
    auto aer = admin_->Start(Cmd(0x0c).cid(31));

    // z0 Implicitly Opened, z1 Explicitly Opened, z2 Closed, z3 Full, z4 left Empty.
    ASSERT_EQ(Write(0 * kZs, 8).status(), 0);
    ASSERT_EQ(Send(1 * kZs, kOpen).status(), 0);
    ASSERT_EQ(Write(2 * kZs, 8).status(), 0);
    ASSERT_EQ(Send(2 * kZs, kClose).status(), 0);
    ASSERT_EQ(Send(3 * kZs, kFinish).status(), 0);
    Scan();  // starts the clock for all of them
    EXPECT_EQ(AllZa(), std::vector<uint8_t>(14, 0)) << "nothing recommended before the limits";
    EXPECT_FALSE(aer->Ready());

    SleepPastLimit();
    Scan();
    ZoneDesc z0 = Zone(0), z1 = Zone(1), z2 = Zone(2), z3 = Zone(3), z4 = Zone(4);
    EXPECT_EQ(z0.state, kImplicitOpen);
    EXPECT_EQ(z0.za, kFzr) << "FZR after FRL in Implicitly Opened";
    EXPECT_EQ(z0.wp, 8u);
    EXPECT_EQ(z1.state, kExplicitOpen);
    EXPECT_EQ(z1.za, kFzr) << "FZR after FRL in Explicitly Opened";
    EXPECT_EQ(z2.state, kClosed);
    EXPECT_EQ(z2.za, kFzr) << "FZR after FRL in Closed";
    EXPECT_EQ(z3.state, kFull);
    EXPECT_EQ(z3.za, kRzr) << "RZR after RRL in Full; never FZR on a Full zone";
    EXPECT_EQ(z4.state, kEmpty);
    EXPECT_EQ(z4.za, 0) << "Empty zones get no recommendation";
    std::vector<uint8_t> za = AllZa();
    EXPECT_EQ(za[0], kFzr);
    EXPECT_EQ(za[3], kRzr);
    for (int i = 4; i < 14; i++) EXPECT_EQ(za[i], 0) << "zone " << i;
    EXPECT_EQ(za[0] & kZfc, 0) << "a recommendation is not Zone Finished by Controller";

    // Controller-initiated attribute changes: one Zone Descriptor Changed notice...
    ASSERT_TRUE(aer->Wait());
    Completion a = aer->Get();
    EXPECT_EQ(a.status(), 0);
    EXPECT_EQ(a.cid(), 31);
    EXPECT_EQ(a.dw0(), 0x00bfef02u) << "type Notice (2h), info EFh, log page BFh";
    // ...and the four zones in the Changed Zone List; RAE = 1 keeps it.
    std::vector<uint64_t> want = {0 * kZs, 1 * kZs, 2 * kZs, 3 * kZs};
    EXPECT_EQ(ChangedZones(true), want);
    EXPECT_EQ(ChangedZones(false), want);
    EXPECT_EQ(ChangedZones(false), std::vector<uint64_t>{}) << "a read without RAE clears the list";

    // A scan that changes nothing lists nothing new and posts no event.
    auto aer2 = admin_->Start(Cmd(0x0c).cid(30));
    Scan();
    EXPECT_FALSE(aer2->Wait(std::chrono::milliseconds(50)));
    EXPECT_EQ(ChangedZones(true), std::vector<uint64_t>{});

    // Host actions clear the recommendation at once (before any scan) and for good.
    ASSERT_EQ(Send(3 * kZs, kReset).status(), 0);   // RZR zone reset -> Empty
    ASSERT_EQ(Send(0 * kZs, kFinish).status(), 0);  // FZR zone finished -> Full
    ASSERT_EQ(Send(1 * kZs, kClose).status(), 0);   // FZR zone closed -> Closed
    // FZR zone reset and written again -> Implicitly Opened again, a fresh zone.
    ASSERT_EQ(Send(2 * kZs, kReset).status(), 0);
    ASSERT_EQ(Write(2 * kZs, 16).status(), 0);
    z0 = Zone(0), z1 = Zone(1), z2 = Zone(2), z3 = Zone(3);
    EXPECT_EQ(z3.state, kEmpty);
    EXPECT_EQ(z3.wp, 3u * kZs);
    EXPECT_EQ(z3.za, 0) << "reset clears RZR";
    EXPECT_EQ(z0.state, kFull);
    EXPECT_EQ(z0.za, 0) << "finish clears FZR (and the zone is newly Full: no RZR yet)";
    EXPECT_EQ(z1.state, kClosed);
    EXPECT_EQ(z1.za, 0) << "closing an FZR zone starts FRL over";
    EXPECT_EQ(z2.state, kImplicitOpen);
    EXPECT_EQ(z2.wp, 2u * kZs + 16);
    EXPECT_EQ(z2.za, 0) << "reset clears FZR; the rewritten zone is new";
    Scan();
    EXPECT_EQ(AllZa(), std::vector<uint8_t>(14, 0)) << "a scan right after the host actions sets nothing";
    // Host-requested changes are not controller-initiated: no list entries, no event.
    EXPECT_FALSE(aer2->Wait(std::chrono::milliseconds(50)));
    EXPECT_EQ(ChangedZones(true), std::vector<uint64_t>{});

    // The recommendations come back once the limits pass again in the new states.
    SleepPastLimit();
    Scan();
    za = AllZa();
    EXPECT_EQ(za[0], kRzr) << "finished zone: RZR after RRL";
    EXPECT_EQ(za[1], kFzr) << "closed zone: FZR after FRL";
    EXPECT_EQ(za[2], kFzr) << "rewritten zone: FZR after FRL";
    EXPECT_EQ(za[3], 0) << "empty zone: nothing";
    ASSERT_TRUE(aer2->Wait());
    EXPECT_EQ(aer2->Get().dw0(), 0x00bfef02u);
    EXPECT_EQ(ChangedZones(false), (std::vector<uint64_t>{0 * kZs, 1 * kZs, 2 * kZs}));
}

TEST_F(RrlFrl, RefilledBeforeAScanIsNotRecommended) {
    // An RZR zone reset and refilled (Full again) before the next scan is a new Full zone: the
    // old recommendation must not stick to it, now or at the next scan.
    ASSERT_EQ(Send(5 * kZs, kFinish).status(), 0);
    Scan();
    SleepPastLimit();
    Scan();
    ASSERT_EQ(Zone(5).za, kRzr);
    ASSERT_EQ(Send(5 * kZs, kReset).status(), 0);
    ASSERT_EQ(Send(5 * kZs, kFinish).status(), 0);
    ZoneDesc z = Zone(5);
    EXPECT_EQ(z.state, kFull);
    EXPECT_EQ(z.za, 0) << "RZR survived a reset";
    Scan();
    EXPECT_EQ(Zone(5).za, 0) << "RZR survived a reset (after a scan)";
    // Same for FZR: reset and written again before a scan.
    ASSERT_EQ(Write(6 * kZs, 8).status(), 0);
    Scan();
    SleepPastLimit();
    Scan();
    ASSERT_EQ(Zone(6).za, kFzr);
    ASSERT_EQ(Send(6 * kZs, kReset).status(), 0);
    ASSERT_EQ(Write(6 * kZs, 8).status(), 0);
    EXPECT_EQ(Zone(6).za, 0) << "FZR survived a reset";
    Scan();
    EXPECT_EQ(Zone(6).za, 0) << "FZR survived a reset (after a scan)";
    // Reset All clears every recommendation as well.
    ASSERT_EQ(Write(7 * kZs, 8).status(), 0);
    ASSERT_EQ(Send(8 * kZs, kFinish).status(), 0);
    Scan();
    SleepPastLimit();
    Scan();
    ASSERT_EQ(Zone(7).za, kFzr);
    ASSERT_EQ(Zone(8).za, kRzr);
    ASSERT_EQ(Send(0, kReset, true).status(), 0);
    ASSERT_EQ(Write(7 * kZs, 8).status(), 0);
    ASSERT_EQ(Send(8 * kZs, kFinish).status(), 0);
    Scan();
    EXPECT_EQ(Zone(7).za, 0) << "FZR survived Reset All";
    EXPECT_EQ(Zone(8).za, 0) << "RZR survived Reset All";
}

}  // namespace
}  // namespace qzns::nvme::qtest
