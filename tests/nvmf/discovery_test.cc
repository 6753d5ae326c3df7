// The discovery controller, byte-exact: Connect rules, the enable/shutdown property sequence,
// Identify Controller as Linux 6.1 checks a discovery controller, the Discovery Log Page (70h)
// header and entries read whole and in libnvme's pieces, host filtering, Discovery Log Page
// Change events, keep-alive teardown, the I/O port's routing of the discovery NQN, and one run
// over real NVMe/TCP sockets.
#include <gtest/gtest.h>

#include <thread>

#include "hw/nvme/discovery.h"
#include "nvmf/tcp/server.h"
#include "tests/nvmf/tcp-client.h"
#include "tests/qtest/nvme-qtest.h"

namespace qzns::nvme::qtest {
namespace {

constexpr char kDisc[] = "nqn.2014-08.org.nvmexpress.discovery";
constexpr char kNqnA[] = "nqn.2026-11.io.qzns:zns0";
constexpr char kNqnB[] = "nqn.2026-11.io.qzns:zns1";
constexpr char kOtherHost[] = "nqn.2014-08.org.example:other";

std::string Str(const std::vector<uint8_t>& b, size_t off, size_t len) {
    std::string s(reinterpret_cast<const char*>(b.data()) + off, len);
    return s.substr(0, s.find('\0'));
}
bool ZeroFrom(const std::vector<uint8_t>& b, size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        if (b[i]) return false;
    return true;
}

class Discovery : public ::testing::Test {
protected:
    void SetUp() override {
        DiscoveryOptions o;
        o.kato_grace_ms = 50;
        target_ = std::make_unique<DiscoveryTarget>(o);
        DiscoveryRecord a{kNqnA, "127.0.0.1", 4420, 1, {}};
        DiscoveryRecord b{kNqnB, "::1", 4421, 2, {kHostNqn}};
        target_->SetRecords({a, b});
    }

    // Connect (KATO in ms) and the Linux enable sequence; returns the CNTLID.
    uint16_t ConnectAndEnable(HostQueue& q, uint32_t kato = 0, const std::string& host = kHostNqn) {
        Completion c = q.Run(Connect(0, 31, kato), ConnectData(0xffff, kDisc, host));
        EXPECT_EQ(c.status(), 0);
        uint64_t cap = q.Run(PropertyGet(0x00, true)).result64();
        uint32_t css = (cap >> 43) & 1 ? 6 : 0;
        EXPECT_EQ(q.Run(PropertySet(0x14, (6u << 16) | (4u << 20) | (css << 4))).status(), 0);
        EXPECT_EQ(q.Run(PropertySet(0x14, (6u << 16) | (4u << 20) | (css << 4) | 1)).status(), 0);
        EXPECT_EQ(q.Run(PropertyGet(0x1c, false)).dw0() & 3, 1u) << "RDY without CFS";
        return uint16_t(c.dw0());
    }

    std::vector<uint8_t> Log(HostQueue& q, uint32_t bytes, uint64_t offset = 0, bool rae = false,
                             uint16_t* status = nullptr) {
        Completion c = q.RunC2h(GetLogPage(0x70, bytes, 0, 0, rae, offset), bytes);
        if (status) *status = c.status();
        else EXPECT_EQ(c.status(), 0);
        return c.data;
    }

