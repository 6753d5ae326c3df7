// Every malformed host PDU gets a C2HTermReq with the right Fatal Error Status (and FEI, the
// offset of the bad field), carrying the offending header, and then the connection closes.
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "tests/nvmf/tcp-harness.h"

namespace qzns::nvmf::testing {
namespace {

constexpr uint16_t kFesHeader = 1, kFesSequence = 2, kFesOutOfRange = 4, kFesLimit = 5;
constexpr uint32_t kWriteLen = 8192;

struct Ctx {
    TestClient& c;
    uint16_t ttag;  // of the outstanding 8 KiB write (cid 9), when the case asks for one
};

struct MalformedCase {
    const char* name;
    bool handshake = true;
    bool hd = false, dd = false;
    bool r2t = false;  // start an 8 KiB R2T write with cid 9 first
    std::function<std::vector<uint8_t>(Ctx&)> bytes;
    uint16_t fes;
    int fei;  // -1: not checked
};

std::vector<uint8_t> KeepAlive(TestClient& c) {
    return c.CapsuleBytes(MakeSqe(kOpKeepAlive, 1, Sgl::kNone, 0));
}

std::vector<uint8_t> Pattern(size_t n) {
    std::vector<uint8_t> d(n);
    FillPattern(9, d);
    return d;
}

std::vector<MalformedCase> Cases() {
    std::vector<MalformedCase> v;
    // --- sequence ---
    v.push_back({"CapsuleBeforeIcReq", false, false, false, false,
                 [](Ctx& x) { return KeepAlive(x.c); }, kFesSequence, 0});
    v.push_back({"H2CDataBeforeIcReq", false, false, false, false,
                 [](Ctx& x) { return x.c.H2CDataBytes(1, 0, 0, Pattern(64), true); },
                 kFesSequence, 0});
    v.push_back({"SecondIcReq", true, false, false, false,
                 [](Ctx&) { return TestClient::IcReqBytes(false, false); }, kFesSequence, 0});
    // --- ICReq fields ---
    auto icreq = [](std::function<void(std::vector<uint8_t>&)> edit) {
        return [edit](Ctx&) {
            auto b = TestClient::IcReqBytes(false, false);
            edit(b);
            return b;
        };
    };
    v.push_back({"IcReqHlen", false, false, false, false, icreq([](auto& b) { b[2] = 127; }),
                 kFesHeader, 2});
    v.push_back({"IcReqPlen", false, false, false, false, icreq([](auto& b) {
                     Put32(&b[4], 132);
                     b.resize(132);
                 }),
                 kFesHeader, 4});
    v.push_back({"IcReqPdo", false, false, false, false, icreq([](auto& b) { b[3] = 8; }),
                 kFesHeader, 3});
    v.push_back({"IcReqDigestFlag", false, false, false, false,
                 icreq([](auto& b) { b[1] = 1; }), kFesHeader, 1});
    v.push_back({"IcReqPfv", false, false, false, false, icreq([](auto& b) { b[8] = 1; }),
                 kFesHeader, 8});
    v.push_back({"IcReqHpda", false, false, false, false, icreq([](auto& b) { b[10] = 32; }),
                 kFesHeader, 10});
    // --- types ---
    auto raw_type = [](uint8_t type) {
        return [type](Ctx& x) {
            auto b = x.c.Build(type, 0, std::vector<uint8_t>(24, 0), {});
            b[0] = type;
            return b;
        };
    };
    v.push_back({"UnknownType", true, false, false, false, raw_type(0x08), kFesHeader, 0});
    v.push_back({"TypeAboveRange", true, false, false, false, raw_type(0x7f), kFesHeader, 0});
    v.push_back({"R2tFromHost", true, false, false, false, raw_type(0x09), kFesHeader, 0});
    v.push_back({"C2HDataFromHost", true, false, false, false, raw_type(0x07), kFesHeader, 0});
    v.push_back({"CapsuleRespFromHost", true, false, false, false, raw_type(0x05), kFesHeader,
                 0});
    v.push_back({"C2HTermReqFromHost", true, false, false, false, raw_type(0x03), kFesHeader,
                 0});
    v.push_back({"IcRespFromHost", true, false, false, false, [](Ctx&) {
                     auto b = TestClient::IcReqBytes(false, false);
                     b[0] = 0x01;
                     return b;
                 },
                 kFesHeader, 0});
    // --- CapsuleCmd header ---
    auto capsule = [](std::function<void(std::vector<uint8_t>&)> edit, size_t icd = 0) {
        return [edit, icd](Ctx& x) {
            auto b = icd ? x.c.CapsuleBytes(MakeSqe(kOpWrite, 1, Sgl::kInCapsule,
                                                    static_cast<uint32_t>(icd), 9),
                                            Pattern(icd))
                         : KeepAlive(x.c);
            edit(b);
            return b;
        };
    };
    v.push_back({"CapsuleHlen", true, false, false, false, capsule([](auto& b) { b[2] = 71; }),
                 kFesHeader, 2});
    v.push_back({"CapsuleHdgstfNotNegotiated", true, false, false, false,
                 capsule([](auto& b) {
                     b[1] |= 1;
                     Put32(&b[4], 76);
                     b.resize(76);
                 }),
                 kFesHeader, 1});
    v.push_back({"CapsuleHdgstfMissing", true, true, false, false, capsule([](auto& b) {
                     b[1] &= ~1;
                     Put32(&b[4], 72);
                     b.resize(72);
                 }),
                 kFesHeader, 1});
    v.push_back({"CapsuleDdgstfWithoutData", true, false, true, false,
                 capsule([](auto& b) { b[1] |= 2; }), kFesHeader, 1});
    v.push_back({"CapsuleDdgstfMissingWithData", true, false, true, false,
                 capsule([](auto& b) {
                     b[1] &= ~2;
                     Put32(&b[4], Get32(&b[4]) - 4);
                     b.resize(b.size() - 4);
                 },
                         512),
                 kFesHeader, 1});
    v.push_back({"CapsuleHugePlen", true, false, false, false,
                 capsule([](auto& b) {
                     b[3] = 72;
                     Put32(&b[4], 0xffffffff);
                 }),
                 kFesLimit, -1});
    v.push_back({"CapsuleInCapsuleDataAboveLimit", true, false, false, false,
                 capsule([](auto&) {}, 8196), kFesLimit, -1});
    v.push_back({"CapsulePdoInsideHeader", true, false, false, false,
                 capsule([](auto& b) { b[3] = 64; }, 512), kFesHeader, 3});
    v.push_back({"CapsulePdoUnaligned", true, false, false, false,
                 capsule([](auto& b) { b[3] = 74; }, 512), kFesHeader, 3});
    v.push_back({"CapsulePdoAfterData", true, false, false, false,
                 capsule([](auto& b) { b[3] = 252; }, 128), kFesHeader, 4});
    v.push_back({"CapsulePlenShorterThanHeader", true, false, false, false,
                 capsule([](auto& b) {
                     Put32(&b[4], 40);
                     b.resize(40);
                 }),
                 kFesHeader, 4});
    // --- H2CData ---
    auto h2c = [](uint32_t datao, size_t len, bool last,
                  std::function<void(std::vector<uint8_t>&)> edit = nullptr,
                  int ttag_delta = 0, uint16_t cccid = 9) {
        return [=](Ctx& x) {
            auto b = x.c.H2CDataBytes(cccid, static_cast<uint16_t>(x.ttag + ttag_delta), datao,
                                      Pattern(len), last);
            if (edit) edit(b);
            return b;
        };
    };
    v.push_back({"H2CDataUnknownTtag", true, false, false, true,
                 h2c(0, kWriteLen, true, nullptr, 1), kFesHeader, 10});
    v.push_back({"H2CDataTtagOutOfTable", true, false, false, true,
                 h2c(0, kWriteLen, true, nullptr, 5000), kFesHeader, 10});
    v.push_back({"H2CDataWithoutAnyR2t", true, false, false, false, h2c(0, 512, true),
                 kFesHeader, 10});
    v.push_back({"H2CDataWrongCccid", true, false, false, true,
                 h2c(0, kWriteLen, true, nullptr, 0, 10), kFesHeader, 8});
    v.push_back({"H2CDataSkipsAhead", true, false, false, true, h2c(4096, 4096, true),
                 kFesOutOfRange, -1});
    v.push_back({"H2CDataPastR2tEnd", true, false, false, true, h2c(0, kWriteLen + 512, true),
                 kFesOutOfRange, -1});
    v.push_back({"H2CDataDatalMismatch", true, false, false, true,
                 h2c(0, kWriteLen, true, [](auto& b) { Put32(&b[16], 4096); }), kFesHeader, 16});
    v.push_back({"H2CDataAboveMaxH2CData", true, false, false, true,
                 h2c(0, 512, true, [](auto& b) { Put32(&b[4], 24 + 128 * 1024 + 4); }),
                 kFesLimit, -1});
    v.push_back({"H2CDataLastMissing", true, false, false, true, h2c(0, kWriteLen, false),
                 kFesHeader, 1});
    v.push_back({"H2CDataLastEarly", true, false, false, true, h2c(0, 4096, true),
                 kFesHeader, 1});
    v.push_back({"H2CDataSuccessFlag", true, false, false, true,
                 h2c(0, kWriteLen, true, [](auto& b) { b[1] |= 8; }), kFesHeader, 1});
    v.push_back({"H2CDataWithoutData", true, false, false, true, [](Ctx& x) {
                     auto b = x.c.H2CDataBytes(9, x.ttag, 0, {}, true);
                     return b;
                 },
                 kFesHeader, 4});
    v.push_back({"H2CDataHlen", true, false, false, true,
                 h2c(0, kWriteLen, true, [](auto& b) { b[2] = 28; }), kFesHeader, 2});
    v.push_back({"H2CTermReqBadPlen", true, false, false, false, [](Ctx& x) {
                     auto b = x.c.Build(0x02, 0, std::vector<uint8_t>(24, 0), {});
                     Put32(&b[4], 200);
                     return b;
                 },
                 kFesHeader, 4});
    return v;
}

class MalformedPduTest : public TcpServerFixture,
                         public ::testing::WithParamInterface<MalformedCase> {};

TEST_P(MalformedPduTest, AnsweredWithC2HTermReqAndClose) {
    const MalformedCase& k = GetParam();
    StartServer();
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    uint16_t ttag = 0;
    if (k.handshake) {
        ASSERT_TRUE(c.Handshake(k.hd, k.dd));
        FabricsConnect(c, 1);
        if (k.r2t) {
            ASSERT_TRUE(c.SendCapsule(MakeSqe(kOpWrite, 9, Sgl::kTransport, kWriteLen, 9)));
            auto p = c.RecvPdu();
            ASSERT_TRUE(p);
            ASSERT_EQ(p->type(), 0x09);
            ttag = Get16(&p->hdr[10]);
        }
    }
    Ctx x{c, ttag};
    std::vector<uint8_t> bytes = k.bytes(x);
    ASSERT_TRUE(c.Send(bytes));
    ExpectTermReq(c, k.fes, k.fei, bytes);
    EXPECT_EQ(server_->Stats().term_reqs_sent, 1u);
    for (int i = 0; i < 200 && target_->disconnects.load() == 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(target_->disconnects.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(AllCases, MalformedPduTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return std::string(info.param.name); });

class MalformedLimitsTest : public TcpServerFixture {};

TEST_F(MalformedLimitsTest, MoreOutstandingCommandsThanAllowed) {
    tcp::TcpServerOptions o;
    o.transport.max_outstanding = 4;
    StartServer(o);
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    ASSERT_TRUE(c.Handshake(false, false));
    FabricsConnect(c, 1);
    for (uint16_t i = 0; i < 4; i++)
        ASSERT_TRUE(c.SendCapsule(MakeSqe(kOpAer, static_cast<uint16_t>(10 + i), Sgl::kNone, 0)));
    auto fifth = c.CapsuleBytes(MakeSqe(kOpAer, 14, Sgl::kNone, 0));
    ASSERT_TRUE(c.Send(fifth));
    ExpectTermReq(c, kFesSequence, 0, fifth);
}

TEST_F(MalformedLimitsTest, HostTermReqClosesWithoutReply) {
    StartServer();
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    ASSERT_TRUE(c.Handshake(false, false));
    std::vector<uint8_t> h(24, 0);
    Put16(&h[8], 1);
    std::vector<uint8_t> copy(8, 0xee);
    ASSERT_TRUE(c.Send(c.Build(0x02, 0, h, copy)));
    EXPECT_TRUE(c.WaitClosed());
    EXPECT_EQ(server_->Stats().term_reqs_received, 1u);
    EXPECT_EQ(server_->Stats().term_reqs_sent, 0u);
}

TEST_F(MalformedLimitsTest, GarbageAfterTermReqIsIgnored) {
    StartServer();
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    std::vector<uint8_t> junk(64 * 1024, 0xa5);  // type 0xa5: invalid at once
    ASSERT_TRUE(c.Send(junk.data(), 8));
    ExpectTermReq(c, kFesHeader, 0, junk);
    c.Send(junk);  // may fail: peer closed
    EXPECT_EQ(server_->Stats().term_reqs_sent, 1u);
}

TEST_F(MalformedLimitsTest, TermReqIsFlushedEvenIfHostNeverReads) {
    tcp::TcpServerOptions o;
    o.term_linger = std::chrono::milliseconds(200);
    o.transport.max_c2h_data = 65536;
    StartServer(o);
    TestClient c;
    ASSERT_TRUE(c.Connect(server_->port()));
    int small = 4096;
    setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    ASSERT_TRUE(c.Handshake(false, false));
    FabricsConnect(c, 1);
    // Lots of read data the host does not read, then a malformed PDU.
    for (uint16_t i = 0; i < 40; i++)
        ASSERT_TRUE(c.SendCapsule(MakeSqe(kOpRead, i, Sgl::kTransport, 1 << 20, 1)));
    // Let the server execute every read and queue the data it cannot send (a fixed sleep was too
    // short on a loaded machine: reads not yet executed are dropped and the TermReq goes out at
    // once), then break the protocol: the C2HTermReq sits behind megabytes nobody reads.
    auto queued = [&] {
        auto st = server_->Stats();
        auto in = [&](tcp::RequestState r) { return st.requests_in_state[static_cast<size_t>(r)]; };
        // Reads beyond the data budget wait for buffers (kNeedBuffer) and stay there.
        return in(tcp::RequestState::kNew) == 0 && in(tcp::RequestState::kExecuting) == 0 &&
               in(tcp::RequestState::kTransferringC2h) >= 4;
    };
    for (int i = 0; i < 1000 && !queued(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(queued()) << "the reads never queued up behind the unread socket";
    auto bad = KeepAlive(c);
    bad[2] = 70;
    // Taken before the send, so the server cannot have started lingering earlier: the bound
    // below holds however slowly this thread is scheduled (no timing race on a loaded machine).
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(c.Send(bad));
    // The server gives up after term_linger and closes: the connection goes away.
    for (int i = 0; i < 1000 && server_->Stats().connections_active != 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(server_->Stats().connections_active, 0u);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, o.term_linger) << "closed before the linger time";
    EXPECT_EQ(target_->disconnects.load(), 1);
}

TEST_F(MalformedLimitsTest, AConnectionThatNeverSendsICReqIsClosed) {
    // Silent, and stalled half-way through the ICReq: both are closed after icreq_timeout, while
    // a host that completed ICReq and then goes quiet stays connected (its keep-alive is the
    // controller's business, not the transport's).
    tcp::TcpServerOptions o;
    o.icreq_timeout = std::chrono::milliseconds(300);
    StartServer(o);
    TestClient silent, half, good;
    // Before the connections exist, so no deadline can precede it however slowly this runs.
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(silent.Connect(server_->port()));
    ASSERT_TRUE(half.Connect(server_->port()));
    ASSERT_TRUE(good.Connect(server_->port()));
    ASSERT_TRUE(good.Handshake(false, false));
    auto ic = TestClient::IcReqBytes(false, false);
    ASSERT_TRUE(half.Send(ic.data(), 40));
    EXPECT_TRUE(silent.WaitClosed(10000));
    EXPECT_TRUE(half.WaitClosed(10000));
    EXPECT_GE(std::chrono::steady_clock::now() - t0, o.icreq_timeout)
        << "closed before the ICReq timeout";
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    EXPECT_EQ(server_->Stats().connections_active, 1u) << "the connection that completed ICReq was closed too";
    EXPECT_FALSE(good.WaitClosed(0));
}

}  // namespace
}  // namespace qzns::nvmf::testing
