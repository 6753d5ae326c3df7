// The PDU header validator on its own: layouts, limits, FES/FEI for each violation.
#include <gtest/gtest.h>

#include <cstring>

#include "nvmf/tcp/pdu.h"
#include "util/crc32c.h"

namespace qzns::nvmf::tcp {
namespace {

PduCommonHeader Ch(uint8_t type, uint8_t flags, uint8_t hlen, uint8_t pdo, uint32_t plen) {
    PduCommonHeader ch{};
    ch.type = type;
    ch.flags = flags;
    ch.hlen = hlen;
    ch.pdo = pdo;
    ch.plen.set(plen);
    return ch;
}

PduRxContext Ready(bool hd = false, bool dd = false) {
    PduRxContext c;
    c.ic_done = true;
    c.hdgst = hd;
    c.ddgst = dd;
    c.max_h2c_data = 65536;
    c.max_in_capsule_data = 8192;
    return c;
}

void ExpectError(const PduResult<PduLayout>& r, Fes fes, uint32_t fei) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().fes, fes) << r.error().reason;
    EXPECT_EQ(r.error().fei, fei) << r.error().reason;
}

TEST(TcpPdu, WireStructSizes) {
    EXPECT_EQ(sizeof(IcReqPdu), 128u);
    EXPECT_EQ(sizeof(IcRespPdu), 128u);
    EXPECT_EQ(sizeof(CapsuleCmdPdu), 72u);
    EXPECT_EQ(sizeof(CapsuleRespPdu), 24u);
    EXPECT_EQ(sizeof(DataPdu), 24u);
    EXPECT_EQ(sizeof(R2tPdu), 24u);
    EXPECT_EQ(sizeof(TermReqPdu), 24u);
}

TEST(TcpPdu, IcReqLayout) {
    PduRxContext ctx;
    auto r = ParsePduHeader(Ch(0, 0, 128, 0, 128), ctx);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().header_len, 128u);
    EXPECT_EQ(r.value().data_len, 0u);
}

TEST(TcpPdu, CapsuleWithoutDataIgnoresPdo) {
    auto r = ParsePduHeader(Ch(4, 0, 72, 0, 72), Ready());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().data_len, 0u);
    auto r2 = ParsePduHeader(Ch(4, kFlagHdgst, 72, 0, 76), Ready(true, true));
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ(r2.value().header_len, 76u);
    EXPECT_EQ(r2.value().ddgst_len, 0u);
}

TEST(TcpPdu, CapsuleWithDataAndDigests) {
    auto r = ParsePduHeader(Ch(4, kFlagHdgst | kFlagDdgst, 72, 76, 76 + 1024 + 4),
                            Ready(true, true));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().header_len, 76u);
    EXPECT_EQ(r.value().pad_len, 0u);
    EXPECT_EQ(r.value().data_len, 1024u);
    EXPECT_EQ(r.value().ddgst_len, 4u);
}

TEST(TcpPdu, PaddingBeforeDataIsAllowed) {
    auto r = ParsePduHeader(Ch(6, 0, 24, 32, 32 + 100), Ready());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().pad_len, 8u);
    EXPECT_EQ(r.value().data_len, 100u);
}

TEST(TcpPdu, InCapsuleDataBoundedByLimit) {
    EXPECT_TRUE(ParsePduHeader(Ch(4, 0, 72, 72, 72 + 8192), Ready()).ok());
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 72, 72 + 8193), Ready()), Fes::kDataLimitExceeded,
                0);
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 72, 0xffffffff), Ready()), Fes::kDataLimitExceeded,
                0);
}

TEST(TcpPdu, H2CDataBoundedByMaxH2CData) {
    EXPECT_TRUE(ParsePduHeader(Ch(6, 0, 24, 24, 24 + 65536), Ready()).ok());
    ExpectError(ParsePduHeader(Ch(6, 0, 24, 24, 24 + 65537), Ready()), Fes::kDataLimitExceeded,
                0);
    ExpectError(ParsePduHeader(Ch(6, kFlagDdgst, 24, 24, 0xffffffff), Ready(false, true)),
                Fes::kDataLimitExceeded, 0);
}

TEST(TcpPdu, SequenceErrors) {
    PduRxContext fresh;
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 0, 72), fresh), Fes::kPduSequenceError, 0);
    ExpectError(ParsePduHeader(Ch(6, 0, 24, 24, 48), fresh), Fes::kPduSequenceError, 0);
    ExpectError(ParsePduHeader(Ch(0, 0, 128, 0, 128), Ready()), Fes::kPduSequenceError, 0);
    // H2CTermReq is always acceptable.
    EXPECT_TRUE(ParsePduHeader(Ch(2, 0, 24, 0, 24), fresh).ok());
}

