// Admin and fabrics commands, byte-exact: Connect / Property errors, Identify variants and
// their errors, log pages, features, AER limits and Abort, keep-alive timeout teardown, the
// I/O command set selection, and the PCI register / queue-creation hooks.
#include <thread>

#include "tests/qtest/nvme-qtest.h"

namespace qzns::nvme::qtest {
namespace {

class Admin : public NvmeQtest {};

TEST_F(Admin, ConnectErrors) {
    HostQueue q(*target_);
    Completion c = q.Run(Connect(0, 31, 0), ConnectData(0xffff, "nqn.2026-11.io.qzns:nope"));
    EXPECT_EQ(c.sc(), 0x182);
    EXPECT_TRUE(c.dnr());
    EXPECT_EQ(c.dw0(), 0x10100u) << "IATTR data, IPO 256 (SUBNQN)";
    c = q.Run(Connect(0, 31, 0).u16(40, 1), ConnectData(0xffff));
    EXPECT_EQ(c.sc(), 0x180) << "RECFMT != 0";
    c = q.Run(Connect(0, 0, 0), ConnectData(0xffff));
    EXPECT_EQ(c.sc(), 0x182);
    EXPECT_EQ(c.dw0(), 44u) << "IPO SQSIZE in the SQE";
    c = q.Run(Connect(0, 31, 0), ConnectData(5));
    EXPECT_EQ(c.dw0(), 0x10010u) << "static CNTLID refused (IPO 16)";
    c = q.Run(Connect(0, 31, 0), std::vector<uint8_t>(512, 0));
    EXPECT_EQ(c.sc(), 0x00f) << "Connect data shorter than 1024 bytes";
    // Commands before Connect.
    EXPECT_EQ(q.RunC2h(Identify(1), 4096).sc(), 0x00c);
    EXPECT_EQ(q.Run(PropertyGet(0, true)).sc(), 0x00c);
    // I/O queue naming an unknown controller / wrong host / bad QID.
    c = q.Run(Connect(1, 127, 0), ConnectData(0x1234));
    EXPECT_EQ(c.dw0(), 0x10010u);
    uint16_t id = ConnectAndEnable();
    HostQueue io(*target_);
    c = io.Run(Connect(1, 127, 0), ConnectData(id, kSubNqn, "nqn.2014-08.org.example:other"));
    EXPECT_EQ(c.dw0(), 0x10200u) << "HOSTNQN mismatch";
    c = io.Run(Connect(65, 127, 0), ConnectData(id));
    EXPECT_EQ(c.dw0(), 42u) << "QID beyond the controller's queues";
    c = io.Run(Connect(1, 1024, 0), ConnectData(id));
    EXPECT_EQ(c.dw0(), 44u) << "SQSIZE > MQES";
    ASSERT_EQ(io.Run(Connect(1, 127, 0), ConnectData(id)).status(), 0);
    EXPECT_EQ(io.Run(Connect(1, 127, 0), ConnectData(id)).sc(), 0x00c) << "second Connect on a queue";
    HostQueue io2(*target_);
    EXPECT_EQ(io2.Run(Connect(1, 127, 0), ConnectData(id)).sc(), 0x00c) << "QID already connected";
    // Fabrics commands on an I/O queue / unknown FCTYPE.
    EXPECT_EQ(io.Run(PropertyGet(0, true)).sc(), 0x001);
    EXPECT_EQ(admin_->Run(Cmd(0x7f).u8(4, 0x0b)).sc(), 0x001);
    // Disconnect names an I/O queue; afterwards that queue takes no commands.
    EXPECT_EQ(admin_->Run(Cmd(0x7f).u8(4, 0x08)).sc(), 0x002);
    EXPECT_EQ(io.Run(Cmd(0x7f).u8(4, 0x08)).status(), 0);
    EXPECT_EQ(io.Run(Cmd(0x00).nsid(1)).sc(), 0x00c);
}

TEST_F(Admin, HostAllowList) {
    SubsystemConfig cfg;
    cfg.nqn = "nqn.2026-11.io.qzns:locked";
    cfg.allow_any_host = false;
    cfg.allowed_hosts = {"nqn.2014-08.org.example:good"};
    auto s = Subsystem::Create(cfg);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(target_->AddSubsystem(*s).ok());
    HostQueue q(*target_);
    Completion c = q.Run(Connect(0, 31, 0), ConnectData(0xffff, cfg.nqn, kHostNqn));
    EXPECT_EQ(c.sc(), 0x184);
    EXPECT_EQ(c.dw0(), 0x10200u);
    EXPECT_EQ(q.Run(Connect(0, 31, 0), ConnectData(0xffff, cfg.nqn, "nqn.2014-08.org.example:good")).status(), 0);
}

TEST_F(Admin, PropertiesAndEnableChecks) {
    HostQueue q(*target_);
    ASSERT_EQ(q.Run(Connect(0, 31, 0), ConnectData(0xffff)).status(), 0);
    EXPECT_EQ(q.Run(PropertyGet(0x14, true)).sc(), 0x002) << "CC is 4 bytes";
    EXPECT_EQ(q.Run(PropertyGet(0x24, false)).sc(), 0x002) << "AQA is not a fabrics property";
    EXPECT_EQ(q.Run(PropertySet(0x1c, 0)).sc(), 0x002) << "CSTS is read only";
    EXPECT_EQ(q.Run(PropertySet(0x14, 0).u8(40, 1)).sc(), 0x002);
    EXPECT_EQ(q.RunC2h(Identify(1), 4096).sc(), 0x00c) << "admin commands before CC.EN";
    // Wrong queue entry sizes: CFS instead of RDY.
    ASSERT_EQ(q.Run(PropertySet(0x14, (7u << 16) | (4u << 20) | 1)).status(), 0);
    EXPECT_EQ(q.Run(PropertyGet(0x1c, false)).dw0() & 3, 2u);
    // Reset (EN=0) then a good enable.
    ASSERT_EQ(q.Run(PropertySet(0x14, 0)).status(), 0);
    ASSERT_EQ(q.Run(PropertySet(0x14, (6u << 16) | (4u << 20) | 1)).status(), 0);
    EXPECT_EQ(q.Run(PropertyGet(0x1c, false)).dw0() & 3, 1u);
}

// Doorbell Buffer Config is a PCI-only command: a fabrics controller neither advertises it
// (OACS bit 8) nor accepts it.
TEST_F(Admin, FabricsControllerHasNoDoorbellBufferConfig) {
    ConnectAndEnable();
    Completion id = admin_->RunC2h(Identify(1), 4096);
    ASSERT_EQ(id.status(), 0);
    EXPECT_EQ(R16(id.data, 256) & 0x100, 0) << "OACS bit 8 over NVMe/TCP";
    Completion c = admin_->Run(Cmd(0x7c).u64(24, 0x10000).u64(32, 0x11000));
    EXPECT_EQ(c.sc(), 0x001) << "Invalid Command Opcode";
    EXPECT_TRUE(c.dnr());
    Completion log = admin_->RunC2h(GetLogPage(0x05, 4096, 0, 0), 4096);
    ASSERT_EQ(log.status(), 0);
    EXPECT_EQ(R32(log.data, 4 * 0x7c), 0u) << "Commands Supported and Effects lists 7Ch over NVMe/TCP";
}

TEST_F(Admin, NvmOnlyCommandSetHidesZonedNamespace) {
    ConnectAndEnable(5000, /*css=*/0);
    Completion c = admin_->RunC2h(Identify(0x02, 0), 4096);
    EXPECT_EQ(R32(c.data, 0), conv_nsid());
    EXPECT_EQ(R32(c.data, 4), 0u);
    c = admin_->RunC2h(Identify(0x00, zns_nsid()), 4096);
    EXPECT_EQ(c.status(), 0);
    EXPECT_EQ(c.data, std::vector<uint8_t>(4096, 0)) << "inactive NSID reads as zeros";
    EXPECT_EQ(Io().Run(Cmd(0x00).nsid(zns_nsid())).sc(), 0x00b);
}

TEST_F(Admin, IoCommandSetProfile) {
    ConnectAndEnable();
    Completion c = admin_->RunC2h(Identify(0x1c), 4096);
    ASSERT_EQ(c.status(), 0);
    EXPECT_EQ(R64(c.data, 0), 0x5u) << "vector 0: NVM + ZNS";
    EXPECT_EQ(R64(c.data, 8), 0x1u);
    EXPECT_EQ(admin_->Run(GetFeatures(0x19)).dw0(), 0u);
    EXPECT_EQ(admin_->Run(SetFeatures(0x19, 2)).sc(), 0x12b);
    ASSERT_EQ(admin_->Run(SetFeatures(0x19, 1)).status(), 0);
    c = admin_->RunC2h(Identify(0x02, 0), 4096);
    EXPECT_EQ(R32(c.data, 0), conv_nsid()) << "profile 1: NVM only";
    ASSERT_EQ(admin_->Run(SetFeatures(0x19, 0)).status(), 0);
    c = admin_->RunC2h(Identify(0x07, 0, 2), 4096);
    EXPECT_EQ(R32(c.data, 0), zns_nsid());
    EXPECT_EQ(R32(c.data, 4), 0u);
}

TEST_F(Admin, IdentifyVariantsAndErrors) {
    ConnectAndEnable();
    EXPECT_EQ(admin_->RunC2h(Identify(0x00, 0), 4096).sc(), 0x00b);
    EXPECT_EQ(admin_->RunC2h(Identify(0x00, 300), 4096).sc(), 0x00b);
    EXPECT_EQ(admin_->RunC2h(Identify(0x00, 7), 4096).data, std::vector<uint8_t>(4096, 0));
    EXPECT_EQ(admin_->RunC2h(Identify(0x03, 7), 4096).sc(), 0x00b);
    EXPECT_EQ(admin_->RunC2h(Identify(0x02, 0xffffffff), 4096).sc(), 0x00b);
    EXPECT_EQ(admin_->RunC2h(Identify(0x05, zns_nsid(), 1), 4096).sc(), 0x002) << "unknown CSI";
    EXPECT_EQ(admin_->RunC2h(Identify(0x05, conv_nsid(), 2), 4096).sc(), 0x002) << "CSI of another set";
    EXPECT_EQ(admin_->RunC2h(Identify(0x06, 0, 1), 4096).sc(), 0x002);
    EXPECT_EQ(admin_->RunC2h(Identify(0x13), 4096).sc(), 0x002);
    Completion c = admin_->RunC2h(Identify(0x02, 1), 4096);
    EXPECT_EQ(R32(c.data, 0), 2u) << "list starts after the given NSID";
    c = admin_->RunC2h(Identify(0x08, zns_nsid()), 4096);
    EXPECT_EQ(R8(c.data, 1), 0) << "NMIC: not shared (no multipath head, see SubsystemConfig)";
    EXPECT_EQ(R8(c.data, 14), 1) << "NSTAT ready";
    c = admin_->RunC2h(Identify(0x04), 4096);
    EXPECT_EQ(c.data, std::vector<uint8_t>(4096, 0));
    c = admin_->RunC2h(Identify(0x05, zns_nsid(), 2), 4096);
    EXPECT_EQ(R16(c.data, 2) & 1, 1) << "RAZB";
    EXPECT_EQ(R8(c.data, 2816 + 8), 1) << "ZDES: one 64-byte unit";
    c = admin_->RunC2h(Identify(0x06, 0, 2), 4096);
    EXPECT_EQ(R8(c.data, 0), 4) << "ZASL 4: 4 KiB << 4 = 64 KiB (the image's max append)";
    // A short buffer is an SGL length error.
    EXPECT_EQ(admin_->RunC2h(Identify(0x01).sgl(2048), 2048).sc(), 0x00f);
}

TEST_F(Admin, LogPages) {
    ConnectAndEnable();
    // Error log: a failed command leaves an entry, newest first.
    Completion bad = admin_->RunC2h(Identify(0x13).cid(0x77), 4096);
    ASSERT_EQ(bad.sc(), 0x002);
    Completion c = admin_->RunC2h(GetLogPage(0x01, 128), 128);
    ASSERT_EQ(c.status(), 0);
    EXPECT_GE(R64(c.data, 0), 1u);
    EXPECT_EQ(R16(c.data, 8), 0) << "SQID";
    EXPECT_EQ(R16(c.data, 10), 0x77) << "CID";
    EXPECT_EQ(R16(c.data, 12) >> 1, 0x4002) << "status with DNR";
    // Effects log CSI 0 has no ZNS opcodes; unknown CSI fails.
    c = admin_->RunC2h(GetLogPage(0x05, 4096, 0, 0), 4096);
    EXPECT_EQ(R32(c.data, 1024 + 4 * 0x7d), 0u);
    EXPECT_EQ(R32(c.data, 1024 + 4 * 0x01), 3u) << "Write: CSUPP | LBCC";
    EXPECT_EQ(R32(c.data, 4 * 0x06), 1u) << "Identify supported";
    EXPECT_EQ(admin_->RunC2h(GetLogPage(0x05, 4096, 0, 1), 4096).sc(), 0x002);
    // Offset into a log (LPA bit 2) and misaligned offsets.
    Completion whole = admin_->RunC2h(GetLogPage(0x05, 4096, 0, 2), 4096);
    c = admin_->RunC2h(GetLogPage(0x05, 1024, 0, 2, false, 1024), 1024);
    EXPECT_EQ(c.data, std::vector<uint8_t>(whole.data.begin() + 1024, whole.data.begin() + 2048));
    EXPECT_EQ(admin_->RunC2h(GetLogPage(0x05, 64, 0, 2, false, 2), 64).sc(), 0x002);
    EXPECT_EQ(admin_->RunC2h(GetLogPage(0x05, 64, 0, 2, false, 8192), 64).sc(), 0x002);
    // SMART counts host writes; FW slot shows the firmware revision.
    ASSERT_EQ(Io().Run(Rw(0x01, zns_nsid(), 0, 8).sgl(4096), Pattern(4096, 1)).status(), 0);
    c = admin_->RunC2h(GetLogPage(0x02, 512), 512);
    EXPECT_EQ(R64(c.data, 80), 1u) << "host write commands";
    EXPECT_EQ(R64(c.data, 48), 1u) << "data units written (rounded up)";
    c = admin_->RunC2h(GetLogPage(0x03, 512), 512);
    EXPECT_EQ(R8(c.data, 0), 1);
    EXPECT_EQ(std::string(c.data.begin() + 8, c.data.begin() + 16), "0.1.0   ");
    EXPECT_EQ(admin_->RunC2h(GetLogPage(0x04, 4096), 4096).status(), 0);
    EXPECT_EQ(admin_->RunC2h(GetLogPage(0x70, 4096), 4096).sc(), 0x002);
}

TEST_F(Admin, Features) {
    ConnectAndEnable();
    EXPECT_EQ(admin_->Run(SetFeatures(0x07, 0xffff)).sc(), 0x002);
    Completion c = admin_->Run(SetFeatures(0x07, 200 | 200u << 16));
    EXPECT_EQ(c.dw0(), 63u | 63u << 16) << "clamped to 64 queues";
    EXPECT_EQ(admin_->Run(GetFeatures(0x07)).dw0(), 63u | 63u << 16);
    EXPECT_EQ(admin_->Run(SetFeatures(0x06, 0)).status(), 0);
    EXPECT_EQ(admin_->Run(GetFeatures(0x06)).dw0(), 0u);
    EXPECT_EQ(admin_->Run(GetFeatures(0x06, 1)).dw0(), 1u) << "default";
    EXPECT_EQ(admin_->Run(GetFeatures(0x06, 3)).dw0(), 4u) << "capabilities: changeable";
    EXPECT_EQ(admin_->Run(SetFeatures(0x06, 1, true)).sc(), 0x10d) << "not saveable";
    EXPECT_EQ(admin_->Run(SetFeatures(0x0b, 1u << 8)).sc(), 0x002) << "NS attribute notices unsupported";
    EXPECT_EQ(admin_->Run(SetFeatures(0x0f, 12000)).status(), 0);
    EXPECT_EQ(admin_->Run(GetFeatures(0x0f)).dw0(), 12000u);
    EXPECT_EQ(admin_->Run(SetFeatures(0x01, 0x03020103)).status(), 0);
    EXPECT_EQ(admin_->Run(GetFeatures(0x01)).dw0(), 0x03020103u);
    EXPECT_EQ(admin_->Run(SetFeatures(0x02, 1)).sc(), 0x002) << "only power state 0";
    EXPECT_EQ(admin_->Run(SetFeatures(0x04, 0x150)).status(), 0);
    EXPECT_EQ(admin_->Run(GetFeatures(0x04)).dw0(), 0x150u);
    EXPECT_EQ(admin_->Run(GetFeatures(0x80)).sc(), 0x002);
    // Timestamp: set, then read back at least the value set, origin "set by host".
    std::vector<uint8_t> ts(8, 0);
    W64(ts.data(), 1000000);
    ASSERT_EQ(admin_->Run(Cmd(0x09).cdw(10, 0x0e).sgl(8), ts).status(), 0);
    c = admin_->RunC2h(GetFeatures(0x0e).sgl(8), 8);
    ASSERT_EQ(c.status(), 0);
    uint64_t got = R64(c.data, 0) & 0xffffffffffffull;
    EXPECT_GE(got, 1000000u);
    EXPECT_LT(got, 1000000u + 5000);
    EXPECT_EQ((R8(c.data, 6) >> 1) & 7, 1);
}

TEST_F(Admin, AerLimitAndAbort) {
    ConnectAndEnable();
    std::vector<std::shared_ptr<Pending>> aers;
    for (uint16_t i = 0; i < 4; i++) aers.push_back(admin_->Start(Cmd(0x0c).cid(uint16_t(40 + i))));
    Completion c = admin_->Run(Cmd(0x0c).cid(50));
    EXPECT_EQ(c.sc(), 0x105);
    c = admin_->Run(Cmd(0x08).cdw(10, 0 | 41u << 16));
    EXPECT_EQ(c.status(), 0);
    EXPECT_EQ(c.dw0() & 1, 0u) << "the AER was aborted";
    ASSERT_TRUE(aers[1]->Wait());
    EXPECT_EQ(aers[1]->Get().sc(), 0x007);
    c = admin_->Run(Cmd(0x08).cdw(10, 1 | 5u << 16));
    EXPECT_EQ(c.dw0() & 1, 1u) << "I/O commands are not aborted";
    EXPECT_FALSE(aers[0]->Ready());
}

TEST_F(Admin, KeepAliveTimeoutTearsDownController) {
    ConnectAndEnable(/*kato=*/100);
    HostQueue& io = Io();
    // Keep alive holds it up.
    for (int i = 0; i < 5; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        ASSERT_EQ(admin_->Run(Cmd(0x18)).status(), 0);
    }
    EXPECT_FALSE(admin_->close_requested());
    auto aer = admin_->Start(Cmd(0x0c).cid(31));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!admin_->close_requested() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(admin_->close_requested());
    EXPECT_TRUE(io.close_requested());
    ASSERT_TRUE(aer->Wait());
    EXPECT_EQ(aer->Get().sc(), 0x008);
    EXPECT_EQ(io.Run(Cmd(0x00).nsid(1)).sc(), 0x008) << "commands after teardown are aborted";
    EXPECT_EQ(subsys_->FindController(cntlid_), nullptr);
    // A new association works.
    HostQueue again(*target_);
    EXPECT_EQ(again.Run(Connect(0, 31, 0), ConnectData(0xffff)).status(), 0);
}

TEST_F(Admin, AdminDisconnectClosesIoQueues) {
    ConnectAndEnable();
    HostQueue& io = Io();
    admin_->Disconnect();
    EXPECT_TRUE(io.close_requested());
    EXPECT_EQ(subsys_->FindController(cntlid_), nullptr);
}

TEST_F(Admin, CommandsCountedPerState) {
    ConnectAndEnable();
    ASSERT_EQ(admin_->Run(Cmd(0x18)).status(), 0);
    auto aer = admin_->Start(Cmd(0x0c).cid(31));
    auto ctrl = subsys_->FindController(cntlid_);
    ASSERT_TRUE(ctrl);
    ControllerStats s = ctrl->stats();
    EXPECT_EQ(s.in_state[size_t(RequestState::kAerPending)], 1u);
    EXPECT_EQ(s.in_state[size_t(RequestState::kQueued)], 0u);
    EXPECT_GE(s.completed, 1u);
}

// ---- PCI transports: registers and queue hooks ----
class FakePci : public PciQueueHooks {
public:
    bool EnableAdminQueues(uint64_t asq, uint64_t acq, uint32_t sqe, uint32_t cqe) override {
        admin = {asq, acq, sqe, cqe};
        return true;
    }
    uint16_t CreateIoCq(const IoCqParams& p) override { cqs.push_back(p); return 0; }
    uint16_t CreateIoSq(const IoSqParams& p) override { sqs.push_back(p); return 0; }
    void DeleteIoSq(uint16_t q) override { deleted_sq.push_back(q); }
    void DeleteIoCq(uint16_t q) override { deleted_cq.push_back(q); }
    void ResetQueues() override { resets++; }
    std::array<uint64_t, 4> admin{};
    std::vector<IoCqParams> cqs;
    std::vector<IoSqParams> sqs;
    std::vector<uint16_t> deleted_sq, deleted_cq;
    int resets = 0;
};

Completion RunOn(Controller& c, uint16_t qid, const Cmd& cmd, uint32_t len = 0) {
    auto p = std::make_shared<Pending>();
    DataTransfer t = c.TransferOf(qid, cmd.s);
    EXPECT_EQ(t.bytes, len);
    p->buf.assign(t.bytes, 0);
    c.Submit(qid, cmd.s, p->buf, FillOnCompletion(p));
    EXPECT_TRUE(p->Wait());
    return p->Get();
}

TEST_F(Admin, PciRegistersEnableAndQueueCreation) {
    FakePci hooks;
    auto made = subsys_->CreatePciController(&hooks);
    ASSERT_TRUE(made.ok());
    Controller& c = **made;
    EXPECT_EQ(c.ReadRegister(0x08, 4), 0x00020000u);
    uint64_t cap = c.ReadRegister(0x00, 8);
    EXPECT_EQ(c.ReadRegister(0x04, 4), cap >> 32);
    EXPECT_TRUE(cap & (1ull << 16)) << "CQR";
    EXPECT_EQ((cap >> 32) & 0xf, 0u) << "DSTRD 0: doorbells 4 bytes apart";
    ASSERT_TRUE(c.WriteRegister(0x24, 4, (31u << 16) | 31));
    ASSERT_TRUE(c.WriteRegister(0x28, 8, 0x100000));
    ASSERT_TRUE(c.WriteRegister(0x30, 4, 0x200000));
    ASSERT_TRUE(c.WriteRegister(0x34, 4, 0x1));
    EXPECT_EQ(c.ReadRegister(0x30, 8), 0x100200000ull);
    ASSERT_TRUE(c.WriteRegister(0x0c, 4, 0x3));
    ASSERT_TRUE(c.WriteRegister(0x10, 4, 0x1));
    EXPECT_EQ(c.interrupt_mask(), 0x2u);
    ASSERT_TRUE(c.WriteRegister(0x14, 4, (6u << 16) | (4u << 20) | (6u << 4) | 1));
    EXPECT_EQ(c.csts() & 3, 1u);
    EXPECT_EQ(hooks.admin, (std::array<uint64_t, 4>{0x100000, 0x100200000ull, 32, 32}));
    EXPECT_FALSE(c.WriteRegister(0x40, 4, 1));
    // Identify says PRPs only (no SGLs) and no fabrics fields.
    Completion id = RunOn(c, 0, Identify(1), 4096);
    EXPECT_EQ(R32(id.data, 536), 0u);
    EXPECT_EQ(R32(id.data, 1792), 0u);
    EXPECT_EQ(R16(id.data, 256) & 0x100, 0x100) << "OACS bit 8: Doorbell Buffer Config (PCI)";
    // 7Ch reaches the transport with page-aligned, non-zero buffers only.
    EXPECT_EQ(RunOn(c, 0, Cmd(0x7c).u64(24, 0x500800).u64(32, 0x501000)).sc(), 0x002);
    EXPECT_EQ(RunOn(c, 0, Cmd(0x7c).u64(24, 0x500000).u64(32, 0)).sc(), 0x002);
    EXPECT_EQ(RunOn(c, 0, Cmd(0x7c).u64(24, 0x500000).u64(32, 0x501000)).sc(), 0x001)
        << "a transport without shadow doorbells keeps the hook's default";
    EXPECT_EQ(R32(RunOn(c, 0, GetLogPage(0x05, 4096, 0, 0), 4096).data, 4 * 0x7c), 1u)
        << "Commands Supported and Effects: 7Ch supported (CSUPP), no other effect";
    // Create I/O CQ 1 / SQ 1.
    Cmd cq = Cmd(0x05).u64(24, 0x300000).cdw(10, 1 | 63u << 16).cdw(11, 1 | 2 | 5u << 16);
    ASSERT_EQ(RunOn(c, 0, cq).status(), 0);
    ASSERT_EQ(hooks.cqs.size(), 1u);
    EXPECT_EQ(hooks.cqs[0].entries, 64u);
    EXPECT_EQ(hooks.cqs[0].vector, 5);
    EXPECT_EQ(RunOn(c, 0, cq).sc(), 0x101) << "CQ exists";
    EXPECT_EQ(RunOn(c, 0, Cmd(0x05).u64(24, 0x300000).cdw(10, 2 | 1024u << 16).cdw(11, 1)).sc(), 0x102);
    EXPECT_EQ(RunOn(c, 0, Cmd(0x05).u64(24, 0x300000).cdw(10, 2 | 63u << 16).cdw(11, 3 | 4000u << 16)).sc(), 0x108);
    EXPECT_EQ(RunOn(c, 0, Cmd(0x05).u64(24, 0x300000).cdw(10, 2 | 63u << 16).cdw(11, 0)).sc(), 0x002) << "PC=0";
    EXPECT_EQ(RunOn(c, 0, Cmd(0x01).u64(24, 0x400000).cdw(10, 1 | 63u << 16).cdw(11, 1 | 9u << 16)).sc(), 0x100);
    ASSERT_EQ(RunOn(c, 0, Cmd(0x01).u64(24, 0x400000).cdw(10, 1 | 63u << 16).cdw(11, 1 | 1u << 16)).status(), 0);
    EXPECT_EQ(hooks.sqs.at(0).cqid, 1);
    EXPECT_EQ(RunOn(c, 0, SetFeatures(0x07, 0)).sc(), 0x00c) << "queue count fixed once queues exist";
    // Data sizes a PRP transport maps.
    EXPECT_EQ(c.TransferOf(1, Rw(0x01, 1, 0, 8).s).dir, DataTransfer::kHostToController);
    EXPECT_EQ(c.TransferOf(1, Rw(0x02, 1, 0, 8).s).bytes, 4096u);
    EXPECT_EQ(c.TransferOf(1, ZoneRecv(1, 0, 8192).s).bytes, 8192u);
    EXPECT_EQ(c.TransferOf(0, GetLogPage(0x02, 512).s).bytes, 512u);
    // I/O through the PCI controller.
    Completion w = [&] {
        auto p = std::make_shared<Pending>();
        p->buf = Pattern(4096, 2);
        c.Submit(1, Rw(0x01, zns_nsid(), 0, 8).s, p->buf, FillOnCompletion(p));
        p->Wait();
        return p->Get();
    }();
    EXPECT_EQ(w.status(), 0);
    EXPECT_EQ(R16(w.cqe, 10), 1) << "SQID";
    // Delete: CQ with an SQ is refused, then SQ, then CQ.
    EXPECT_EQ(RunOn(c, 0, Cmd(0x04).cdw(10, 1)).sc(), 0x10c);
    EXPECT_EQ(RunOn(c, 0, Cmd(0x00).cdw(10, 1)).status(), 0);
    EXPECT_EQ(RunOn(c, 0, Cmd(0x04).cdw(10, 1)).status(), 0);
    EXPECT_EQ(RunOn(c, 0, Cmd(0x00).cdw(10, 1)).sc(), 0x101);
    EXPECT_EQ(hooks.deleted_sq, std::vector<uint16_t>{1});
    // Shutdown then reset.
    ASSERT_TRUE(c.WriteRegister(0x14, 4, (6u << 16) | (4u << 20) | (6u << 4) | 1 | (1u << 14)));
    for (int i = 0; i < 500 && ((c.csts() >> 2) & 3) != 2; i++) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ((c.csts() >> 2) & 3, 2u);
    ASSERT_TRUE(c.WriteRegister(0x14, 4, 0));
    EXPECT_EQ(c.csts() & 1, 0u);
    EXPECT_EQ(hooks.resets, 1);
    // Create queue commands do not exist on fabrics controllers.
    ConnectAndEnable();
    EXPECT_EQ(admin_->Run(Cmd(0x05).cdw(10, 1 | 63u << 16).cdw(11, 1)).sc(), 0x001);
}

}  // namespace
}  // namespace qzns::nvme::qtest