    std::unique_ptr<DiscoveryTarget> target_;
};

TEST_F(Discovery, ConnectRules) {
    HostQueue q(*target_);
    Completion c = q.Run(Connect(0, 31, 0), ConnectData(0xffff, kNqnA));
    EXPECT_EQ(c.sc(), 0x182) << "an NVM subsystem NQN on the discovery target";
    EXPECT_EQ(c.dw0(), 0x10100u) << "IPO: SUBNQN in the data";
    c = q.Run(Connect(1, 31, 0), ConnectData(0xffff, kDisc));
    EXPECT_EQ(c.sc(), 0x182) << "a discovery controller has no I/O queues";
    EXPECT_EQ(c.dw0(), 42u);
    c = q.Run(Connect(0, 31, 0), ConnectData(7, kDisc));
    EXPECT_EQ(c.dw0(), 0x10010u) << "static CNTLID";
    c = q.Run(Connect(0, 0, 0), ConnectData(0xffff, kDisc));
    EXPECT_EQ(c.dw0(), 44u) << "SQSIZE 0";
    c = q.Run(Connect(0, 31, 0).u16(40, 1), ConnectData(0xffff, kDisc));
    EXPECT_EQ(c.sc(), 0x180) << "RECFMT";
    EXPECT_EQ(q.RunC2h(Identify(1), 4096).sc(), 0x00c) << "before Connect";
    c = q.Run(Connect(0, 31, 0), ConnectData(0xffff, kDisc));
    ASSERT_EQ(c.status(), 0);
    EXPECT_NE(c.dw0() & 0xffff, 0xffffu);
    EXPECT_EQ(c.dw0() >> 16, 0u) << "AUTHREQ must stay 0";
    EXPECT_EQ(q.RunC2h(Identify(1), 4096).sc(), 0x00c) << "before CC.EN / CSTS.RDY";
    EXPECT_EQ(q.Run(Connect(0, 31, 0), ConnectData(0xffff, kDisc)).sc(), 0x00c) << "second Connect";
    // Two associations get distinct controller IDs.
    HostQueue q2(*target_);
    Completion c2 = q2.Run(Connect(0, 31, 0), ConnectData(0xffff, kDisc));
    ASSERT_EQ(c2.status(), 0);
    EXPECT_NE(c2.dw0(), c.dw0());
    EXPECT_EQ(target_->controller_count(), 2u);
    q2.Disconnect();
    EXPECT_EQ(target_->controller_count(), 1u);
}

TEST_F(Discovery, PropertiesEnableAndShutdown) {
    HostQueue q(*target_);
    ASSERT_EQ(q.Run(Connect(0, 31, 0), ConnectData(0xffff, kDisc)).status(), 0);
    uint64_t cap = q.Run(PropertyGet(0x00, true)).result64();
    EXPECT_GE(cap & 0xffff, 31u) << "MQES admits the host's 32-entry admin queue";
    EXPECT_NE((cap >> 24) & 0xff, 0u) << "CAP.TO";
    EXPECT_EQ((cap >> 37) & 0xff, 1u) << "CSS: NVM only";
    EXPECT_EQ((cap >> 48) & 0xf, 0u) << "MPSMIN 4 KiB";
    EXPECT_EQ(q.Run(PropertyGet(0x00, false)).dw0(), uint32_t(cap));
    EXPECT_EQ(q.Run(PropertyGet(0x04, false)).dw0(), uint32_t(cap >> 32));
    EXPECT_EQ(q.Run(PropertyGet(0x08, false)).dw0(), 0x00010300u) << "VS 1.3";
    EXPECT_EQ(q.Run(PropertyGet(0x1c, false)).dw0(), 0u);
    EXPECT_EQ(q.Run(PropertyGet(0x24, false)).sc(), 0x002) << "AQA is not a fabrics property";
    EXPECT_EQ(q.Run(PropertySet(0x1c, 1)).sc(), 0x002) << "CSTS is read-only";
    // Bad IOSQES: Controller Fatal Status instead of RDY (nvmet does the same).
    ASSERT_EQ(q.Run(PropertySet(0x14, (7u << 16) | (4u << 20) | 1)).status(), 0);
    EXPECT_EQ(q.Run(PropertyGet(0x1c, false)).dw0() & 3, 2u);
    ASSERT_EQ(q.Run(PropertySet(0x14, 0)).status(), 0);
    EXPECT_EQ(q.Run(PropertyGet(0x1c, false)).dw0(), 0u);
    ASSERT_EQ(q.Run(PropertySet(0x14, (6u << 16) | (4u << 20) | 1)).status(), 0);
    EXPECT_EQ(q.Run(PropertyGet(0x14, false)).dw0(), (6u << 16) | (4u << 20) | 1);
    EXPECT_EQ(q.Run(PropertyGet(0x1c, false)).dw0(), 1u);
    // nvme disconnect: CC.SHN = 01b, then poll CSTS.SHST = 10b.
    ASSERT_EQ(q.Run(PropertySet(0x14, (6u << 16) | (4u << 20) | (1u << 14) | 1)).status(), 0);
    EXPECT_EQ((q.Run(PropertyGet(0x1c, false)).dw0() >> 2) & 3, 2u);
}

TEST_F(Discovery, IdentifyControllerAsLinuxChecksIt) {
    HostQueue q(*target_);
    uint16_t cntlid = ConnectAndEnable(q);
    Completion c = q.RunC2h(Identify(1), 4096);
    ASSERT_EQ(c.status(), 0);
    ASSERT_EQ(c.c2h_len, 4096u);
    const auto& id = c.data;
    EXPECT_EQ(R16(id, 78), cntlid) << "CNTLID must match Connect (\"Mismatching cntlid\")";
    EXPECT_EQ(R8(id, 111), 2) << "CNTRLTYPE: discovery controller";
    EXPECT_EQ(Str(id, 768, 256), kDisc) << "SUBNQN must equal the NQN connected to";
    EXPECT_EQ(R32(id, 80), 0x00010300u) << "VER matches VS";
    EXPECT_NE(R16(id, 320), 0) << "KAS";
    EXPECT_GE(R16(id, 514), 32) << "MAXCMD >= admin queue size";
    EXPECT_EQ(R8(id, 512), 0x66);
    EXPECT_EQ(R8(id, 513), 0x44);
    EXPECT_NE(R32(id, 536) & 3, 0u) << "SGLS";
    EXPECT_EQ(R32(id, 92) >> 31, 1u) << "OAES: Discovery Log Page Change notices";
    EXPECT_EQ(R8(id, 76) & 8, 0) << "no ANA (would need LID 0Ch)";
    EXPECT_EQ(R8(id, 261) & 2, 0) << "no effects log: the host would then ask for LID 05h";
    EXPECT_EQ(R16(id, 520) & 0x40, 0) << "no Timestamp feature";
    EXPECT_EQ(R16(id, 1800), 0) << "ICDOFF";
    EXPECT_EQ(R32(id, 516), 0u) << "no namespaces";
    EXPECT_EQ(Str(id, 4, 20).find_first_not_of(' '), 0u) << "serial number is ASCII";
    // nvmet's discovery controller refuses every other CNS (Linux tolerates the error).
    EXPECT_EQ(q.RunC2h(Identify(6, 0, 0), 4096).sc(), 0x002);
    EXPECT_EQ(q.RunC2h(Identify(2), 4096).sc(), 0x002);
    // Commands a discovery controller does not implement.
    EXPECT_EQ(q.Run(Cmd(0x01).cdw(10, 1)).sc(), 0x001) << "Create I/O SQ";
    EXPECT_EQ(q.Run(Cmd(0x18)).status(), 0) << "Keep Alive";
}

TEST_F(Discovery, LogPageBytes) {
    HostQueue q(*target_);
    ConnectAndEnable(q);
    const uint64_t gen = target_->genctr();
    EXPECT_GT(gen, 0u);
    std::vector<uint8_t> page = Log(q, 3 * 1024);
    ASSERT_EQ(page.size(), 3u * 1024);
    EXPECT_EQ(R64(page, 0), gen) << "GENCTR";
    EXPECT_EQ(R64(page, 8), 2u) << "NUMREC";
    EXPECT_EQ(R16(page, 16), 0u) << "RECFMT";
    EXPECT_TRUE(ZeroFrom(page, 18, 1024));
    struct Want {
        uint8_t adrfam;
        uint16_t portid;
        const char* trsvcid;
        const char* subnqn;
        const char* traddr;
    } want[] = {{1, 1, "4420", kNqnA, "127.0.0.1"}, {2, 2, "4421", kNqnB, "::1"}};
    for (size_t i = 0; i < 2; i++) {
        const size_t e = 1024 * (i + 1);
        SCOPED_TRACE("entry " + std::to_string(i));
        EXPECT_EQ(R8(page, e + 0), 3) << "TRTYPE TCP";
        EXPECT_EQ(R8(page, e + 1), want[i].adrfam) << "ADRFAM";
        EXPECT_EQ(R8(page, e + 2), 2) << "SUBTYPE NVM subsystem";
        EXPECT_EQ(R8(page, e + 3), 2) << "TREQ: secure channel not required";
        EXPECT_EQ(R16(page, e + 4), want[i].portid) << "PORTID";
        EXPECT_EQ(R16(page, e + 6), 0xffff) << "CNTLID: dynamic";
        EXPECT_EQ(R16(page, e + 8), 32) << "ASQSZ";
        EXPECT_EQ(R16(page, e + 10), 0) << "EFLAGS";
        EXPECT_TRUE(ZeroFrom(page, e + 12, e + 32));
        EXPECT_EQ(Str(page, e + 32, 32), want[i].trsvcid);
        EXPECT_TRUE(ZeroFrom(page, e + 32 + strlen(want[i].trsvcid), e + 256)) << "TRSVCID NUL padded, rsvd";
        EXPECT_EQ(Str(page, e + 256, 256), want[i].subnqn);
        EXPECT_TRUE(ZeroFrom(page, e + 256 + strlen(want[i].subnqn), e + 512));
        EXPECT_EQ(Str(page, e + 512, 256), want[i].traddr);
        EXPECT_TRUE(ZeroFrom(page, e + 512 + strlen(want[i].traddr), e + 768));
        EXPECT_EQ(R8(page, e + 768), 0) << "TSAS SECTYPE none";
        EXPECT_TRUE(ZeroFrom(page, e + 768, e + 1024));
    }
    EXPECT_EQ(page, target_->LogPage(kHostNqn)) << "the target's own rendering";
}

TEST_F(Discovery, LogPageInLibnvmePieces) {
    // libnvme 1.3 reads the header (RAE set), the entries at LPO 1024, then the header again
    // and retries while GENCTR moved; each piece may be split into 4 KiB transfers.
    HostQueue q(*target_);
    ConnectAndEnable(q);
    std::vector<uint8_t> hdr = Log(q, 1024, 0, true);
    ASSERT_EQ(R64(hdr, 8), 2u);
    std::vector<uint8_t> entries = Log(q, 2048, 1024, true);
    EXPECT_EQ(Str(entries, 256, 256), kNqnA);
    EXPECT_EQ(Str(entries, 1024 + 256, 256), kNqnB);
    std::vector<uint8_t> second = Log(q, 512, 1024 + 512, true);
    EXPECT_EQ(Str(second, 0, 256), "127.0.0.1") << "LPO inside an entry";
    std::vector<uint8_t> again = Log(q, 1024);
    EXPECT_EQ(R64(again, 0), R64(hdr, 0));
    // Past the end: zeros; an offset beyond the page or not dword aligned: Invalid Field.
    std::vector<uint8_t> tail = Log(q, 4096, 2048);
    EXPECT_EQ(Str(tail, 256, 256), kNqnB);
    EXPECT_TRUE(ZeroFrom(tail, 1024, 4096));
    uint16_t st = 0;
    Log(q, 1024, 8192, false, &st);
    EXPECT_EQ(st & 0x7ff, 0x002);
    Log(q, 1024, 2, false, &st);
    EXPECT_EQ(st & 0x7ff, 0x002);
    // Other log pages are not there (LID 02h SMART, LID 05h effects).
    EXPECT_EQ(q.RunC2h(GetLogPage(0x02, 512), 512).sc(), 0x109);
    EXPECT_EQ(q.RunC2h(GetLogPage(0x05, 4096, 0), 4096).sc(), 0x109);
    // A data buffer shorter than NUMD says.
    EXPECT_EQ(q.RunC2h(GetLogPage(0x70, 2048, 0), 1024).sc(), 0x00f);
}

TEST_F(Discovery, RecordsFilteredByHost) {
    HostQueue q(*target_);
    ConnectAndEnable(q, 0, kOtherHost);
    std::vector<uint8_t> page = Log(q, 2048);
    EXPECT_EQ(R64(page, 8), 1u) << "zns1 allows only kHostNqn";
    EXPECT_EQ(Str(page, 1024 + 256, 256), kNqnA);
    EXPECT_TRUE(ZeroFrom(page, 1024 + 1024, 2048));
}

TEST_F(Discovery, EmptyLogAndGenerationCounter) {
    HostQueue q(*target_);
    ConnectAndEnable(q);
    uint64_t gen = target_->genctr();
    target_->SetRecords({DiscoveryRecord{kNqnA, "127.0.0.1", 4420, 1, {}},
                         DiscoveryRecord{kNqnB, "::1", 4421, 2, {kHostNqn}}});
    EXPECT_EQ(target_->genctr(), gen) << "an identical record set is no change";
    target_->SetRecords({});
    EXPECT_EQ(target_->genctr(), gen + 1);
    std::vector<uint8_t> page = Log(q, 1024);
    EXPECT_EQ(R64(page, 0), gen + 1);
    EXPECT_EQ(R64(page, 8), 0u);
}

TEST_F(Discovery, LogChangeEvent) {
    HostQueue q(*target_);
    ConnectAndEnable(q);
    // Linux enables the notices OAES advertises (Set Features 0Bh), then posts an AER.
    EXPECT_EQ(q.Run(SetFeatures(0x0b, 1u << 31)).status(), 0);
    EXPECT_EQ(q.Run(GetFeatures(0x0b)).dw0(), 1u << 31);
    auto aer = q.Start(Cmd(0x0c));
    EXPECT_FALSE(aer->Wait(std::chrono::milliseconds(50)));
    target_->SetRecords({DiscoveryRecord{kNqnA, "127.0.0.1", 4420, 1, {}}});
    ASSERT_TRUE(aer->Wait());
    Completion c = aer->Get();
    EXPECT_EQ(c.status(), 0);
    EXPECT_EQ(c.dw0(), 0x0070f002u) << "Notice, Discovery Log Page Change, LID 70h";
    // Masked until the host reads the log with RAE clear.
    auto aer2 = q.Start(Cmd(0x0c));
    target_->SetRecords({});
    EXPECT_FALSE(aer2->Wait(std::chrono::milliseconds(50)));
    Log(q, 1024, 0, true);
    target_->SetRecords({DiscoveryRecord{kNqnB, "::1", 4421, 2, {}}});
    EXPECT_FALSE(aer2->Wait(std::chrono::milliseconds(50))) << "RAE kept the event asserted";
    Log(q, 1024);
    target_->SetRecords({});
    ASSERT_TRUE(aer2->Wait());
    EXPECT_EQ(aer2->Get().dw0(), 0x0070f002u);
    // At most four AERs outstanding; the rest end with AER Limit Exceeded.
    std::vector<std::shared_ptr<Pending>> held;
    for (int i = 0; i < 4; i++) held.push_back(q.Start(Cmd(0x0c)));
    EXPECT_EQ(q.Run(Cmd(0x0c)).sc(), 0x105);
    // Disconnect completes them (the transport must get every buffer back).
    q.Disconnect();
    for (auto& p : held) {
        ASSERT_TRUE(p->Wait());
        EXPECT_EQ(p->Get().sc(), 0x008);
    }
}

TEST_F(Discovery, KeepAliveTimeoutTearsDown) {
    HostQueue q(*target_);
    ConnectAndEnable(q, 300);
    EXPECT_EQ(q.Run(GetFeatures(0x0f)).dw0(), 300u) << "KATO from Connect";
    auto aer = q.Start(Cmd(0x0c));
    for (int i = 0; i < 4; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ASSERT_EQ(q.Run(Cmd(0x18)).status(), 0) << "Keep Alive keeps it alive";
    }
    EXPECT_FALSE(q.close_requested());
    for (int i = 0; i < 300 && !q.close_requested(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(q.close_requested()) << "KATO + grace passed without a command";
    ASSERT_TRUE(aer->Wait());
    EXPECT_EQ(aer->Get().sc(), 0x008);
    // As on an NVM subsystem's controller (the same code): the association's queues are gone.
    EXPECT_EQ(q.RunC2h(Identify(1), 4096).sc(), 0x008) << "no commands after teardown";
    EXPECT_EQ(target_->controller_count(), 0u);
}

TEST_F(Discovery, KatoZeroNeverExpires) {
    HostQueue q(*target_);
    ConnectAndEnable(q, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    target_->CheckKeepAlive();
    EXPECT_FALSE(q.close_requested());
}

// The I/O port answers the discovery NQN too (as nvmet does); other NQNs reach the NVM target.
class PortRouting : public NvmeQtest {};

TEST_F(PortRouting, DiscoveryNqnOnTheIoPort) {
    DiscoveryTarget disc;
    disc.SetRecords({DiscoveryRecord{kSubNqn, "127.0.0.1", 4420, 1, {}}});
    PortTarget port(target_.get(), &disc);
    {
        HostQueue d(port);
        ASSERT_EQ(d.Run(Connect(0, 31, 0), ConnectData(0xffff, kDisc)).status(), 0);
        ASSERT_EQ(d.Run(PropertySet(0x14, (6u << 16) | (4u << 20) | 1)).status(), 0);
        Completion id = d.RunC2h(Identify(1), 4096);
        ASSERT_EQ(id.status(), 0);
        EXPECT_EQ(R8(id.data, 111), 2);
        Completion log = d.RunC2h(GetLogPage(0x70, 2048, 0), 2048);
        ASSERT_EQ(log.status(), 0);
        EXPECT_EQ(R64(log.data, 8), 1u);
        EXPECT_EQ(Str(log.data, 1024 + 256, 256), kSubNqn);
    }
    HostQueue n(port);
    Completion c = n.Run(Connect(0, 31, 5000), ConnectData(0xffff));
    ASSERT_EQ(c.status(), 0);
    ASSERT_EQ(n.Run(PropertySet(0x14, (6u << 16) | (4u << 20) | (6u << 4) | 1)).status(), 0);
    Completion id = n.RunC2h(Identify(1), 4096);
    EXPECT_EQ(R8(id.data, 111), 1) << "the NVM subsystem's I/O controller";
    EXPECT_EQ(Str(id.data, 768, 256), kSubNqn);
    // A first command that is not a Connect goes to the NVM target, which refuses it.
    HostQueue x(port);
    EXPECT_EQ(x.RunC2h(Identify(1), 4096).sc(), 0x00c);
}

}  // namespace
}  // namespace qzns::nvme::qtest

// ---- over NVMe/TCP ----
namespace qzns::nvmf::testing {
namespace {

constexpr uint8_t kOpIdentify = 0x06, kOpFabrics = 0x7f;
constexpr uint8_t kFctypeConnect = 0x01, kFctypePropGet = 0x04, kFctypePropSet = 0x00;

TEST(DiscoveryOverTcp, NvmeDiscoverSequence) {
    nvme::DiscoveryTarget disc;
    disc.SetRecords({nvme::DiscoveryRecord{"nqn.2026-11.io.qzns:zns0", "127.0.0.1", 4420, 1, {}}});
    tcp::TcpServerOptions o;
    o.addr = "127.0.0.1";
    o.port = 0;
    o.target = &disc;
    o.transport.log = [](std::string_view) {};
    auto server = tcp::TcpServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status().message();
    TestClient c;
    ASSERT_TRUE(c.Connect((*server)->port()));
    ASSERT_TRUE(c.Handshake(true, true)) << "with both digests, as nvme discover -g -G";
    uint16_t cid = 1;
    // Returns {CQE status, DW0, data}.
    auto run = [&](std::vector<uint8_t> sqe, const std::vector<uint8_t>& icd = {}) {
        std::vector<uint8_t> data;
        EXPECT_TRUE(c.SendCapsule(sqe, icd));
        for (;;) {
            std::string err;
            auto p = c.RecvPdu(&err);
            if (!p) {
                ADD_FAILURE() << err;
                return std::make_tuple(uint16_t(0xffff), uint32_t(0), data);
            }
            if (p->type() == 0x07) {
                data.insert(data.end(), p->data.begin(), p->data.end());
                if (p->flags() & 0x08) return std::make_tuple(uint16_t(0), uint32_t(0), data);
                continue;
            }
            EXPECT_EQ(p->type(), 0x05);
            return std::make_tuple(uint16_t(Get16(&p->hdr[8 + 14]) >> 1), Get32(&p->hdr[8]), data);
        }
    };
    std::vector<uint8_t> connect = MakeSqe(kOpFabrics, cid++, Sgl::kInCapsule, 1024, 0, 0, kFctypeConnect);
    Put16(&connect[44], 31);
    std::vector<uint8_t> cd(1024, 0);
    Put16(&cd[16], 0xffff);
    std::memcpy(&cd[256], "nqn.2014-08.org.nvmexpress.discovery", 36);
    std::memcpy(&cd[512], "nqn.2014-08.org.nvmexpress:uuid:1", 33);
    auto [st, dw0, d0] = run(connect, cd);
    ASSERT_EQ(st, 0);
    std::vector<uint8_t> set = MakeSqe(kOpFabrics, cid++, Sgl::kNone, 0, 0, 0, kFctypePropSet);
    Put32(&set[44], 0x14);
    Put32(&set[48], (6u << 16) | (4u << 20) | 1);
    ASSERT_EQ(std::get<0>(run(set)), 0);
    std::vector<uint8_t> get = MakeSqe(kOpFabrics, cid++, Sgl::kNone, 0, 0, 0, kFctypePropGet);
    Put32(&get[44], 0x1c);
    auto [st2, csts, d2] = run(get);
    ASSERT_EQ(st2, 0);
    EXPECT_EQ(csts & 1, 1u);
    std::vector<uint8_t> ident = MakeSqe(kOpIdentify, cid++, Sgl::kTransport, 4096, 1);
    auto [st3, dw3, id] = run(ident);
    ASSERT_EQ(st3, 0);
    ASSERT_EQ(id.size(), 4096u);
    EXPECT_EQ(id[111], 2);
    EXPECT_EQ(Get16(&id[78]), uint16_t(dw0));
    // Get Log Page 70h, 2 KiB: NUMDL = 511 in CDW10[31:16].
    std::vector<uint8_t> glp = MakeSqe(0x02, cid++, Sgl::kTransport, 2048);
    Put32(&glp[40], 0x70 | (511u << 16));
    auto [st4, dw4, log] = run(glp);
    ASSERT_EQ(st4, 0);
    ASSERT_EQ(log.size(), 2048u);
    EXPECT_EQ(Get32(&log[8]), 1u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(&log[1024 + 32])), "4420");
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(&log[1024 + 256])), "nqn.2026-11.io.qzns:zns0");
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(&log[1024 + 512])), "127.0.0.1");
    (*server)->Stop();
}

}  // namespace
}  // namespace qzns::nvmf::testing
