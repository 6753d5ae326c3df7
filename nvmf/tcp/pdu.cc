#include "nvmf/tcp/pdu.h"

#include <cstring>

#include "util/crc32c.h"

namespace qzns::nvmf::tcp {

const char* PduTypeName(uint8_t type) {
    switch (static_cast<PduType>(type)) {
    case PduType::kIcReq: return "ICReq";
    case PduType::kIcResp: return "ICResp";
    case PduType::kH2CTermReq: return "H2CTermReq";
    case PduType::kC2HTermReq: return "C2HTermReq";
    case PduType::kCapsuleCmd: return "CapsuleCmd";
    case PduType::kCapsuleResp: return "CapsuleResp";
    case PduType::kH2CData: return "H2CData";
    case PduType::kC2HData: return "C2HData";
    case PduType::kR2T: return "R2T";
    }
    return "unknown";
}

uint32_t DigestOf(const void* p, size_t len) { return Crc32c(p, len); }

void StoreDigest(uint8_t* dst, uint32_t crc) { reinterpret_cast<le32*>(dst)->set(crc); }

uint32_t LoadDigest(const uint8_t* src) { return reinterpret_cast<const le32*>(src)->get(); }

namespace {

PduError HeaderField(uint32_t fei, const char* why) {
    return PduError{Fes::kInvalidHeaderField, fei, why};
}

// Shared layout rules of the two host PDUs that may carry data (CapsuleCmd, H2CData): digest
// flags must match what ICReq/ICResp negotiated, PDO must leave room for header and digest and
// be dword aligned (CPDA = 0), and the payload must fit before the data digest.
PduResult<PduLayout> DataLayout(const PduCommonHeader& ch, const PduRxContext& ctx,
                                uint32_t hlen, bool data_required, uint32_t max_data) {
    PduLayout l;
    l.type = static_cast<PduType>(ch.type);
    l.flags = ch.flags;
    l.plen = ch.plen.get();
    l.hlen = hlen;
    if (ch.hlen != hlen) return HeaderField(kFeiHlen, "wrong hlen for PDU type");
    if (ch.flags & kFlagDataSuccess) return HeaderField(kFeiFlags, "SUCCESS flag from host");
    l.hdgst = (ch.flags & kFlagHdgst) != 0;
    if (l.hdgst != ctx.hdgst) return HeaderField(kFeiFlags, "HDGSTF differs from negotiated");
    l.header_len = hlen + (l.hdgst ? kDigestLen : 0);
    if (l.plen < l.header_len) return HeaderField(kFeiPlen, "plen shorter than header");
    const bool ddgstf = (ch.flags & kFlagDdgst) != 0;
    if (l.plen == l.header_len) {
        if (data_required) return HeaderField(kFeiPlen, "data PDU without data");
        // No payload: PDO is reserved and ignored (Linux and SPDK send 0).
        if (ddgstf) return HeaderField(kFeiFlags, "DDGSTF on PDU without data");
        return l;
    }
    if (ddgstf != ctx.ddgst) return HeaderField(kFeiFlags, "DDGSTF differs from negotiated");
    l.ddgst_len = ddgstf ? kDigestLen : 0;
    if (ch.pdo < l.header_len || ch.pdo % 4 != 0)
        return HeaderField(kFeiPdo, "pdo inside header or not dword aligned");
    if (static_cast<uint64_t>(ch.pdo) + l.ddgst_len >= l.plen)
        return HeaderField(kFeiPlen, "plen leaves no data after pdo");
    l.pad_len = ch.pdo - l.header_len;
    uint64_t data = static_cast<uint64_t>(l.plen) - ch.pdo - l.ddgst_len;
    if (data > max_data) return PduError{Fes::kDataLimitExceeded, 0, "PDU data exceeds limit"};
    l.data_len = static_cast<uint32_t>(data);
    return l;
}

}  // namespace

PduResult<PduLayout> ParsePduHeader(const PduCommonHeader& ch, const PduRxContext& ctx) {
    const uint32_t plen = ch.plen.get();
    switch (static_cast<PduType>(ch.type)) {
    case PduType::kIcReq: {
        if (ctx.ic_done) return PduError{Fes::kPduSequenceError, 0, "second ICReq"};
        if (ch.hlen != kIcPduLen) return HeaderField(kFeiHlen, "ICReq hlen != 128");
        if (ch.flags & (kFlagHdgst | kFlagDdgst | kFlagDataLast | kFlagDataSuccess))
            return HeaderField(kFeiFlags, "flags on ICReq");
        if (ch.pdo != 0) return HeaderField(kFeiPdo, "ICReq pdo != 0");
        if (plen != kIcPduLen) return HeaderField(kFeiPlen, "ICReq plen != 128");
        PduLayout l;
        l.type = PduType::kIcReq;
        l.plen = l.hlen = l.header_len = kIcPduLen;
        return l;
    }
    case PduType::kH2CTermReq: {
        // Accepted in any state: the host gives up and we only close.
        if (ch.hlen != kTermReqHlen) return HeaderField(kFeiHlen, "H2CTermReq hlen != 24");
        if (plen < kTermReqHlen || plen > kTermReqHlen + kTermReqMaxData)
            return HeaderField(kFeiPlen, "H2CTermReq plen out of range");
        PduLayout l;
        l.type = PduType::kH2CTermReq;
        l.plen = plen;
        l.hlen = l.header_len = kTermReqHlen;
        l.data_len = plen - kTermReqHlen;
        return l;
    }
    case PduType::kCapsuleCmd:
        if (!ctx.ic_done) return PduError{Fes::kPduSequenceError, 0, "CapsuleCmd before ICReq"};
        return DataLayout(ch, ctx, kCapsuleCmdHlen, false, ctx.max_in_capsule_data);
    case PduType::kH2CData:
        if (!ctx.ic_done) return PduError{Fes::kPduSequenceError, 0, "H2CData before ICReq"};
        return DataLayout(ch, ctx, kDataHlen, true, ctx.max_h2c_data);
    case PduType::kIcResp:
    case PduType::kC2HTermReq:
    case PduType::kCapsuleResp:
    case PduType::kC2HData:
    case PduType::kR2T:
        return HeaderField(kFeiType, "controller-to-host PDU type from host");
    }
    return HeaderField(kFeiType, "unknown PDU type");
}

PduResult<bool> CheckPduHeader(std::span<const uint8_t> header, const PduLayout& l) {
    if (header.size() < l.header_len) return HeaderField(kFeiPlen, "short header");
    if (l.hdgst) {
        uint32_t want = DigestOf(header.data(), l.hlen);
        if (LoadDigest(header.data() + l.hlen) != want)
            return PduError{Fes::kHeaderDigestError, 0, "header digest mismatch"};
    }
    switch (l.type) {
    case PduType::kIcReq: {
        IcReqPdu req;
        std::memcpy(&req, header.data(), sizeof(req));
        if (req.pfv.get() != 0) return HeaderField(offsetof(IcReqPdu, pfv), "ICReq PFV != 0");
        if (req.hpda > kMaxHpda) return HeaderField(offsetof(IcReqPdu, hpda), "ICReq HPDA > 31");
        break;
    }
    case PduType::kH2CData: {
        DataPdu d;
        std::memcpy(&d, header.data(), sizeof(d));
        if (d.datal.get() != l.data_len)
            return HeaderField(offsetof(DataPdu, datal), "H2CData DATAL != payload length");
        break;
    }
    default:
        break;
    }
    return true;
}

}  // namespace qzns::nvmf::tcp
