// NVMe/TCP transport over real loopback sockets: handshake, in-capsule and R2T writes, C2H
// reads with and without SUCCESS, digests both ways, completions from other threads, many
// connections, close requests, shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "tests/nvmf/tcp-harness.h"

namespace qzns::nvmf::testing {
namespace {

using tcp::TcpServerOptions;

class TcpServerTest : public TcpServerFixture {};

TEST_F(TcpServerTest, IcRespFieldsMatchWhatLinuxChecks) {
    StartServer();
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    auto ic = c.Handshake(false, false);
    ASSERT_TRUE(ic);
    const auto& h = ic->hdr;
    EXPECT_EQ(h[0], 0x01);           // ICResp
    EXPECT_EQ(h[1], 0);              // flags
    EXPECT_EQ(h[2], 128);            // hlen
    EXPECT_EQ(h[3], 0);              // pdo
    EXPECT_EQ(Get32(&h[4]), 128u);   // plen
    EXPECT_EQ(Get16(&h[8]), 0);      // pfv
    EXPECT_EQ(h[10], 0);             // cpda
    EXPECT_EQ(h[11], 0);             // digests echoed
    const uint32_t maxdata = Get32(&h[12]);
    EXPECT_GE(maxdata, 4096u);
    EXPECT_EQ(maxdata % 4, 0u);
    EXPECT_EQ(maxdata, 128u * 1024);
    for (size_t i = 16; i < 128; i++) EXPECT_EQ(h[i], 0) << "reserved byte " << i;
    EXPECT_NE(target_->LastPeer().find("127.0.0.1:"), std::string::npos);
}

TEST_F(TcpServerTest, IcRespEchoesRequestedDigests) {
    StartServer();
    for (int d = 0; d < 4; d++) {
        TestClient c;
        ASSERT_TRUE(c.Connect(server_->port()));
        auto ic = c.Handshake(d & 1, d & 2);
        ASSERT_TRUE(ic);
        EXPECT_EQ(ic->hdr[11], d);
    }
}

TEST_F(TcpServerTest, ConnectDataInCapsule) {
    StartServer();
    auto c = Client();  // FabricsConnect checks CQE cid/status/DW0
    EXPECT_EQ(target_->queues.load(), 1);
    EXPECT_EQ(target_->commands.load(), 1);
}

TEST_F(TcpServerTest, InCapsuleWriteReachesTarget) {
    StartServer();
    auto c = Client();
    std::vector<uint8_t> data(4096);
    FillPattern(9, data);
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpWrite, 7, Sgl::kInCapsule, 4096, 9), data));
    auto p = c->RecvPdu();
    ASSERT_TRUE(p);
    ASSERT_EQ(p->type(), 0x05);
    EXPECT_EQ(ParseResp(*p).status, 0);
    EXPECT_EQ(ParseResp(*p).cid, 7);
    EXPECT_EQ(target_->bad_writes.load(), 0);
    EXPECT_EQ(server_->Stats().r2ts, 0u);
}

TEST_F(TcpServerTest, InCapsuleLimitIsEightKiB) {
    StartServer();
    auto c = Client();
    std::vector<uint8_t> data(8192);
    FillPattern(3, data);
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpWrite, 8, Sgl::kInCapsule, 8192, 3), data));
    auto p = c->RecvPdu();
    ASSERT_TRUE(p);
    EXPECT_EQ(ParseResp(*p).status, 0);
}

TEST_F(TcpServerTest, R2tWriteWithSeveralH2CDataPdus) {
    TcpServerOptions o;
    o.transport.max_h2c_data = 16384;
    StartServer(o);
    auto c = Client();
    EXPECT_EQ(maxh2cdata_, 16384u);
    int r2ts = 0;
    EXPECT_EQ(Write(*c, 11, 40000, 5, &r2ts), 0);  // 16 KiB + 16 KiB + 7232 B
    EXPECT_EQ(r2ts, 1);
    EXPECT_EQ(target_->bad_writes.load(), 0);
    EXPECT_EQ(server_->Stats().r2ts, 1u);
}

