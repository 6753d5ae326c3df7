// NVMe/TCP PDU wire formats (NVMe/TCP Transport Specification 1.0; Linux
// include/linux/nvme-tcp.h agrees byte for byte) and the strict receive-side header checks a
// controller applies to what a host sends. Every structure is packed little-endian bytes with its
// layout pinned by static_assert; a violation maps to the Fatal Error Status the controller puts
// in a C2HTermReq before it closes the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <variant>

#include "hw/nvme/fabrics-target.h"
#include "util/endian.h"

namespace qzns::nvmf::tcp {

enum class PduType : uint8_t {
    kIcReq = 0x00,
    kIcResp = 0x01,
    kH2CTermReq = 0x02,
    kC2HTermReq = 0x03,
    kCapsuleCmd = 0x04,
    kCapsuleResp = 0x05,
    kH2CData = 0x06,
    kC2HData = 0x07,
    kR2T = 0x09,
};
const char* PduTypeName(uint8_t type);

// Common header FLAGS.
inline constexpr uint8_t kFlagHdgst = 1u << 0;        // HDGSTF: header digest present
inline constexpr uint8_t kFlagDdgst = 1u << 1;        // DDGSTF: data digest present
inline constexpr uint8_t kFlagDataLast = 1u << 2;     // last data PDU of a transfer (or of an R2T)
inline constexpr uint8_t kFlagDataSuccess = 1u << 3;  // C2HData only, with LAST: no CapsuleResp

// ICReq/ICResp DGST field.
inline constexpr uint8_t kDigestHeader = 1u << 0;
inline constexpr uint8_t kDigestData = 1u << 1;

inline constexpr uint32_t kDigestLen = 4;         // CRC32C, little-endian on the wire
inline constexpr uint32_t kIcPduLen = 128;        // ICReq/ICResp hlen == plen
inline constexpr uint32_t kCapsuleCmdHlen = 72;   // 8 + 64-byte SQE
inline constexpr uint32_t kCapsuleRespHlen = 24;  // 8 + 16-byte CQE
inline constexpr uint32_t kDataHlen = 24;         // H2CData, C2HData
inline constexpr uint32_t kR2tHlen = 24;
inline constexpr uint32_t kTermReqHlen = 24;
inline constexpr uint32_t kTermReqMaxData = 128;  // copy of the offending header (Linux: plen<=152)
inline constexpr uint32_t kMinMaxH2CData = 4096;  // Linux NVME_TCP_MIN_MAXH2CDATA
inline constexpr uint32_t kMaxHpda = 31;          // HPDA/CPDA are 0's based dwords, 5 bits

// C2HTermReq / H2CTermReq Fatal Error Status.
enum class Fes : uint16_t {
    kInvalidHeaderField = 0x01,  // FEI = byte offset of the field in error
    kPduSequenceError = 0x02,
    kHeaderDigestError = 0x03,
    kDataOutOfRange = 0x04,
    kDataLimitExceeded = 0x05,  // "R2T Limit Exceeded" in older revisions
    kUnsupportedParameter = 0x06,  // FEI = byte offset of the parameter
};

struct PduCommonHeader {
    uint8_t type;
    uint8_t flags;
    uint8_t hlen;
    uint8_t pdo;
    le32 plen;
};
static_assert(sizeof(PduCommonHeader) == 8);
static_assert(offsetof(PduCommonHeader, hlen) == 2 && offsetof(PduCommonHeader, plen) == 4);

struct IcReqPdu {
    PduCommonHeader ch;
    le16 pfv;
    uint8_t hpda;
    uint8_t dgst;
    le32 maxr2t;  // 0's based
    uint8_t rsvd16[112];
};
static_assert(sizeof(IcReqPdu) == kIcPduLen);
static_assert(offsetof(IcReqPdu, pfv) == 8 && offsetof(IcReqPdu, hpda) == 10 &&
              offsetof(IcReqPdu, dgst) == 11 && offsetof(IcReqPdu, maxr2t) == 12);

struct IcRespPdu {
    PduCommonHeader ch;
    le16 pfv;
    uint8_t cpda;
    uint8_t dgst;
    le32 maxh2cdata;
    uint8_t rsvd16[112];
};
static_assert(sizeof(IcRespPdu) == kIcPduLen);
static_assert(offsetof(IcRespPdu, cpda) == 10 && offsetof(IcRespPdu, maxh2cdata) == 12);

struct CapsuleCmdPdu {
    PduCommonHeader ch;
    nvme::SqeBytes sqe;
};
static_assert(sizeof(CapsuleCmdPdu) == kCapsuleCmdHlen && offsetof(CapsuleCmdPdu, sqe) == 8);

struct CapsuleRespPdu {
    PduCommonHeader ch;
    nvme::CqeBytes cqe;
};
static_assert(sizeof(CapsuleRespPdu) == kCapsuleRespHlen && offsetof(CapsuleRespPdu, cqe) == 8);

// H2CData and C2HData share this layout (C2HData: ttag reserved, 0).
struct DataPdu {
    PduCommonHeader ch;
    le16 cccid;
    le16 ttag;
    le32 datao;
    le32 datal;
    uint8_t rsvd20[4];
};
static_assert(sizeof(DataPdu) == kDataHlen);
static_assert(offsetof(DataPdu, cccid) == 8 && offsetof(DataPdu, ttag) == 10 &&
              offsetof(DataPdu, datao) == 12 && offsetof(DataPdu, datal) == 16);

struct R2tPdu {
    PduCommonHeader ch;
    le16 cccid;
    le16 ttag;
    le32 r2to;
    le32 r2tl;
    uint8_t rsvd20[4];
};
static_assert(sizeof(R2tPdu) == kR2tHlen);
static_assert(offsetof(R2tPdu, ttag) == 10 && offsetof(R2tPdu, r2to) == 12 &&
              offsetof(R2tPdu, r2tl) == 16);

// H2CTermReq and C2HTermReq; up to 128 bytes of the offending PDU header follow.
struct TermReqPdu {
    PduCommonHeader ch;
    le16 fes;
    le32 fei;
    uint8_t rsvd14[10];
};
static_assert(sizeof(TermReqPdu) == kTermReqHlen);
static_assert(offsetof(TermReqPdu, fes) == 8 && offsetof(TermReqPdu, fei) == 10);

// Field offsets used as FEI values.
inline constexpr uint32_t kFeiType = offsetof(PduCommonHeader, type);
inline constexpr uint32_t kFeiFlags = offsetof(PduCommonHeader, flags);
inline constexpr uint32_t kFeiHlen = offsetof(PduCommonHeader, hlen);
inline constexpr uint32_t kFeiPdo = offsetof(PduCommonHeader, pdo);
inline constexpr uint32_t kFeiPlen = offsetof(PduCommonHeader, plen);

// Why a PDU is rejected: what goes into the C2HTermReq, plus text for the log.
struct PduError {
    Fes fes;
    uint32_t fei;  // meaningful for kInvalidHeaderField / kUnsupportedParameter, else 0
    const char* reason;
};

template <typename T>
class [[nodiscard]] PduResult {
public:
    PduResult(T v) : v_(std::move(v)) {}
    PduResult(PduError e) : v_(e) {}
    bool ok() const { return v_.index() == 0; }
    const T& value() const { return std::get<0>(v_); }
    const PduError& error() const { return std::get<1>(v_); }

private:
    std::variant<T, PduError> v_;
};

// What the receiver knows when a common header arrives.
struct PduRxContext {
    bool ic_done = false;  // ICReq/ICResp exchanged
    bool hdgst = false;    // negotiated header digest
    bool ddgst = false;    // negotiated data digest
    uint32_t max_h2c_data = 0;          // MAXH2CDATA we advertised
    uint32_t max_in_capsule_data = 0;   // largest in-capsule data we accept
};

// Where the pieces of one host PDU are, derived from a validated common header.
struct PduLayout {
    PduType type{};
    uint8_t flags = 0;
    uint32_t plen = 0;
    uint32_t hlen = 0;
    uint32_t header_len = 0;  // hlen + header digest: bytes to read before any padding
    uint32_t pad_len = 0;     // bytes between header(+digest) and PDO, ignored
    uint32_t data_len = 0;    // payload bytes (for H2CTermReq: the copied header)
    uint32_t ddgst_len = 0;   // 0 or 4
    bool hdgst = false;
};

// Checks the 8-byte common header of a PDU received from a host: type allowed in this state,
// hlen for the type, flags against the negotiated digests, pdo and plen (bounded by MAXH2CDATA for
// H2CData and by the in-capsule data limit for CapsuleCmd). Never reads beyond 8 bytes.
PduResult<PduLayout> ParsePduHeader(const PduCommonHeader& ch, const PduRxContext& ctx);

// Checks the complete header (hlen bytes plus the header digest when layout.hdgst): the digest,
// then the type-specific fields that need no connection state (ICReq PFV/HPDA, H2CData DATAL
// against the payload length).
PduResult<bool> CheckPduHeader(std::span<const uint8_t> header, const PduLayout& layout);

// CRC32C helpers for digests (stored little-endian after the covered bytes).
uint32_t DigestOf(const void* p, size_t len);
void StoreDigest(uint8_t* dst, uint32_t crc);
uint32_t LoadDigest(const uint8_t* src);

}  // namespace qzns::nvmf::tcp
