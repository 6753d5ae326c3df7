// ZNS and NVM I/O commands, byte-exact, through the fabrics seam: data paths, every zone
// status code (with DNR), Zone Management Send/Receive variants, Zone Append's LBA in
// DW0/DW1, the Changed Zone List with Zone Descriptor Changed events, fault injection that
// survives a restart, and the conventional-zone namespace.
#include <set>

#include "tests/qtest/nvme-qtest.h"

namespace qzns::nvme::qtest {
namespace {

constexpr uint32_t kZs = 2048;   // zone size in 512-byte LBAs (1 MiB)

class Zns : public NvmeQtest {
protected:
    void SetUp() override {
        NvmeQtest::SetUp();
        ConnectAndEnable();
    }
    Completion Write(uint64_t slba, uint32_t nlb, uint8_t seed = 1, uint32_t nsid = 0) {
        return Io().Run(Rw(0x01, nsid ? nsid : zns_nsid(), slba, nlb).sgl(nlb * 512), Pattern(nlb * 512, seed));
    }
    Completion Read(uint64_t slba, uint32_t nlb, uint32_t nsid = 0) {
        return Io().RunC2h(Rw(0x02, nsid ? nsid : zns_nsid(), slba, nlb).sgl(nlb * 512), nlb * 512);
    }
    Completion Append(uint64_t zslba, uint32_t nlb, uint8_t seed = 1) {
        return Io().Run(Rw(0x7d, zns_nsid(), zslba, nlb).sgl(nlb * 512), Pattern(nlb * 512, seed));
    }
    Completion Send(uint64_t slba, uint8_t zsa, bool all = false) { return Io().Run(ZoneSend(zns_nsid(), slba, zsa, all)); }
    // State (ZS >> 4) and write pointer of zone `z` from a one-zone report.
    std::pair<int, uint64_t> Zone(uint32_t z) {
        Completion c = Io().RunC2h(ZoneRecv(zns_nsid(), uint64_t{z} * kZs, 128, 0, 0, true), 128);
        EXPECT_EQ(c.status(), 0);
        EXPECT_EQ(R64(c.data, 0), 1u);
        return {R8(c.data, 65) >> 4, R64(c.data, 64 + 24)};
    }
};

TEST_F(Zns, WriteAtWritePointerAndReadBack) {
    ASSERT_EQ(Write(0, 16, 7).status(), 0);
    Completion r = Read(0, 16);
    ASSERT_EQ(r.status(), 0);
    EXPECT_EQ(r.data, Pattern(16 * 512, 7));
    EXPECT_EQ(Zone(0), std::make_pair(2, uint64_t{16}));  // Implicitly Opened, wp 16
    // Past the write pointer reads zeros.
    r = Read(16, 8);
    EXPECT_EQ(r.data, std::vector<uint8_t>(8 * 512, 0));
}

TEST_F(Zns, WriteNotAtWritePointerIsZoneInvalidWrite) {
    Completion c = Write(8, 8);
    EXPECT_EQ(c.sc(), 0x1bc);
    EXPECT_TRUE(c.dnr());
}

TEST_F(Zns, WritePastCapacityIsZoneBoundaryError) {
    ASSERT_EQ(Write(0, 1024).status(), 0);
    Completion c = Write(1024, 1024);  // ends at 2048 > zcap 1536
    EXPECT_EQ(c.sc(), 0x1b8);
    EXPECT_TRUE(c.dnr());
}

TEST_F(Zns, WriteToFullZoneIsZoneIsFull) {
    ASSERT_EQ(Send(0, 0x02).status(), 0);  // finish
    EXPECT_EQ(Zone(0).first, 0xe);
    Completion c = Write(0, 8);
    EXPECT_EQ(c.sc(), 0x1b9);
    EXPECT_TRUE(c.dnr());
}

TEST_F(Zns, AppendReturnsAssignedLbaInDw0Dw1) {
    uint64_t z3 = 3ull * kZs;
    Completion a = Append(z3, 8, 1);
    ASSERT_EQ(a.status(), 0);
    EXPECT_EQ(a.result64(), z3);
    a = Append(z3, 16, 2);
    ASSERT_EQ(a.status(), 0);
    EXPECT_EQ(a.dw0(), uint32_t(z3 + 8));
    EXPECT_EQ(a.dw1(), 0u);
    Completion r = Read(z3 + 8, 16);
    EXPECT_EQ(r.data, Pattern(16 * 512, 2));
}

TEST_F(Zns, AppendErrors) {
    EXPECT_EQ(Append(1, 8).sc(), 0x002) << "ZSLBA not a zone start";
    EXPECT_EQ(Append(14ull * kZs, 8).sc(), 0x080) << "beyond NSZE";
    Completion c = Append(0, 129);  // 64.5 KiB > ZASL (64 KiB)
    EXPECT_EQ(c.sc(), 0x002);
    EXPECT_TRUE(c.dnr());
    ASSERT_EQ(Send(0, 0x02).status(), 0);
    EXPECT_EQ(Append(0, 8).sc(), 0x1b9);
    // Zone Append is not an NVM command: Invalid Opcode on the conventional namespace.
    EXPECT_EQ(Io().Run(Rw(0x7d, conv_nsid(), 0, 8).sgl(4096), Pattern(4096, 1)).sc(), 0x001);
}

TEST_F(Zns, ExplicitOpenCloseFinishResetTransitions) {
    EXPECT_EQ(Send(kZs, 0x03).status(), 0);
    EXPECT_EQ(Zone(1).first, 3);  // Explicitly Opened
    EXPECT_EQ(Send(kZs, 0x01).status(), 0);
    EXPECT_EQ(Zone(1).first, 4);  // Closed
    EXPECT_EQ(Send(kZs, 0x02).status(), 0);
    EXPECT_EQ(Zone(1).first, 0xe);
    EXPECT_EQ(Send(kZs, 0x04).status(), 0);
    EXPECT_EQ(Zone(1), std::make_pair(1, uint64_t{kZs}));
    // Close of an Empty zone: Invalid Zone State Transition.
    Completion c = Send(kZs, 0x01);
    EXPECT_EQ(c.sc(), 0x1bf);
    EXPECT_TRUE(c.dnr());
    // Offline only from Read Only.
    EXPECT_EQ(Send(kZs, 0x05).sc(), 0x1bf);
    // Bad action, bad LBA.
    EXPECT_EQ(Send(kZs, 0x06).sc(), 0x002);
    EXPECT_EQ(Send(kZs + 1, 0x03).sc(), 0x002);
    EXPECT_EQ(Send(14ull * kZs, 0x03).sc(), 0x080);
}

TEST_F(Zns, TooManyOpenAndActiveZones) {
    for (uint32_t z = 0; z < 4; z++) ASSERT_EQ(Send(uint64_t{z} * kZs, 0x03).status(), 0);
    Completion c = Send(4ull * kZs, 0x03);
    EXPECT_EQ(c.sc(), 0x1be);
    EXPECT_TRUE(c.dnr());
    // Close two (still active), open one more, close: 6 active; the 7th open hits MAR.
    ASSERT_EQ(Send(0, 0x01).status(), 0);
    ASSERT_EQ(Send(kZs, 0x01).status(), 0);
    ASSERT_EQ(Send(4ull * kZs, 0x03).status(), 0);
    ASSERT_EQ(Send(4ull * kZs, 0x01).status(), 0);
    ASSERT_EQ(Send(5ull * kZs, 0x03).status(), 0);
    c = Write(6ull * kZs, 8);
    EXPECT_EQ(c.sc(), 0x1bd);
    EXPECT_TRUE(c.dnr());
}

TEST_F(Zns, SelectAllResetAndFinish) {
    ASSERT_EQ(Write(0, 8).status(), 0);
    ASSERT_EQ(Write(kZs, 8).status(), 0);
    ASSERT_EQ(Send(0, 0x02, true).status(), 0);  // finish all active
    EXPECT_EQ(Zone(0).first, 0xe);
    EXPECT_EQ(Zone(1).first, 0xe);
    EXPECT_EQ(Zone(2).first, 1) << "Empty zones are not finished by Select All";
    ASSERT_EQ(Send(12345, 0x04, true).status(), 0);  // SLBA ignored
    EXPECT_EQ(Zone(0), std::make_pair(1, uint64_t{0}));
    EXPECT_EQ(Read(0, 8).data, std::vector<uint8_t>(4096, 0)) << "reset data is gone";
}

TEST_F(Zns, ReportFiltersPartialAndFullCounts) {
    ASSERT_EQ(Write(0, 8).status(), 0);         // zone 0 IO
    ASSERT_EQ(Send(kZs, 0x03).status(), 0);     // zone 1 EO
    ASSERT_EQ(Send(2 * kZs, 0x03).status(), 0);
    ASSERT_EQ(Send(2 * kZs, 0x01).status(), 0);  // zone 2 C
    ASSERT_EQ(Send(3 * kZs, 0x02).status(), 0);  // zone 3 F
    ASSERT_TRUE(subsys_->InjectZoneFault(zns_nsid(), 4 * kZs, ZoneState::kReadOnly).ok());
    ASSERT_TRUE(subsys_->InjectZoneFault(zns_nsid(), 5 * kZs, ZoneState::kOffline).ok());
    struct Want { uint8_t zrasf; uint64_t nz; uint64_t first; };
    for (Want w : {Want{0, 14, 0}, Want{1, 8, 6 * kZs}, Want{2, 1, 0}, Want{3, 1, kZs}, Want{4, 1, 2 * kZs},
                   Want{5, 1, 3 * kZs}, Want{6, 1, 4 * kZs}, Want{7, 1, 5 * kZs}}) {
        SCOPED_TRACE("zrasf " + std::to_string(w.zrasf));
        Completion c = Io().RunC2h(ZoneRecv(zns_nsid(), 0, 4096, 0, w.zrasf, false), 4096);
        ASSERT_EQ(c.status(), 0);
        EXPECT_EQ(R64(c.data, 0), w.nz);
        EXPECT_EQ(R64(c.data, 64 + 16), w.first);
        static constexpr int kStateOfFilter[] = {2, 1, 2, 3, 4, 0xe, 0xd, 0xf};  // filter 0: zone 0 is IO
        EXPECT_EQ(R8(c.data, 64 + 1) >> 4, kStateOfFilter[w.zrasf]);
    }
    // Without the partial bit NZ counts every match; with it, only what fits.
    Completion c = Io().RunC2h(ZoneRecv(zns_nsid(), 0, 64 + 2 * 64, 0, 0, false), 192);
    EXPECT_EQ(R64(c.data, 0), 14u);
    c = Io().RunC2h(ZoneRecv(zns_nsid(), 0, 64 + 2 * 64, 0, 0, true), 192);
    EXPECT_EQ(R64(c.data, 0), 2u);
    // Starting mid-namespace.
    c = Io().RunC2h(ZoneRecv(zns_nsid(), 10 * kZs + 5, 4096, 0, 0, false), 4096);
    EXPECT_EQ(R64(c.data, 0), 4u);
    EXPECT_EQ(R64(c.data, 64 + 16), 10u * kZs);
    // Errors.
    EXPECT_EQ(Io().RunC2h(ZoneRecv(zns_nsid(), 0, 4096, 0, 8), 4096).sc(), 0x002);
    EXPECT_EQ(Io().RunC2h(ZoneRecv(zns_nsid(), 0, 4096, 2, 0), 4096).sc(), 0x002);
    EXPECT_EQ(Io().RunC2h(ZoneRecv(zns_nsid(), 14 * kZs, 4096), 4096).sc(), 0x080);
}

TEST_F(Zns, SetZoneDescriptorExtensionAndExtendedReport) {
    std::vector<uint8_t> ext = Pattern(64, 0x55);
    Completion c = Io().Run(ZoneSend(zns_nsid(), 2 * kZs, 0x10).sgl(64), ext);
    ASSERT_EQ(c.status(), 0);
    EXPECT_EQ(Zone(2).first, 4) << "Set ZDE moves an Empty zone to Closed";
    c = Io().RunC2h(ZoneRecv(zns_nsid(), 2 * kZs, 64 + 128, 1, 0, true), 192);
    ASSERT_EQ(c.status(), 0);
    EXPECT_EQ(R64(c.data, 0), 1u);
    EXPECT_EQ(R8(c.data, 64 + 2) & 0x80, 0x80) << "ZDEV";
    EXPECT_EQ(std::vector<uint8_t>(c.data.begin() + 128, c.data.begin() + 192), ext);
    // Select All with Set ZDE is invalid; on a non-Empty zone it is a bad transition.
    EXPECT_EQ(Io().Run(ZoneSend(zns_nsid(), 0, 0x10, true).sgl(64), ext).sc(), 0x002);
    EXPECT_EQ(Io().Run(ZoneSend(zns_nsid(), 2 * kZs, 0x10).sgl(64), ext).sc(), 0x1bf);
}

TEST_F(Zns, FaultInjectionGivesReadOnlyAndOfflineStatus) {
    ASSERT_EQ(Write(0, 8, 3).status(), 0);
    ASSERT_TRUE(subsys_->InjectZoneFault(zns_nsid(), 0, ZoneState::kReadOnly).ok());
    Completion c = Write(8, 8);
    EXPECT_EQ(c.sc(), 0x1ba);
    EXPECT_TRUE(c.dnr());
    EXPECT_EQ(Read(0, 8).data, Pattern(4096, 3)) << "a Read Only zone stays readable";
    EXPECT_EQ(Send(0, 0x05).status(), 0) << "Offline from Read Only";
    c = Read(0, 8);
    EXPECT_EQ(c.sc(), 0x1bb);
    EXPECT_TRUE(c.dnr());
    EXPECT_FALSE(subsys_->InjectZoneFault(zns_nsid(), 1, ZoneState::kOffline).ok()) << "not a zone start";
    EXPECT_FALSE(subsys_->InjectZoneFault(99, 0, ZoneState::kOffline).ok());
}

TEST_F(Zns, ZoneDescriptorChangedEventAndChangedZoneListLog) {
    // Enable the notice (AEC bit 27), leave an AER pending, inject two faults.
    ASSERT_EQ(admin_->Run(SetFeatures(0x0b, 1u << 27)).status(), 0);
    EXPECT_EQ(admin_->Run(GetFeatures(0x0b)).dw0(), 1u << 27);
    auto aer = admin_->Start(Cmd(0x0c).cid(31));
    EXPECT_FALSE(aer->Wait(std::chrono::milliseconds(20)));
    ASSERT_TRUE(subsys_->InjectZoneFault(zns_nsid(), 7 * kZs, ZoneState::kReadOnly).ok());
    ASSERT_TRUE(aer->Wait());
    Completion a = aer->Get();
    EXPECT_EQ(a.status(), 0);
    EXPECT_EQ(a.dw0(), 0x00bfef02u) << "type Notice (2h), info EFh, log page BFh";
    EXPECT_EQ(a.cid(), 31);
    ASSERT_TRUE(subsys_->InjectZoneFault(zns_nsid(), 9 * kZs, ZoneState::kOffline).ok());
    // Masked until the log is read: a new AER stays pending.
    auto aer2 = admin_->Start(Cmd(0x0c).cid(30));
    EXPECT_FALSE(aer2->Wait(std::chrono::milliseconds(20)));
    // RAE = 1 keeps the list and the mask.
    Completion l = admin_->RunC2h(GetLogPage(0xbf, 4096, zns_nsid(), 2, true), 4096);
    ASSERT_EQ(l.status(), 0);
    EXPECT_EQ(R16(l.data, 0), 2);
    EXPECT_EQ(R64(l.data, 8), 7u * kZs);
    EXPECT_EQ(R64(l.data, 16), 9u * kZs);
    EXPECT_FALSE(aer2->Ready());
    // RAE = 0 clears the list and unmasks; the next change completes aer2.
    l = admin_->RunC2h(GetLogPage(0xbf, 4096, zns_nsid(), 2, false), 4096);
    EXPECT_EQ(R16(l.data, 0), 2);
    l = admin_->RunC2h(GetLogPage(0xbf, 4096, zns_nsid(), 2, false), 4096);
    EXPECT_EQ(R16(l.data, 0), 0);
    ASSERT_TRUE(subsys_->InjectZoneFault(zns_nsid(), 10 * kZs, ZoneState::kReadOnly).ok());
    ASSERT_TRUE(aer2->Wait());
    EXPECT_EQ(aer2->Get().dw0(), 0x00bfef02u);
    // The log is per zoned namespace.
    EXPECT_EQ(admin_->RunC2h(GetLogPage(0xbf, 4096, conv_nsid(), 2), 4096).sc(), 0x002);
    // Host-requested changes are not listed.
    ASSERT_EQ(Send(0, 0x02).status(), 0);
    l = admin_->RunC2h(GetLogPage(0xbf, 4096, zns_nsid(), 2, false), 4096);
    EXPECT_EQ(R16(l.data, 0), 1);
    EXPECT_EQ(R64(l.data, 8), 10u * kZs);
}

TEST_F(Zns, NoEventWhenNoticeDisabled) {
    auto aer = admin_->Start(Cmd(0x0c).cid(31));
    ASSERT_TRUE(subsys_->InjectZoneFault(zns_nsid(), 0, ZoneState::kReadOnly).ok());
    EXPECT_FALSE(aer->Wait(std::chrono::milliseconds(50)));
    // The list is still kept for a host that polls it.
    Completion l = admin_->RunC2h(GetLogPage(0xbf, 4096, zns_nsid(), 2), 4096);
    EXPECT_EQ(R16(l.data, 0), 1);
}

TEST_F(Zns, ConventionalNamespaceCoversConventionalZones) {
    // NSID 2: the two conventional zones, random writes anywhere.
    Completion id = admin_->RunC2h(Identify(0x00, conv_nsid()), 4096);
    EXPECT_EQ(R64(id.data, 0), 2u * kZs);
    ASSERT_EQ(Write(100, 8, 9, conv_nsid()).status(), 0);
    ASSERT_EQ(Write(50, 8, 10, conv_nsid()).status(), 0);
    EXPECT_EQ(Read(100, 8, conv_nsid()).data, Pattern(4096, 9));
    EXPECT_EQ(Write(2 * kZs - 4, 8, 1, conv_nsid()).sc(), 0x080) << "ends past NSZE";
    EXPECT_EQ(Io().Run(ZoneSend(conv_nsid(), 0, 0x04)).sc(), 0x001) << "no zone commands on CSI 0";
    // The zoned namespace's LBA 0 is the first sequential zone, not backend LBA 0.
    EXPECT_EQ(Read(0, 8).data, std::vector<uint8_t>(4096, 0));
    // DSM deallocate frees conventional blocks.
    std::vector<uint8_t> range(16, 0);
    W32(range.data() + 4, 8);
    W64(range.data() + 8, 100);
    ASSERT_EQ(Io().Run(Cmd(0x09).nsid(conv_nsid()).cdw(10, 0).cdw(11, 1u << 2).sgl(16), range).status(), 0);
    W64(range.data() + 8, 2 * kZs);
    EXPECT_EQ(Io().Run(Cmd(0x09).nsid(conv_nsid()).cdw(10, 0).cdw(11, 1u << 2).sgl(16), range).sc(), 0x080);
    // A fault in a conventional zone becomes a media error (CSI 0 has no zone status).
    ASSERT_TRUE(subsys_->InjectZoneFault(conv_nsid(), 0, ZoneState::kOffline).ok());
    EXPECT_EQ(Read(0, 8, conv_nsid()).sc(), 0x281);
    EXPECT_EQ(Write(0, 8, 1, conv_nsid()).sc(), 0x280);
}

TEST_F(Zns, WriteZeroesCompareFlushAndRangeChecks) {
    ASSERT_EQ(Write(0, 8, 4).status(), 0);
    ASSERT_EQ(Io().Run(Rw(0x08, zns_nsid(), 8, 8)).status(), 0);  // write zeroes at the wp
    EXPECT_EQ(Zone(0).second, 16u);
    EXPECT_EQ(Io().Run(Rw(0x05, zns_nsid(), 0, 8).sgl(4096), Pattern(4096, 4)).status(), 0);
    Completion c = Io().Run(Rw(0x05, zns_nsid(), 0, 8).sgl(4096), Pattern(4096, 5));
    EXPECT_EQ(c.sc(), 0x285);
    EXPECT_TRUE(c.dnr());
    EXPECT_EQ(Io().Run(Cmd(0x00).nsid(zns_nsid())).status(), 0);
    EXPECT_EQ(Io().Run(Cmd(0x00).nsid(0xffffffff)).status(), 0) << "flush broadcast (VWC 2:1 = 11b)";
    EXPECT_EQ(Io().Run(Cmd(0x00).nsid(7)).sc(), 0x00b);
    EXPECT_EQ(Read(14ull * kZs - 4, 8).sc(), 0x080);
    // FUA write.
    EXPECT_EQ(Io().Run(Rw(0x01, zns_nsid(), 16, 8, 1u << 30).sgl(4096), Pattern(4096, 6)).status(), 0);
    // A transfer larger than MDTS (512 KiB).
    EXPECT_EQ(Read(0, 1025).sc(), 0x002);
    // A data buffer shorter than the command: SGL length invalid.
    EXPECT_EQ(Io().Run(Rw(0x01, zns_nsid(), 24, 8).sgl(512), Pattern(512, 1)).sc(), 0x00f);
    // Unknown I/O opcode.
    EXPECT_EQ(Io().Run(Cmd(0x0d).nsid(zns_nsid())).sc(), 0x001);
}

class ZnsOnDisk : public Zns {
protected:
    void SetUp() override {
        SetUpTarget(ZonedImageSpec{}, {}, {}, /*on_disk=*/true);
        ConnectAndEnable();
    }
};

TEST_F(ZnsOnDisk, ManyCommandsInFlightAcrossQueues) {
    // 32 appends per zone to 4 zones from 2 queues at once: every LBA assigned once, in range.
    std::vector<std::shared_ptr<Pending>> p;
    for (int i = 0; i < 128; i++) {
        uint64_t z = uint64_t(i % 4) * kZs;
        p.push_back(Io(1 + i % 2).Start(Rw(0x7d, zns_nsid(), z, 8).sgl(4096), Pattern(4096, uint8_t(i))));
    }
    std::set<uint64_t> lbas;
    for (auto& x : p) {
        ASSERT_TRUE(x->Wait());
        Completion c = x->Get();
        ASSERT_EQ(c.status(), 0);
        lbas.insert(c.result64());
    }
    EXPECT_EQ(lbas.size(), 128u);
    for (uint32_t z = 0; z < 4; z++) EXPECT_EQ(Zone(z).second, uint64_t{z} * kZs + 256);
}

TEST(ZnsRestart, InjectedFaultSurvivesRestart) {
    MemImage img(ZonedImageSpec{});
    {
        auto be = img.Open();
        SubsystemConfig cfg;
        cfg.nqn = kSubNqn;
        auto s = Subsystem::Create(cfg);
        ASSERT_TRUE(s.ok());
        ASSERT_TRUE((*s)->AddBackend(be, {}).ok());
        ASSERT_TRUE((*s)->InjectZoneFault(1, 3 * kZs, ZoneState::kReadOnly).ok());
        ASSERT_TRUE(be->Close().ok());
    }
    auto be = img.Open();
    ASSERT_TRUE(be);
    auto z = be->GetZone(2 + 3);  // two conventional zones first
    ASSERT_TRUE(z.ok());
    EXPECT_EQ(z->state, ZoneState::kReadOnly);
    ASSERT_TRUE(be->Close().ok());
}

class Zns4k : public NvmeQtest {
protected:
    void SetUp() override {
        NamespaceOptions o;
        o.lba_size = 4096;
        SetUpTarget(ZonedImageSpec{}, o);
        ConnectAndEnable();
    }
};

TEST_F(Zns4k, FourKibLbaFormat) {
    Completion id = admin_->RunC2h(Identify(0x00, zns_nsid()), 4096);
    EXPECT_EQ(R8(id.data, 128 + 2), 12);
    EXPECT_EQ(R64(id.data, 0), 14u * 256);
    Completion z = admin_->RunC2h(Identify(0x05, zns_nsid(), 2), 4096);
    EXPECT_EQ(R64(z.data, 2816), 256u);
    Completion a = Io().Run(Rw(0x7d, zns_nsid(), 256, 2).sgl(8192), Pattern(8192, 1));
    ASSERT_EQ(a.status(), 0);
    EXPECT_EQ(a.result64(), 256u);
    Completion r = Io().RunC2h(Rw(0x02, zns_nsid(), 256, 2).sgl(8192), 8192);
    EXPECT_EQ(r.data, Pattern(8192, 1));
    Completion rep = Io().RunC2h(ZoneRecv(zns_nsid(), 256, 128, 0, 0, true), 128);
    EXPECT_EQ(R64(rep.data, 64 + 8), 192u) << "zcap in 4 KiB LBAs";
    EXPECT_EQ(R64(rep.data, 64 + 24), 258u);
}

}  // namespace
}  // namespace qzns::nvme::qtest