TEST_F(TcpServerTest, R2tLengthLimitSolicitsInSeveralR2ts) {
    TcpServerOptions o;
    o.transport.max_h2c_data = 4096;
    o.transport.max_r2t_length = 10000;
    StartServer(o);
    auto c = Client();
    int r2ts = 0;
    EXPECT_EQ(Write(*c, 12, 32768, 6, &r2ts), 0);
    EXPECT_EQ(r2ts, 4);  // 10000, 10000, 10000, 2768
    EXPECT_EQ(target_->bad_writes.load(), 0);
}

TEST_F(TcpServerTest, CorruptedWriteDataIsSeenByTarget) {
    StartServer();
    auto c = Client();
    // The fake target checks the pattern of seed 5; send seed 6's bytes.
    std::vector<uint8_t> data(4096);
    FillPattern(6, data);
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpWrite, 1, Sgl::kInCapsule, 4096, 5), data));
    auto p = c->RecvPdu();
    ASSERT_TRUE(p);
    EXPECT_EQ(ParseResp(*p).status, kStatusDataTransferError);
    EXPECT_EQ(target_->bad_writes.load(), 1);
}

TEST_F(TcpServerTest, ReadUsesSeveralC2HDataAndSuccessFlag) {
    TcpServerOptions o;
    o.transport.max_c2h_data = 16384;
    StartServer(o);
    auto c = Client();
    ReadResult r = Read(*c, 21, 40000, 4);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_TRUE(r.success_flag);
    EXPECT_FALSE(r.got_resp);
    EXPECT_EQ(r.c2h_pdus, 3);
    ASSERT_EQ(r.data.size(), 40000u);
    EXPECT_TRUE(MatchesPattern(4, r.data));
    // No CapsuleResp follows: the next PDU answers the next command.
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpKeepAlive, 22, Sgl::kNone, 0)));
    auto p = c->RecvPdu();
    ASSERT_TRUE(p);
    ASSERT_EQ(p->type(), 0x05);
    EXPECT_EQ(ParseResp(*p).cid, 22);
    EXPECT_EQ(server_->Stats().c2h_success, 1u);
}

TEST_F(TcpServerTest, ReadWithoutSuccessOptimizationEndsWithCapsuleResp) {
    TcpServerOptions o;
    o.transport.c2h_success_optimization = false;
    StartServer(o);
    auto c = Client();
    ReadResult r = Read(*c, 23, 4096, 8);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_FALSE(r.success_flag);
    ASSERT_TRUE(r.got_resp);
    EXPECT_EQ(r.cqe.status, 0);
    EXPECT_EQ(r.cqe.cid, 23);
    EXPECT_TRUE(MatchesPattern(8, r.data));
}

TEST_F(TcpServerTest, ReadWithResultInDw0KeepsCapsuleResp) {
    StartServer();
    auto c = Client();
    ReadResult r = Read(*c, 24, 512, 1, /*behaviour=*/2);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_FALSE(r.success_flag);
    ASSERT_TRUE(r.got_resp);
    EXPECT_EQ(r.cqe.dw0, 0xabcdu);
    EXPECT_EQ(r.data.size(), 512u);
}

TEST_F(TcpServerTest, FailedReadSendsOnlyCapsuleResp) {
    StartServer();
    auto c = Client();
    ReadResult r = Read(*c, 25, 4096, 1, /*behaviour=*/1);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.c2h_pdus, 0);
    ASSERT_TRUE(r.got_resp);
    EXPECT_EQ(r.cqe.status, kStatusInvalidField);
}

TEST_F(TcpServerTest, ShortC2HLengthSendsThatMuchThenCapsuleResp) {
    StartServer();
    auto c = Client();
    ReadResult r = Read(*c, 26, 8192, 2, /*behaviour=*/4);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_FALSE(r.success_flag);
    ASSERT_TRUE(r.got_resp);
    EXPECT_EQ(r.data.size(), 4096u);
    EXPECT_TRUE(MatchesPattern(2, r.data));
}

TEST_F(TcpServerTest, HpdaPadsC2HDataOffset) {
    StartServer();
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    ASSERT_TRUE(c.Handshake(true, false, /*hpda=*/7));  // 32-byte alignment
    FabricsConnect(c, 1);
    ASSERT_TRUE(c.SendCapsule(MakeSqe(kOpRead, 2, Sgl::kTransport, 1000, 3)));
    auto p = c.RecvPdu();
    ASSERT_TRUE(p);
    ASSERT_EQ(p->type(), 0x07);
    EXPECT_EQ(p->hdr[3], 32);  // pdo: 24 + 4 digest, rounded up to 32
    EXPECT_TRUE(MatchesPattern(3, p->data));
}

