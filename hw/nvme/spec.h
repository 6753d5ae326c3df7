// NVMe structures as they appear on the wire and in host memory: NVMe Base 2.0, the NVM and
// Zoned Namespace command sets (ZNS 1.1) and NVMe over Fabrics. Every structure is a
// standard-layout struct of little-endian field types with its size and key offsets checked;
// fields carry the spec's names, reserved bytes are named by their offset, and bit fields are
// read through the shift/mask helpers below (no C bitfields).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "util/endian.h"

namespace qzns::nvme {

// Bits hi..lo of a dword (inclusive), e.g. Bits(cdw10, 7, 0) for CNS.
constexpr uint32_t Bits(uint32_t v, unsigned hi, unsigned lo) {
    return (v >> lo) & ((hi - lo == 31) ? 0xffffffffu : ((1u << (hi - lo + 1)) - 1));
}
constexpr uint64_t Bits64(uint64_t v, unsigned hi, unsigned lo) {
    return (v >> lo) & ((hi - lo == 63) ? ~0ull : ((1ull << (hi - lo + 1)) - 1));
}
constexpr bool Bit(uint32_t v, unsigned n) { return (v >> n) & 1; }

// Copies `s` into a fixed-size ASCII field, space padded (SN/MN/FR) or NUL padded (NQNs).
template <size_t N>
void SetAscii(uint8_t (&dst)[N], const char* s, char pad) {
    size_t n = std::strlen(s);
    if (n > N) n = N;
    std::memcpy(dst, s, n);
    std::memset(dst + n, pad, N - n);
}

// ---------------------------------------------------------------------------------------------
// Opcodes
namespace opc {
// Admin command set (Base 2.0 Figure 143).
constexpr uint8_t kDeleteIoSq = 0x00;
constexpr uint8_t kCreateIoSq = 0x01;
constexpr uint8_t kGetLogPage = 0x02;
constexpr uint8_t kDeleteIoCq = 0x04;
constexpr uint8_t kCreateIoCq = 0x05;
constexpr uint8_t kIdentify = 0x06;
constexpr uint8_t kAbort = 0x08;
constexpr uint8_t kSetFeatures = 0x09;
constexpr uint8_t kGetFeatures = 0x0a;
constexpr uint8_t kAsyncEventRequest = 0x0c;
constexpr uint8_t kKeepAlive = 0x18;
constexpr uint8_t kDoorbellBufferConfig = 0x7c;  // PCI only (Base 2.0 5.8)
constexpr uint8_t kFabrics = 0x7f;
// NVM command set.
constexpr uint8_t kFlush = 0x00;
constexpr uint8_t kWrite = 0x01;
constexpr uint8_t kRead = 0x02;
constexpr uint8_t kCompare = 0x05;
constexpr uint8_t kWriteZeroes = 0x08;
constexpr uint8_t kDatasetManagement = 0x09;
// Zoned Namespace command set.
constexpr uint8_t kZoneMgmtSend = 0x79;
constexpr uint8_t kZoneMgmtRecv = 0x7a;
constexpr uint8_t kZoneAppend = 0x7d;
}  // namespace opc

// Fabrics command types (FCTYPE, SQE byte 4).
namespace fctype {
constexpr uint8_t kPropertySet = 0x00;
constexpr uint8_t kConnect = 0x01;
constexpr uint8_t kPropertyGet = 0x04;
constexpr uint8_t kAuthSend = 0x05;
constexpr uint8_t kAuthRecv = 0x06;
constexpr uint8_t kDisconnect = 0x08;
}  // namespace fctype

// Command Set Identifiers.
constexpr uint8_t kCsiNvm = 0x00;
constexpr uint8_t kCsiZns = 0x02;

// Identify CNS values.
namespace cns {
constexpr uint8_t kNamespace = 0x00;
constexpr uint8_t kController = 0x01;
constexpr uint8_t kActiveNsList = 0x02;
constexpr uint8_t kNsDescriptorList = 0x03;
constexpr uint8_t kNvmSetList = 0x04;
constexpr uint8_t kCsiNamespace = 0x05;
constexpr uint8_t kCsiController = 0x06;
constexpr uint8_t kCsiActiveNsList = 0x07;
constexpr uint8_t kIndependentNamespace = 0x08;
constexpr uint8_t kIoCommandSet = 0x1c;
}  // namespace cns

// Log page identifiers.
namespace lid {
constexpr uint8_t kErrorInfo = 0x01;
constexpr uint8_t kSmartHealth = 0x02;
constexpr uint8_t kFirmwareSlot = 0x03;
constexpr uint8_t kChangedNsList = 0x04;
constexpr uint8_t kCommandsEffects = 0x05;
constexpr uint8_t kChangedZoneList = 0xbf;
}  // namespace lid

// Feature identifiers.
namespace fid {
constexpr uint8_t kArbitration = 0x01;
constexpr uint8_t kPowerManagement = 0x02;
constexpr uint8_t kTemperatureThreshold = 0x04;
constexpr uint8_t kVolatileWriteCache = 0x06;
constexpr uint8_t kNumberOfQueues = 0x07;
constexpr uint8_t kAsyncEventConfig = 0x0b;
constexpr uint8_t kTimestamp = 0x0e;
constexpr uint8_t kKeepAliveTimer = 0x0f;
constexpr uint8_t kIoCommandSetProfile = 0x19;
}  // namespace fid

// Asynchronous Event Configuration (Set Features 0Bh) and OAES bits.
constexpr uint32_t kAecSmartMask = 0xff;
constexpr uint32_t kAecZoneDescriptorChanged = 1u << 27;

// Asynchronous event types / information.
constexpr uint8_t kAenTypeNotice = 0x2;
constexpr uint8_t kAenInfoZoneDescriptorChanged = 0xef;

// Zone Management Send actions (ZSA) and Receive actions / filters.
namespace zsa {
constexpr uint8_t kClose = 0x01;
constexpr uint8_t kFinish = 0x02;
constexpr uint8_t kOpen = 0x03;
constexpr uint8_t kReset = 0x04;
constexpr uint8_t kOffline = 0x05;
constexpr uint8_t kSetZoneDescExt = 0x10;
}  // namespace zsa
namespace zra {
constexpr uint8_t kReport = 0x00;
constexpr uint8_t kExtendedReport = 0x01;
}  // namespace zra
constexpr uint8_t kZoneTypeSeqWriteRequired = 0x2;

// ---------------------------------------------------------------------------------------------
// Controller registers / fabrics properties (Base 2.0 §3.1.3).
namespace reg {
constexpr uint32_t kCap = 0x00;
constexpr uint32_t kVs = 0x08;
constexpr uint32_t kIntms = 0x0c;
constexpr uint32_t kIntmc = 0x10;
constexpr uint32_t kCc = 0x14;
constexpr uint32_t kCsts = 0x1c;
constexpr uint32_t kNssr = 0x20;
constexpr uint32_t kAqa = 0x24;
constexpr uint32_t kAsq = 0x28;
constexpr uint32_t kAcq = 0x30;
constexpr uint32_t kCmbloc = 0x38;
constexpr uint32_t kCmbsz = 0x3c;
constexpr uint32_t kDoorbellBase = 0x1000;
}  // namespace reg

// CAP fields.
constexpr uint64_t CapMqes(uint64_t cap) { return Bits64(cap, 15, 0); }
constexpr unsigned kCapCqrShift = 16;
constexpr unsigned kCapToShift = 24;
constexpr unsigned kCapDstrdShift = 32;
constexpr unsigned kCapCssShift = 37;     // CSS bits 44:37
constexpr uint64_t kCapCssNvm = 1ull << 37;
constexpr uint64_t kCapCssIoSets = 1ull << 43;  // one or more I/O command sets
constexpr unsigned kCapMpsminShift = 48;
constexpr unsigned kCapMpsmaxShift = 52;

// CC fields.
constexpr bool CcEn(uint32_t cc) { return Bit(cc, 0); }
constexpr uint32_t CcCss(uint32_t cc) { return Bits(cc, 6, 4); }
constexpr uint32_t CcMps(uint32_t cc) { return Bits(cc, 10, 7); }
constexpr uint32_t CcAms(uint32_t cc) { return Bits(cc, 13, 11); }
constexpr uint32_t CcShn(uint32_t cc) { return Bits(cc, 15, 14); }
constexpr uint32_t CcIosqes(uint32_t cc) { return Bits(cc, 19, 16); }
constexpr uint32_t CcIocqes(uint32_t cc) { return Bits(cc, 23, 20); }
constexpr uint32_t kCcCssNvm = 0b000;
constexpr uint32_t kCcCssAllIoSets = 0b110;
constexpr uint32_t kCcCssAdminOnly = 0b111;

// CSTS fields.
constexpr uint32_t kCstsRdy = 1u << 0;
constexpr uint32_t kCstsCfs = 1u << 1;
constexpr unsigned kCstsShstShift = 2;
constexpr uint32_t kCstsShstMask = 3u << 2;
constexpr uint32_t kShstNormal = 0, kShstOccurring = 1, kShstComplete = 2;

// ---------------------------------------------------------------------------------------------
// Submission queue entry (64 bytes). Fields are the common layout; command-specific dwords are
// read through cdw10..cdw15.
struct Sqe {
    uint8_t opcode;
    uint8_t flags;  // FUSE 1:0, PSDT 7:6
    le16 cid;
    le32 nsid;
    le32 cdw2;
    le32 cdw3;
    le64 mptr;
    le64 dptr1;  // PRP1, or SGL1 bytes 0-7 (address)
    le64 dptr2;  // PRP2, or SGL1 bytes 8-15 (length @32, sgl identifier @39)
    le32 cdw10;
    le32 cdw11;
    le32 cdw12;
    le32 cdw13;
    le32 cdw14;
    le32 cdw15;

