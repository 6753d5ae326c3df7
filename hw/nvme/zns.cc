// Zoned Namespace command set: Zone Management Send (79h), Zone Management Receive (7Ah) and
// Zone Append (7Dh). LBAs are namespace LBAs; the backend works in bytes from the start of the
// image (Namespace::ByteOffset does the translation past the conventional zones).
#include <algorithm>
#include <cstring>
#include <vector>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {
namespace {

// Zone Receive Action Specific Field filters (ZRASF).
bool MatchesFilter(uint8_t zrasf, ZoneState s) {
    switch (zrasf) {
    case 0x00: return true;
    case 0x01: return s == ZoneState::kEmpty;
    case 0x02: return s == ZoneState::kImplicitOpen;
    case 0x03: return s == ZoneState::kExplicitOpen;
    case 0x04: return s == ZoneState::kClosed;
    case 0x05: return s == ZoneState::kFull;
    case 0x06: return s == ZoneState::kReadOnly;
    case 0x07: return s == ZoneState::kOffline;
    default: return false;
    }
}

constexpr uint8_t kReportedAttrs = kZoneAttrZfc | kZoneAttrFzr | kZoneAttrRzr | kZoneAttrZdev;
constexpr uint32_t kReportChunk = 1024;  // zones fetched from the backend at a time

}  // namespace

void Controller::ZoneMgmtSend(Req& r) {
    Namespace& ns = *r.ns;
    uint64_t slba = r.cmd.slba();
    uint32_t cdw13 = r.cmd.cdw13.get();
    uint8_t action = static_cast<uint8_t>(Bits(cdw13, 7, 0));
    bool all = Bit(cdw13, 8);
    r.err_lba = slba;
    ZoneMgmtOp op;
    switch (action) {
    case zsa::kClose: op = ZoneMgmtOp::kClose; break;
    case zsa::kFinish: op = ZoneMgmtOp::kFinish; break;
    case zsa::kOpen: op = ZoneMgmtOp::kOpen; break;
    case zsa::kReset: op = ZoneMgmtOp::kReset; break;
    case zsa::kOffline: op = ZoneMgmtOp::kOffline; break;
    case zsa::kSetZoneDescExt: {
        if (all || ns.zdes() == 0) { r.status = sc::kInvalidField | sc::kDnr; return; }
        if (slba >= ns.nsze()) { r.status = sc::kLbaOutOfRange | sc::kDnr; return; }
        if (slba % ns.zsze()) { r.status = sc::kInvalidField | sc::kDnr; return; }
        if (!CheckData(r, uint64_t{ns.zdes()} * 64)) return;
        BlkResult res = ns.backend().SetZoneDescExt(ns.ByteOffset(slba), r.data.data());
        r.status = NvmeStatusOfResult(res, IoKind::kZoneMgmt, true);
        return;
    }
    default:
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    if (!all) {
        if (slba >= ns.nsze()) { r.status = sc::kLbaOutOfRange | sc::kDnr; return; }
        if (slba % ns.zsze()) { r.status = sc::kInvalidField | sc::kDnr; return; }
    }
    BlkResult res = ns.backend().ZoneMgmt(op, all ? 0 : ns.ByteOffset(slba), all);
    r.status = NvmeStatusOfResult(res, IoKind::kZoneMgmt, true);
    // A reset zone is a new zone for RRL/FRL (even if a failed Reset All reset only some).
    if (op == ZoneMgmtOp::kReset && (all || r.status == sc::kSuccess)) ns.ForgetZoneTimers(slba / ns.zsze(), all);
}

void Controller::ZoneMgmtRecv(Req& r) {
    Namespace& ns = *r.ns;
    uint64_t slba = r.cmd.slba();
    uint64_t len = (uint64_t{r.cmd.cdw12.get()} + 1) * 4;
    uint32_t cdw13 = r.cmd.cdw13.get();
    uint8_t action = static_cast<uint8_t>(Bits(cdw13, 7, 0));
    uint8_t zrasf = static_cast<uint8_t>(Bits(cdw13, 15, 8));
    bool partial = Bit(cdw13, 16);
    r.err_lba = slba;
    if (action != zra::kReport && action != zra::kExtendedReport) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (action == zra::kExtendedReport && ns.zdes() == 0) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (zrasf > 0x07) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (slba >= ns.nsze()) { r.status = sc::kLbaOutOfRange | sc::kDnr; return; }
    if (len > MaxTransferBytes()) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (!CheckData(r, len)) return;

    size_t ext = action == zra::kExtendedReport ? size_t{ns.zdes()} * 64 : 0;
    size_t entry = sizeof(ZoneDescriptor) + ext;
    uint64_t fits = len > sizeof(ZoneReportHeader) ? (len - sizeof(ZoneReportHeader)) / entry : 0;
    std::memset(r.data.data(), 0, len);

    uint64_t first = slba / ns.zsze();
    uint64_t matched = 0, written = 0;
    std::vector<uint8_t> ext_buf(ext);
    for (uint64_t z = first; z < ns.nr_zones();) {
        uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kReportChunk, ns.nr_zones() - z));
        auto zones = ns.backend().ReportZones(ns.ByteOffset(z * ns.zsze()), n);
        if (!zones.ok()) { r.status = sc::kInternalError; return; }
        if (zones->empty()) break;
        for (const ZoneInfo& zi : *zones) {
            uint64_t idx = z++;
            if (!MatchesFilter(zrasf, zi.state)) continue;
            matched++;
            if (written >= fits) continue;  // counted for NZ (without the partial bit) only
            ZoneDescriptor d{};
            d.zt = kZoneTypeSeqWriteRequired;
            d.zs = static_cast<uint8_t>(static_cast<uint8_t>(zi.state) << 4);
            d.za = static_cast<uint8_t>((zi.attrs | ns.ExtraZoneAttrs(idx, zi)) & kReportedAttrs);
            d.zcap.set(zi.cap >> ns.lba_shift());
            d.zslba.set(ns.LbaOfByte(zi.start));
            d.wp.set(ns.LbaOfByte(zi.wp));
            uint8_t* out = r.data.data() + sizeof(ZoneReportHeader) + written * entry;
            std::memcpy(out, &d, sizeof(d));
            if (ext && (zi.attrs & kZoneAttrZdev)) {
                Status st = ns.backend().ReadZoneDescExt(static_cast<uint32_t>(idx + ns.first_zone()), ext_buf.data());
                if (!st.ok()) { r.status = sc::kInternalError; return; }
                std::memcpy(out + sizeof(d), ext_buf.data(), ext);
            }
            written++;
        }
        if (partial && written >= fits) break;  // no need to count further
    }
    ZoneReportHeader h{};
    h.nz.set(partial ? written : matched);
    if (len >= sizeof(h)) std::memcpy(r.data.data(), &h, sizeof(h));
    else std::memcpy(r.data.data(), &h, len);
    r.c2h_len = static_cast<uint32_t>(len);
}

}  // namespace qzns::nvme