TEST_F(TcpServerTest, SglErrorsCompleteWithoutReachingTarget) {
    TcpServerOptions o;
    o.transport.max_transfer = 65536;
    StartServer(o);
    auto c = Client();
    const int before = target_->commands.load();
    struct Case {
        std::vector<uint8_t> sqe;
        std::vector<uint8_t> icd;
        uint16_t status;
    };
    std::vector<Case> cases;
    auto sqe = MakeSqe(kOpRead, 31, Sgl::kTransport, 65537);  // above max transfer
    cases.push_back({sqe, {}, 0x0f << 1 | 0x8000});
    sqe = MakeSqe(kOpWrite, 32, Sgl::kInCapsule, 100);
    Put64(&sqe[24], 4000);  // offset beyond the in-capsule data
    cases.push_back({sqe, std::vector<uint8_t>(64), 0x16 << 1 | 0x8000});
    sqe = MakeSqe(kOpWrite, 33, Sgl::kInCapsule, 100);  // longer than the in-capsule data
    cases.push_back({sqe, std::vector<uint8_t>(64), 0x0f << 1 | 0x8000});
    sqe = MakeSqe(kOpRead, 34, Sgl::kTransport, 512);
    sqe[39] = 0x00;  // Data Block, address subtype: not for NVMe/TCP
    cases.push_back({sqe, {}, 0x11 << 1 | 0x8000});
    sqe = MakeSqe(kOpRead, 35, Sgl::kTransport, 512);
    sqe[1] = 0x00;  // PSDT = PRP
    cases.push_back({sqe, {}, 0x02 << 1 | 0x8000});
    sqe = MakeSqe(kOpRead, 36, Sgl::kInCapsule, 64);  // read with in-capsule descriptor
    cases.push_back({sqe, std::vector<uint8_t>(64), 0x11 << 1 | 0x8000});
    for (const Case& k : cases) {
        ASSERT_TRUE(c->SendCapsule(k.sqe, k.icd));
        auto p = c->RecvPdu();
        ASSERT_TRUE(p);
        ASSERT_EQ(p->type(), 0x05);
        EXPECT_EQ(ParseResp(*p).cid, Get16(&k.sqe[2]));
        EXPECT_EQ(ParseResp(*p).status, k.status) << "cid " << Get16(&k.sqe[2]);
    }
    EXPECT_EQ(target_->commands.load(), before);
    EXPECT_EQ(server_->Stats().transport_errors, cases.size());
    // The connection still works.
    EXPECT_EQ(Write(*c, 40, 5000, 1), 0);
}

// ---- digests -----------------------------------------------------------------------------

class TcpDigestTest : public TcpServerFixture, public ::testing::WithParamInterface<int> {};