    uint64_t slba() const { return uint64_t{cdw10.get()} | (uint64_t{cdw11.get()} << 32); }
};
static_assert(sizeof(Sqe) == 64 && offsetof(Sqe, nsid) == 4 && offsetof(Sqe, dptr1) == 24 &&
              offsetof(Sqe, cdw10) == 40 && offsetof(Sqe, cdw15) == 60);
static_assert(std::is_standard_layout_v<Sqe>);

// Completion queue entry (16 bytes). status bit 0 is the phase tag; bits 15:1 the Status Field.
struct Cqe {
    le32 dw0;
    le32 dw1;
    le16 sqhd;
    le16 sqid;
    le16 cid;
    le16 status;
};
static_assert(sizeof(Cqe) == 16 && offsetof(Cqe, sqhd) == 8 && offsetof(Cqe, status) == 14);

// ---------------------------------------------------------------------------------------------
// Fabrics commands (NVMe-oF 1.1 §3.3, §6).
struct FabricsCmd {
    uint8_t opcode;  // 7Fh
    uint8_t rsvd1;
    le16 cid;
    uint8_t fctype;
    uint8_t rsvd5[19];
    uint8_t sgl1[16];
    uint8_t fcs[24];  // fabrics command specific @40
};
static_assert(sizeof(FabricsCmd) == 64 && offsetof(FabricsCmd, fctype) == 4 &&
              offsetof(FabricsCmd, sgl1) == 24 && offsetof(FabricsCmd, fcs) == 40);

struct ConnectCmd {
    uint8_t opcode;
    uint8_t rsvd1;
    le16 cid;
    uint8_t fctype;
    uint8_t rsvd5[19];
    uint8_t sgl1[16];
    le16 recfmt;
    le16 qid;
    le16 sqsize;  // 0's based
    uint8_t cattr;
    uint8_t rsvd47;
    le32 kato;  // milliseconds
    uint8_t rsvd52[12];
};
static_assert(sizeof(ConnectCmd) == 64 && offsetof(ConnectCmd, recfmt) == 40 &&
              offsetof(ConnectCmd, qid) == 42 && offsetof(ConnectCmd, sqsize) == 44 &&
              offsetof(ConnectCmd, cattr) == 46 && offsetof(ConnectCmd, kato) == 48);

struct ConnectData {
    uint8_t hostid[16];
    le16 cntlid;
    uint8_t rsvd18[238];
    char subnqn[256];
    char hostnqn[256];
    uint8_t rsvd768[256];
};
static_assert(sizeof(ConnectData) == 1024 && offsetof(ConnectData, cntlid) == 16 &&
              offsetof(ConnectData, subnqn) == 256 && offsetof(ConnectData, hostnqn) == 512);

struct PropertyCmd {  // Property Get (FCTYPE 04h) and Property Set (00h)
    uint8_t opcode;
    uint8_t rsvd1;
    le16 cid;
    uint8_t fctype;
    uint8_t rsvd5[35];
    uint8_t attrib;  // bits 2:0 size: 0 = 4 bytes, 1 = 8 bytes
    uint8_t rsvd41[3];
    le32 ofst;
    le64 value;  // Set only
    uint8_t rsvd56[8];
};
static_assert(sizeof(PropertyCmd) == 64 && offsetof(PropertyCmd, attrib) == 40 &&
              offsetof(PropertyCmd, ofst) == 44 && offsetof(PropertyCmd, value) == 48);

// Connect Invalid Parameters: CQE DW0 names the offending field. Bit 16 set = in the Connect
// data, clear = in the SQE; bits 15:0 = byte offset.
constexpr uint32_t ConnectIpoData(uint16_t off) { return (1u << 16) | off; }
constexpr uint32_t ConnectIpoSqe(uint16_t off) { return off; }

// ---------------------------------------------------------------------------------------------
// Identify Controller (CNS 01h, 4096 bytes).
struct PowerStateDescriptor {
    le16 mp;
    uint8_t rsvd2;
    uint8_t flags;  // MXPS bit 0, NOPS bit 1
    le32 enlat;
    le32 exlat;
    uint8_t rrt;
    uint8_t rrl;
    uint8_t rwt;
    uint8_t rwl;
    le16 idlp;
    uint8_t ips;
    uint8_t rsvd19;
    le16 actp;
    uint8_t apws;
    uint8_t rsvd23[9];
};
static_assert(sizeof(PowerStateDescriptor) == 32);

struct IdCtrl {
    le16 vid;
    le16 ssvid;
    uint8_t sn[20];
    uint8_t mn[40];
    uint8_t fr[8];
    uint8_t rab;
    uint8_t ieee[3];
    uint8_t cmic;
    uint8_t mdts;
    le16 cntlid;
    le32 ver;
    le32 rtd3r;
    le32 rtd3e;
    le32 oaes;
    le32 ctratt;
    le16 rrls;
    uint8_t rsvd102[9];
    uint8_t cntrltype;
    uint8_t fguid[16];
    le16 crdt1;
    le16 crdt2;
    le16 crdt3;
    uint8_t rsvd134[119];
    uint8_t nvmsr;
    uint8_t vwci;
    uint8_t mec;
    le16 oacs;
    uint8_t acl;
    uint8_t aerl;
    uint8_t frmw;
    uint8_t lpa;
    uint8_t elpe;
    uint8_t npss;
    uint8_t avscc;
    uint8_t apsta;
    le16 wctemp;
    le16 cctemp;
    le16 mtfa;
    le32 hmpre;
    le32 hmmin;
    uint8_t tnvmcap[16];
    uint8_t unvmcap[16];
    le32 rpmbs;
    le16 edstt;
    uint8_t dsto;
    uint8_t fwug;
    le16 kas;
    le16 hctma;
    le16 mntmt;
    le16 mxtmt;
    le32 sanicap;
    le32 hmminds;
    le16 hmmaxd;
    le16 nsetidmax;
    le16 endgidmax;
    uint8_t anatt;
    uint8_t anacap;
    le32 anagrpmax;
    le32 nanagrpid;
    le32 pels;
    le16 domainid;
    uint8_t rsvd358[10];
    uint8_t megcap[16];
    uint8_t rsvd384[128];
    uint8_t sqes;
    uint8_t cqes;
    le16 maxcmd;
    le32 nn;
    le16 oncs;
    le16 fuses;
    uint8_t fna;
    uint8_t vwc;
    le16 awun;
    le16 awupf;
    uint8_t icsvscc;
    uint8_t nwpc;
    le16 acwu;
    le16 ocfs;
    le32 sgls;
    le32 mnan;
    uint8_t maxdna[16];
    le32 maxcna;
    uint8_t rsvd564[204];
    char subnqn[256];
    uint8_t rsvd1024[768];
    le32 ioccsz;
    le32 iorcsz;
    le16 icdoff;
    uint8_t fcatt;
    uint8_t msdbd;
    le16 ofcs;
    uint8_t rsvd1806[242];
    PowerStateDescriptor psd[32];
    uint8_t vs[1024];
};
static_assert(sizeof(IdCtrl) == 4096);
static_assert(offsetof(IdCtrl, sn) == 4 && offsetof(IdCtrl, mn) == 24 && offsetof(IdCtrl, fr) == 64);
static_assert(offsetof(IdCtrl, cmic) == 76 && offsetof(IdCtrl, mdts) == 77 && offsetof(IdCtrl, cntlid) == 78);
static_assert(offsetof(IdCtrl, ver) == 80 && offsetof(IdCtrl, oaes) == 92 && offsetof(IdCtrl, ctratt) == 96);
static_assert(offsetof(IdCtrl, cntrltype) == 111 && offsetof(IdCtrl, crdt1) == 128);
static_assert(offsetof(IdCtrl, oacs) == 256 && offsetof(IdCtrl, lpa) == 261 && offsetof(IdCtrl, kas) == 320);
static_assert(offsetof(IdCtrl, megcap) == 368 && offsetof(IdCtrl, sqes) == 512 && offsetof(IdCtrl, maxcmd) == 514);
static_assert(offsetof(IdCtrl, nn) == 516 && offsetof(IdCtrl, oncs) == 520 && offsetof(IdCtrl, vwc) == 525);
static_assert(offsetof(IdCtrl, sgls) == 536 && offsetof(IdCtrl, mnan) == 540 && offsetof(IdCtrl, subnqn) == 768);
static_assert(offsetof(IdCtrl, ioccsz) == 1792 && offsetof(IdCtrl, iorcsz) == 1796 && offsetof(IdCtrl, icdoff) == 1800);
static_assert(offsetof(IdCtrl, msdbd) == 1803 && offsetof(IdCtrl, psd) == 2048 && offsetof(IdCtrl, vs) == 3072);

// OAES / CTRATT / LPA / ONCS / VWC / SGLS bits this controller uses.
constexpr uint32_t kOaesZoneDescriptorChanged = 1u << 27;
// OACS: Doorbell Buffer Config supported (bit 8). Only PCI controllers set it: the command
// is not defined over fabrics.
constexpr uint16_t kOacsDoorbellBufferConfig = 1u << 8;
// Shadow doorbells (Base 2.0 5.8): after storing a new tail/head `new_idx` over `old` in the
// Shadow Doorbell buffer, a host writes the MMIO doorbell only when the EventIdx the controller
// published lies in [old, new_idx) (modulo 2^16, as Linux's nvme_dbbuf_need_event computes it).
inline bool ShadowDoorbellNeedsMmio(uint16_t event_idx, uint16_t new_idx, uint16_t old) {
    return uint16_t(new_idx - event_idx - 1) < uint16_t(new_idx - old);
}
constexpr uint32_t kCtrattHostId128 = 1u << 0;
constexpr uint32_t kCtrattTbkas = 1u << 6;
constexpr uint8_t kLpaCommandEffects = 1u << 1;
constexpr uint8_t kLpaExtendedData = 1u << 2;
constexpr uint16_t kOncsCompare = 1u << 0;
constexpr uint16_t kOncsDsm = 1u << 2;
constexpr uint16_t kOncsWriteZeroes = 1u << 3;
constexpr uint16_t kOncsTimestamp = 1u << 6;
constexpr uint8_t kVwcPresent = 1u << 0;
constexpr uint8_t kVwcFlushBroadcast = 3u << 1;
constexpr uint32_t kSglsSupported = 1u << 0;
constexpr uint32_t kSglsOffset = 1u << 20;
constexpr uint8_t kCmicMultiController = 1u << 1;

// ---------------------------------------------------------------------------------------------
// Identify Namespace, NVM command set (CNS 00h, 4096 bytes).
struct LbaFormat {
    le16 ms;
    uint8_t lbads;  // log2 of the LBA data size
    uint8_t rp;     // relative performance, bits 1:0
};
static_assert(sizeof(LbaFormat) == 4);

struct IdNs {
    le64 nsze;
    le64 ncap;
    le64 nuse;
    uint8_t nsfeat;
    uint8_t nlbaf;
    uint8_t flbas;
    uint8_t mc;
    uint8_t dpc;
    uint8_t dps;
    uint8_t nmic;
    uint8_t rescap;
    uint8_t fpi;
    uint8_t dlfeat;
    le16 nawun;
    le16 nawupf;
    le16 nacwu;
    le16 nabsn;
    le16 nabo;
    le16 nabspf;
    le16 noiob;
    uint8_t nvmcap[16];
    le16 npwg;
    le16 npwa;
    le16 npdg;
    le16 npda;
    le16 nows;
    le16 mssrl;
    le32 mcl;
    uint8_t msrc;
    uint8_t rsvd81;
    uint8_t nulbaf;
    uint8_t rsvd83[9];
    le32 anagrpid;
    uint8_t rsvd96[3];
    uint8_t nsattr;
    le16 nvmsetid;
    le16 endgid;
    uint8_t nguid[16];
    uint8_t eui64[8];
    LbaFormat lbaf[64];
    uint8_t rsvd384[3456];
    uint8_t vs[256];
};
static_assert(sizeof(IdNs) == 4096);
static_assert(offsetof(IdNs, nsfeat) == 24 && offsetof(IdNs, flbas) == 26 && offsetof(IdNs, nmic) == 30);
static_assert(offsetof(IdNs, noiob) == 46 && offsetof(IdNs, nvmcap) == 48 && offsetof(IdNs, mcl) == 76);
static_assert(offsetof(IdNs, anagrpid) == 92 && offsetof(IdNs, nsattr) == 99 && offsetof(IdNs, nguid) == 104);
static_assert(offsetof(IdNs, eui64) == 120 && offsetof(IdNs, lbaf) == 128 && offsetof(IdNs, vs) == 3840);

// Identify Namespace, Zoned Namespace command set (CNS 05h, CSI 02h).
struct LbaFormatExtension {
    le64 zsze;     // zone size in logical blocks
    uint8_t zdes;  // descriptor extension size in 64-byte units
    uint8_t rsvd9[7];
};
static_assert(sizeof(LbaFormatExtension) == 16);

struct IdNsZns {
    le16 zoc;
    le16 ozcs;
    le32 mar;
    le32 mor;
    le32 rrl;
    le32 frl;
    le32 rrl1;
    le32 rrl2;
    le32 rrl3;
    le32 frl1;
    le32 frl2;
    le32 frl3;
    le32 numzrwa;
    le16 zrwafg;
    le16 zrwasz;
    uint8_t zrwacap;
    uint8_t rsvd53[2763];
    LbaFormatExtension lbafe[64];
    uint8_t vs[256];
};
static_assert(sizeof(IdNsZns) == 4096 && offsetof(IdNsZns, mar) == 4 && offsetof(IdNsZns, mor) == 8 &&
              offsetof(IdNsZns, rrl) == 12 && offsetof(IdNsZns, frl) == 16 && offsetof(IdNsZns, rrl1) == 20 &&
              offsetof(IdNsZns, frl1) == 32 && offsetof(IdNsZns, numzrwa) == 44 &&
              offsetof(IdNsZns, zrwacap) == 52 && offsetof(IdNsZns, lbafe) == 2816 && offsetof(IdNsZns, vs) == 3840);
constexpr uint16_t kOzcsRazb = 1u << 0;

// Identify Controller, Zoned Namespace command set (CNS 06h, CSI 02h).
struct IdCtrlZns {
    uint8_t zasl;
    uint8_t rsvd1[4095];
};
static_assert(sizeof(IdCtrlZns) == 4096);

// Identify Controller, NVM command set (CNS 06h, CSI 00h).
struct IdCtrlNvm {
    uint8_t vsl;
    uint8_t wzsl;
    uint8_t wusl;
    uint8_t dmrl;
    le32 dmrsl;
    le64 dmsl;
    uint8_t rsvd16[4080];
};
static_assert(sizeof(IdCtrlNvm) == 4096 && offsetof(IdCtrlNvm, dmsl) == 8);

// I/O Command Set Independent Identify Namespace (CNS 08h).
struct IdNsIndependent {
    uint8_t nsfeat;
    uint8_t nmic;
    uint8_t rescap;
    uint8_t fpi;
    le32 anagrpid;
    uint8_t nsattr;
    uint8_t rsvd9;
    le16 nvmsetid;
    le16 endgid;
    uint8_t nstat;
    uint8_t rsvd15[4081];
};
static_assert(sizeof(IdNsIndependent) == 4096 && offsetof(IdNsIndependent, nsattr) == 8 &&
              offsetof(IdNsIndependent, nstat) == 14);

// Namespace Identification Descriptor header (CNS 03h); the value follows.
struct NsIdDescHeader {
    uint8_t nidt;
    uint8_t nidl;
    uint8_t rsvd2[2];
};
static_assert(sizeof(NsIdDescHeader) == 4);
constexpr uint8_t kNidtEui64 = 0x1, kNidtNguid = 0x2, kNidtUuid = 0x3, kNidtCsi = 0x4;

// I/O Command Set data structure (CNS 1Ch): 512 command set vectors.
struct IoCommandSetVectors {
    le64 iocsc[512];
};
static_assert(sizeof(IoCommandSetVectors) == 4096);
constexpr uint64_t kIocsNvm = 1ull << 0;
constexpr uint64_t kIocsZns = 1ull << 2;

// ---------------------------------------------------------------------------------------------
// Log pages.
struct ErrorLogEntry {
    le64 error_count;
    le16 sqid;
    le16 cmdid;
    le16 status_field;  // Status Field (bits 15:1) and phase tag (bit 0) as in the CQE
    le16 parm_error_location;
    le64 lba;
    le32 nsid;
    uint8_t vs;
    uint8_t trtype;
    uint8_t rsvd30[2];
    le64 cs;
    le16 trtype_spec_info;
    uint8_t rsvd42[22];
};
static_assert(sizeof(ErrorLogEntry) == 64 && offsetof(ErrorLogEntry, lba) == 16 &&
              offsetof(ErrorLogEntry, nsid) == 24 && offsetof(ErrorLogEntry, cs) == 32);

struct SmartLog {
    uint8_t critical_warning;
    le16 temperature;  // Kelvin
    uint8_t avail_spare;
    uint8_t spare_thresh;
    uint8_t percent_used;
    uint8_t endu_grp_crit_warn_sumry;
    uint8_t rsvd7[25];
    uint8_t data_units_read[16];  // 128-bit counters, little-endian
    uint8_t data_units_written[16];
    uint8_t host_reads[16];
    uint8_t host_writes[16];
    uint8_t ctrl_busy_time[16];
    uint8_t power_cycles[16];
    uint8_t power_on_hours[16];
    uint8_t unsafe_shutdowns[16];
    uint8_t media_errors[16];
    uint8_t num_err_log_entries[16];
    le32 warning_temp_time;
    le32 critical_comp_time;
    le16 temp_sensor[8];
    le32 thm_temp1_trans_count;
    le32 thm_temp2_trans_count;
    le32 thm_temp1_total_time;
    le32 thm_temp2_total_time;
    uint8_t rsvd232[280];
};
static_assert(sizeof(SmartLog) == 512 && offsetof(SmartLog, temperature) == 1 &&
              offsetof(SmartLog, data_units_read) == 32 && offsetof(SmartLog, num_err_log_entries) == 176 &&
              offsetof(SmartLog, warning_temp_time) == 192 && offsetof(SmartLog, temp_sensor) == 200);

struct FirmwareSlotLog {
    uint8_t afi;
    uint8_t rsvd1[7];
    uint8_t frs[7][8];
    uint8_t rsvd64[448];
};
static_assert(sizeof(FirmwareSlotLog) == 512 && offsetof(FirmwareSlotLog, frs) == 8);

struct ChangedNsList {
    le32 nsid[1024];
};
static_assert(sizeof(ChangedNsList) == 4096);

struct CommandsEffectsLog {
    le32 acs[256];
    le32 iocs[256];
    uint8_t rsvd2048[2048];
};
static_assert(sizeof(CommandsEffectsLog) == 4096 && offsetof(CommandsEffectsLog, iocs) == 1024);
constexpr uint32_t kCseCsupp = 1u << 0;
constexpr uint32_t kCseLbcc = 1u << 1;
constexpr uint32_t kCseNcc = 1u << 2;
constexpr uint32_t kCseNic = 1u << 3;
constexpr uint32_t kCseCcc = 1u << 4;

struct ChangedZoneList {
    le16 nrzid;  // FFFFh: more than 511 zones changed
    uint8_t rsvd2[6];
    le64 zid[511];
};
static_assert(sizeof(ChangedZoneList) == 4096 && offsetof(ChangedZoneList, zid) == 8);

// ---------------------------------------------------------------------------------------------
// Zone Management Receive data.
struct ZoneReportHeader {
    le64 nz;
    uint8_t rsvd8[56];
};
static_assert(sizeof(ZoneReportHeader) == 64);

struct ZoneDescriptor {
    uint8_t zt;   // bits 3:0 zone type
    uint8_t zs;   // bits 7:4 zone state
    uint8_t za;   // zone attributes
    uint8_t zai;  // zone attributes information
    uint8_t rsvd4[4];
    le64 zcap;
    le64 zslba;
    le64 wp;
    uint8_t rsvd32[32];
};
static_assert(sizeof(ZoneDescriptor) == 64 && offsetof(ZoneDescriptor, zcap) == 8 &&
              offsetof(ZoneDescriptor, zslba) == 16 && offsetof(ZoneDescriptor, wp) == 24);

// Dataset Management range.
struct DsmRange {
    le32 cattr;
    le32 nlb;
    le64 slba;
};
static_assert(sizeof(DsmRange) == 16 && offsetof(DsmRange, slba) == 8);

// Timestamp feature data (Get/Set Features 0Eh).
struct TimestampData {
    uint8_t timestamp[6];  // milliseconds since the epoch, 48 bits little-endian
    uint8_t attr;          // bit 0 synch, bits 3:1 timestamp origin
    uint8_t rsvd7;
};
static_assert(sizeof(TimestampData) == 8);

// Typed copies of raw bytes (the wire buffers have no alignment guarantee).
template <typename T>
T Load(const void* p) {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

}  // namespace qzns::nvme