TEST(TcpPdu, HeaderFieldErrorsCarryFieldOffset) {
    const Fes h = Fes::kInvalidHeaderField;
    ExpectError(ParsePduHeader(Ch(0x0a, 0, 24, 0, 24), Ready()), h, 0);
    ExpectError(ParsePduHeader(Ch(0x09, 0, 24, 0, 24), Ready()), h, 0);
    ExpectError(ParsePduHeader(Ch(0xff, 0, 24, 0, 24), Ready()), h, 0);
    ExpectError(ParsePduHeader(Ch(0, 0, 127, 0, 128), PduRxContext{}), h, 2);
    ExpectError(ParsePduHeader(Ch(0, 0, 128, 4, 128), PduRxContext{}), h, 3);
    ExpectError(ParsePduHeader(Ch(0, 0, 128, 0, 129), PduRxContext{}), h, 4);
    ExpectError(ParsePduHeader(Ch(0, kFlagHdgst, 128, 0, 128), PduRxContext{}), h, 1);
    ExpectError(ParsePduHeader(Ch(4, 0, 73, 0, 73), Ready()), h, 2);
    ExpectError(ParsePduHeader(Ch(4, kFlagHdgst, 72, 0, 76), Ready()), h, 1);
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 0, 72), Ready(true)), h, 1);
    ExpectError(ParsePduHeader(Ch(4, kFlagDdgst, 72, 0, 72), Ready(false, true)), h, 1);
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 72, 80), Ready(false, true)), h, 1);
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 0, 60), Ready()), h, 4);
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 70, 100), Ready()), h, 3);
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 74, 100), Ready()), h, 3);
    ExpectError(ParsePduHeader(Ch(4, 0, 72, 100, 100), Ready()), h, 4);
    ExpectError(ParsePduHeader(Ch(6, 0, 24, 0, 24), Ready()), h, 4);
    ExpectError(ParsePduHeader(Ch(6, kFlagDataSuccess, 24, 24, 48), Ready()), h, 1);
    ExpectError(ParsePduHeader(Ch(2, 0, 24, 0, 153), Ready()), h, 4);
    ExpectError(ParsePduHeader(Ch(2, 0, 25, 0, 25), Ready()), h, 2);
}

TEST(TcpPdu, HeaderDigestChecked) {
    uint8_t hdr[76] = {};
    hdr[0] = 4;
    hdr[1] = kFlagHdgst;
    hdr[2] = 72;
    hdr[4] = 76;
    auto l = ParsePduHeader(*reinterpret_cast<PduCommonHeader*>(hdr), Ready(true));
    ASSERT_TRUE(l.ok());
    StoreDigest(hdr + 72, Crc32c(hdr, 72));
    EXPECT_TRUE(CheckPduHeader(hdr, l.value()).ok());
    hdr[20] ^= 1;
    auto bad = CheckPduHeader(hdr, l.value());
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().fes, Fes::kHeaderDigestError);
}

TEST(TcpPdu, IcReqFieldChecks) {
    IcReqPdu req{};
    req.ch.type = 0;
    req.ch.hlen = 128;
    req.ch.plen.set(128);
    auto l = ParsePduHeader(req.ch, PduRxContext{});
    ASSERT_TRUE(l.ok());
    auto bytes = [&] { return std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&req), 128); };
    EXPECT_TRUE(CheckPduHeader(bytes(), l.value()).ok());
    req.hpda = 31;
    EXPECT_TRUE(CheckPduHeader(bytes(), l.value()).ok());
    req.hpda = 32;
    auto e = CheckPduHeader(bytes(), l.value());
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.error().fei, 10u);
    req.hpda = 0;
    req.pfv.set(1);
    e = CheckPduHeader(bytes(), l.value());
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.error().fei, 8u);
}

TEST(TcpPdu, H2CDataDatalMustMatchPayload) {
    DataPdu d{};
    d.ch.type = 6;
    d.ch.hlen = 24;
    d.ch.pdo = 24;
    d.ch.plen.set(24 + 100);
    d.datal.set(100);
    auto l = ParsePduHeader(d.ch, Ready());
    ASSERT_TRUE(l.ok());
    auto bytes = std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&d), 24);
    EXPECT_TRUE(CheckPduHeader(bytes, l.value()).ok());
    d.datal.set(99);
    auto e = CheckPduHeader(bytes, l.value());
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.error().fes, Fes::kInvalidHeaderField);
    EXPECT_EQ(e.error().fei, 16u);
}

}  // namespace
}  // namespace qzns::nvmf::tcp