TEST_P(TcpDigestTest, WritesAndReadsWithDigests) {
    const bool hd = GetParam() & 1, dd = GetParam() & 2;
    TcpServerOptions o;
    o.transport.max_h2c_data = 8192;
    o.transport.max_c2h_data = 8192;
    StartServer(o);
    auto c = Client(hd, dd);
    std::vector<uint8_t> icd(2048);
    FillPattern(1, icd);
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpWrite, 1, Sgl::kInCapsule, 2048, 1), icd));
    std::string err;
    auto p = c->RecvPdu(&err);
    ASSERT_TRUE(p) << err;
    EXPECT_EQ(ParseResp(*p).status, 0);
    EXPECT_EQ(Write(*c, 2, 30000, 2), 0);
    ReadResult r = Read(*c, 3, 30000, 3);  // RecvPdu verifies every digest
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_TRUE(MatchesPattern(3, r.data));
    EXPECT_EQ(target_->bad_writes.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(AllDigestCombinations, TcpDigestTest, ::testing::Values(0, 1, 2, 3));

TEST_F(TcpServerTest, BadHeaderDigestIsFatal) {
    StartServer();
    auto c = Client(true, false);
    auto bytes = c->CapsuleBytes(MakeSqe(kOpKeepAlive, 5, Sgl::kNone, 0));
    bytes[72] ^= 0xff;  // the header digest
    ASSERT_TRUE(c->Send(bytes));
    ExpectTermReq(*c, 0x03, 0, bytes);
    EXPECT_EQ(server_->Stats().header_digest_errors, 1u);
}

TEST_F(TcpServerTest, BadInCapsuleDataDigestFailsTheCommandOnly) {
    StartServer();
    auto c = Client(false, true);
    std::vector<uint8_t> icd(512);
    FillPattern(1, icd);
    auto bytes = c->CapsuleBytes(MakeSqe(kOpWrite, 6, Sgl::kInCapsule, 512, 1), icd);
    bytes.back() ^= 0x01;
    ASSERT_TRUE(c->Send(bytes));
    auto p = c->RecvPdu();
    ASSERT_TRUE(p);
    ASSERT_EQ(p->type(), 0x05);
    EXPECT_EQ(ParseResp(*p).status, 0x22 << 1);  // Transient Transport Error
    EXPECT_EQ(server_->Stats().data_digest_errors, 1u);
    EXPECT_EQ(Write(*c, 7, 4096, 2), 0);  // still usable
}

TEST_F(TcpServerTest, BadH2CDataDigestFailsTheCommandOnly) {
    StartServer();
    auto c = Client(false, true);
    std::vector<uint8_t> data(4096);
    FillPattern(1, data);
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpWrite, 8, Sgl::kTransport, 4096, 1)));
    auto r2t = c->RecvPdu();
    ASSERT_TRUE(r2t);
    ASSERT_EQ(r2t->type(), 0x09);
    auto h2c = c->H2CDataBytes(8, Get16(&r2t->hdr[10]), 0, data, true);
    h2c.back() ^= 0x80;
    ASSERT_TRUE(c->Send(h2c));
    auto p = c->RecvPdu();
    ASSERT_TRUE(p);
    ASSERT_EQ(p->type(), 0x05);
    EXPECT_EQ(ParseResp(*p).status, 0x22 << 1);
    EXPECT_EQ(target_->commands.load(), 1);  // only Connect reached the target
}

// ---- byte-by-byte, pipelining, threads -----------------------------------------------------

TEST_F(TcpServerTest, HostSendingOneByteAtATime) {
    TcpServerOptions o;
    o.transport.max_h2c_data = 4096;
    StartServer(o);
    auto c = std::make_unique<TestClient>();
    c->byte_by_byte = true;
    ASSERT_TRUE(c->Connect(server_->port()));
    ASSERT_TRUE(c->Handshake(true, true));
    maxh2cdata_ = 4096;
    FabricsConnect(*c, 1);
    EXPECT_EQ(Write(*c, 2, 9000, 4), 0);
    ReadResult r = Read(*c, 3, 5000, 5);
    EXPECT_TRUE(MatchesPattern(5, r.data));
}

TEST_F(TcpServerTest, ManyCommandsInFlightCompletedOutOfOrderFromAnotherThread) {
    TcpServerOptions o;
    o.transport.max_c2h_data = 4096;
    StartServer(o, FakeTarget::Options{true, 2000});
    auto c = Client();
    constexpr int kCommands = 100;
    std::vector<uint8_t> all;
    for (int i = 0; i < kCommands; i++) {
        auto b = c->CapsuleBytes(MakeSqe(kOpRead, static_cast<uint16_t>(i), Sgl::kTransport,
                                         1000 + 97 * i, static_cast<uint8_t>(i)));
        all.insert(all.end(), b.begin(), b.end());
    }
    ASSERT_TRUE(c->Send(all));  // all capsules at once
    std::map<uint16_t, std::vector<uint8_t>> got;
    std::set<uint16_t> done;
    while (done.size() < kCommands) {
        std::string err;
        auto p = c->RecvPdu(&err);
        ASSERT_TRUE(p) << err;
        ASSERT_EQ(p->type(), 0x07);
        uint16_t cid = Get16(&p->hdr[8]);
        auto& d = got[cid];
        EXPECT_EQ(Get32(&p->hdr[12]), d.size());
        d.insert(d.end(), p->data.begin(), p->data.end());
        if (p->flags() & 0x08) done.insert(cid);
    }
    for (int i = 0; i < kCommands; i++) {
        ASSERT_EQ(got[i].size(), 1000u + 97 * i);
        EXPECT_TRUE(MatchesPattern(static_cast<uint8_t>(i), got[i])) << i;
    }
}

TEST_F(TcpServerTest, WritesAndCapsulesInterleave) {
    TcpServerOptions o;
    o.transport.max_h2c_data = 4096;
    StartServer(o, FakeTarget::Options{true, 500});
    auto c = Client();
    // Two R2T writes outstanding at once while a keep-alive goes by.
    std::vector<uint8_t> a(12000), b(7000);
    FillPattern(1, a);
    FillPattern(2, b);
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpWrite, 1, Sgl::kTransport, 12000, 1)));
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpWrite, 2, Sgl::kTransport, 7000, 2)));
    std::map<uint16_t, uint16_t> ttag;
    for (int i = 0; i < 2; i++) {
        auto p = c->RecvPdu();
        ASSERT_TRUE(p);
        ASSERT_EQ(p->type(), 0x09);
        ttag[Get16(&p->hdr[8])] = Get16(&p->hdr[10]);
    }
    ASSERT_NE(ttag[1], ttag[2]);
    auto chunk = [](const std::vector<uint8_t>& v, size_t off, size_t n) {
        return std::vector<uint8_t>(v.begin() + off, v.begin() + off + n);
    };
    ASSERT_TRUE(c->Send(c->H2CDataBytes(2, ttag[2], 0, chunk(b, 0, 4096), false)));
    ASSERT_TRUE(c->Send(c->H2CDataBytes(1, ttag[1], 0, chunk(a, 0, 4096), false)));
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpKeepAlive, 3, Sgl::kNone, 0)));
    ASSERT_TRUE(c->Send(c->H2CDataBytes(1, ttag[1], 4096, chunk(a, 4096, 4096), false)));
    ASSERT_TRUE(c->Send(c->H2CDataBytes(2, ttag[2], 4096, chunk(b, 4096, 2904), true)));
    ASSERT_TRUE(c->Send(c->H2CDataBytes(1, ttag[1], 8192, chunk(a, 8192, 3808), true)));
    std::set<uint16_t> cids;
    for (int i = 0; i < 3; i++) {
        auto p = c->RecvPdu();
        ASSERT_TRUE(p);
        ASSERT_EQ(p->type(), 0x05);
        EXPECT_EQ(ParseResp(*p).status, 0);
        cids.insert(ParseResp(*p).cid);
    }
    EXPECT_EQ(cids, (std::set<uint16_t>{1, 2, 3}));
    EXPECT_EQ(target_->bad_writes.load(), 0);
}

TEST_F(TcpServerTest, ManyConnectionsInParallel) {
    TcpServerOptions o;
    o.threads = 2;
    o.transport.max_h2c_data = 8192;
    o.transport.max_c2h_data = 8192;
    StartServer(o, FakeTarget::Options{true, 300});
    constexpr int kClients = 24;
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kClients; t++) {
        threads.emplace_back([&, t] {
            auto c = Client(t & 1, t & 2);
            bool good = true;
            for (int i = 0; i < 10 && good; i++) {
                uint32_t len = 1000 + 1234 * static_cast<uint32_t>(i + t);
                uint8_t seed = static_cast<uint8_t>(t * 16 + i);
                good = Write(*c, static_cast<uint16_t>(2 * i), len, seed) == 0;
                ReadResult r = Read(*c, static_cast<uint16_t>(2 * i + 1), len, seed);
                good = good && r.error.empty() && MatchesPattern(seed, r.data) &&
                       r.data.size() == len;
            }
            if (good) ok++;
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), kClients);
    EXPECT_EQ(target_->bad_writes.load(), 0);
    auto st = server_->Stats();
    EXPECT_EQ(st.connections_accepted, static_cast<uint64_t>(kClients));
    EXPECT_EQ(st.commands, static_cast<uint64_t>(kClients * 21));
}

TEST_F(TcpServerTest, TwoServersWithTheirOwnTargets) {
    StartServer();
    FakeTarget discovery;
    TcpServerOptions o;
    o.port = 0;
    o.target = &discovery;
    o.transport.log = [](std::string_view) {};
    auto second = tcp::TcpServer::Start(o);
    ASSERT_TRUE(second.ok()) << second.status().message();
    EXPECT_NE((*second)->port(), server_->port());
    TestClient c;
    ASSERT_TRUE(c.Connect((*second)->port()));
    ASSERT_TRUE(c.Handshake(false, false));
    FabricsConnect(c, 1);
    EXPECT_EQ(discovery.queues.load(), 1);
    EXPECT_EQ(target_->queues.load(), 0);
    (*second)->Stop();
}

TEST_F(TcpServerTest, ListensOnIpv6Loopback) {
    TcpServerOptions o;
    o.addr = "::1";
    target_ = std::make_unique<FakeTarget>();
    o.port = 0;
    o.target = target_.get();
    o.transport.log = [](std::string_view) {};
    auto r = tcp::TcpServer::Start(o);
    if (!r.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << r.status().message();
    server_ = std::move(r).value();
    EXPECT_EQ(server_->address().rfind("[::1]:", 0), 0u) << server_->address();
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port(), "::1"));
    ASSERT_TRUE(c.Handshake(false, false));
    FabricsConnect(c, 1);
    EXPECT_EQ(target_->LastPeer().rfind("[::1]:", 0), 0u);
}

TEST_F(TcpServerTest, BadAddressIsAnError) {
    FakeTarget t;
    TcpServerOptions o;
    o.addr = "not-an-address.invalid";
    o.target = &t;
    EXPECT_FALSE(tcp::TcpServer::Start(o).ok());
    o.addr = "127.0.0.1";
    o.transport.max_h2c_data = 1000;  // below 4096
    EXPECT_FALSE(tcp::TcpServer::Start(o).ok());
    o.transport.max_h2c_data = 8192;
    o.target = nullptr;
    EXPECT_FALSE(tcp::TcpServer::Start(o).ok());
}

// ---- lifetime ----------------------------------------------------------------------------------

TEST_F(TcpServerTest, TargetCloseRequestClosesConnection) {
    StartServer();
    auto c = Client();
    target_->CloseAll();
    EXPECT_TRUE(c->WaitClosed());
    for (int i = 0; i < 100 && target_->disconnects.load() == 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(target_->disconnects.load(), 1);
}

TEST_F(TcpServerTest, HostCloseDisconnectsQueueAndCompletesPendingAer) {
    StartServer(tcp::TcpServerOptions{}, FakeTarget::Options{true, 0});
    {
        auto c = Client();
        ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpAer, 31, Sgl::kNone, 0)));
        for (int i = 0; i < 100 && server_->Stats().requests_in_state[4] == 0; i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        auto reqs = server_->Requests();
        ASSERT_EQ(reqs.size(), 1u);
        EXPECT_EQ(reqs[0].cid, 31);
        EXPECT_EQ(reqs[0].opcode, kOpAer);
        EXPECT_EQ(reqs[0].state, tcp::RequestState::kExecuting);
    }
    for (int i = 0; i < 200 && server_->Stats().connections_active != 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto st = server_->Stats();
    EXPECT_EQ(st.connections_active, 0u);
    EXPECT_EQ(target_->disconnects.load(), 1);
    for (int i = 0; i < 200 && server_->Requests().size() != 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(server_->Requests().empty());
    EXPECT_EQ(server_->Stats().requests_in_state[4], 0);
}

TEST_F(TcpServerTest, StopClosesConnectionsAndWaitsForCompletions) {
    // Stop must return because the commands completed, not because it gave up: with a give-up
    // time of an hour, a Stop that waited for it would hang the test (the harness's timeout).
    tcp::TcpServerOptions o;
    o.stop_timeout = std::chrono::hours(1);
    StartServer(o, FakeTarget::Options{true, 0});
    auto c1 = Client();
    auto c2 = Client();
    ASSERT_TRUE(c1->SendCapsule(MakeSqe(kOpAer, 31, Sgl::kNone, 0)));
    ASSERT_TRUE(c2->SendCapsule(MakeSqe(kOpAer, 31, Sgl::kNone, 0)));
    for (int i = 0; i < 100 && server_->Stats().requests_in_state[4] < 2; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    server_->Stop();
    EXPECT_EQ(target_->disconnects.load(), 2);
    EXPECT_TRUE(c1->WaitClosed());
    EXPECT_TRUE(c2->WaitClosed());
    TestClient late;
    EXPECT_FALSE(late.Connect(server_->port()) && late.Handshake(false, false));
}

TEST_F(TcpServerTest, StopGivesUpOnCommandsTheTargetNeverCompletes) {
    TcpServerOptions o;
    o.stop_timeout = std::chrono::milliseconds(300);
    StartServer(o);
    target_->hold_aers = true;
    auto c = Client();
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpAer, 31, Sgl::kNone, 0)));
    for (int i = 0; i < 100 && server_->Stats().requests_in_state[4] == 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto t0 = std::chrono::steady_clock::now();
    server_->Stop();
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, std::chrono::milliseconds(250));  // it waited; a hang is the harness's timeout
    EXPECT_EQ(server_->Stats().connections_active, 0u);  // stats survive Stop
    EXPECT_EQ(server_->Stats().requests_in_state[4], 1);
    // The target completes long after the server is gone: dropped, no crash.
    std::vector<std::function<void()>> held = target_->TakeHeld();
    ASSERT_EQ(held.size(), 1u);
    held[0]();
}

TEST_F(TcpServerTest, SecondCompletionFromTargetIsIgnored) {
    StartServer();
    auto c = Client();
    target_->complete_twice = true;
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpKeepAlive, 5, Sgl::kNone, 0)));
    ASSERT_TRUE(c->SendCapsule(MakeSqe(kOpKeepAlive, 6, Sgl::kNone, 0)));
    for (uint16_t cid : {5, 6}) {
        auto p = c->RecvPdu();
        ASSERT_TRUE(p);
        ASSERT_EQ(p->type(), 0x05);
        EXPECT_EQ(ParseResp(*p).cid, cid);
    }
    target_->complete_twice = false;
    ReadResult r = Read(*c, 7, 4096, 1);  // nothing extra arrives before this read's data
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_TRUE(MatchesPattern(1, r.data));
}

TEST_F(TcpServerTest, RefusedQueueClosesSocket) {
    StartServer();
    target_->refuse = true;
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    EXPECT_TRUE(c.WaitClosed());
}

TEST_F(TcpServerTest, BufferBudgetMakesCommandsWaitNotFail) {
    TcpServerOptions o;
    o.transport.max_transfer = 65536;
    o.transport.max_buffer_bytes = 65536;  // one transfer at a time
    o.transport.retain_buffer_bytes = 0;
    StartServer(o, FakeTarget::Options{true, 1000});
    auto c = Client();
    std::vector<uint8_t> all;
    for (int i = 0; i < 6; i++) {
        auto b = c->CapsuleBytes(MakeSqe(kOpRead, static_cast<uint16_t>(i), Sgl::kTransport,
                                         65536, static_cast<uint8_t>(i)));
        all.insert(all.end(), b.begin(), b.end());
    }
    ASSERT_TRUE(c->Send(all));
    std::map<uint16_t, size_t> bytes;
    int finished = 0;
    while (finished < 6) {
        std::string err;
        auto p = c->RecvPdu(&err);
        ASSERT_TRUE(p) << err;
        ASSERT_EQ(p->type(), 0x07);
        uint16_t cid = Get16(&p->hdr[8]);
        EXPECT_TRUE(MatchesPattern(static_cast<uint8_t>(cid),
                                   std::vector<uint8_t>(p->data.begin(), p->data.end())) ||
                    Get32(&p->hdr[12]) != 0);
        bytes[cid] += p->data.size();
        if (p->flags() & 0x08) finished++;
    }
    for (int i = 0; i < 6; i++) EXPECT_EQ(bytes[i], 65536u);
}

TEST_F(TcpServerTest, StatsJsonHasCountersAndStates) {
    StartServer();
    {
        auto c = Client();
        EXPECT_EQ(Write(*c, 1, 5000, 1), 0);
    }
    Json j = server_->StatsJson();
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.get("connections-accepted")->as_uint64(), 1u);
    EXPECT_GE(*j.get("pdus-rx")->as_uint64(), 4u);  // ICReq, Connect, Write, H2CData
    EXPECT_EQ(j.get("r2ts")->as_uint64(), 1u);
    ASSERT_TRUE(j.get("requests") && j.get("requests")->is_object());
    EXPECT_TRUE(j.get("requests")->get("executing"));
    EXPECT_TRUE(j.get("requests")->get("need-buffer"));
}

}  // namespace
}  // namespace qzns::nvmf::testing
