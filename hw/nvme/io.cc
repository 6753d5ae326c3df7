// NVM command set I/O: Read, Write (FUA), Flush, Write Zeroes, Dataset Management, Compare,
// and Zone Append's data path. Zoned namespaces get the same commands; the zone rules are the
// backend's (status via NvmeStatusOfResult), zone management is in zns.cc.
#include <cstring>
#include <memory>
#include <set>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {

// ---- run to completion: Read, Write, Append, Write Zeroes, a namespace's Flush ----

namespace {

bool ValidLength(Controller::Request& r, uint64_t len, uint64_t max_transfer) {
    if (len > max_transfer) {
        r.status = sc::kInvalidField | sc::kDnr;
        return false;
    }
    if (r.data.size() < len) {
        r.status = sc::kDataSglLengthInvalid | sc::kDnr;
        return false;
    }
    return true;
}

}  // namespace

bool Controller::StartAsyncIo(Req& r) {
    const uint8_t op = r.cmd.opcode;
    const uint32_t nsid = r.cmd.nsid.get();
    switch (op) {
    case opc::kRead:
    case opc::kWrite:
    case opc::kWriteZeroes:
    case opc::kZoneAppend: break;
    case opc::kFlush:
        if (nsid == 0xffffffffu) return false;  // every namespace: on the pool
        break;
    default: return false;
    }
    r.ns = ActiveNamespace(nsid);
    if (!r.ns) {
        r.status = sc::kInvalidNamespace | sc::kDnr;
        Complete(&r);
        return true;
    }
    Namespace& ns = *r.ns;
    if (op == opc::kZoneAppend && !ns.zoned()) return false;  // ExecuteIo: Invalid Opcode
    BlkRequest& b = r.blk;
    b = BlkRequest{};
    const uint64_t slba = r.cmd.slba();
    const uint32_t cdw12 = r.cmd.cdw12.get();
    const uint64_t nlb = Bits(cdw12, 15, 0) + 1ull;
    b.fua = Bit(cdw12, 30) || !write_cache_.load();
    r.err_lba = slba;
    r.io_kind = op == opc::kRead ? IoKind::kRead : IoKind::kWrite;
    bool ok = true;
    switch (op) {
    case opc::kRead:
    case opc::kWrite:
        b.op = op == opc::kRead ? BlkOp::kRead : BlkOp::kWrite;
        b.len = nlb << ns.lba_shift();
        if (!ns.InRange(slba, nlb)) {
            r.status = sc::kLbaOutOfRange | sc::kDnr;
            ok = false;
        } else {
            ok = ValidLength(r, b.len, MaxTransferBytes());
        }
        b.off = ns.ByteOffset(slba);
        b.buf = r.data.data();
        break;
    case opc::kZoneAppend: {
        b.op = BlkOp::kAppend;
        b.len = nlb << ns.lba_shift();
        uint32_t zasl = EffectiveZasl();
        uint64_t limit = zasl ? (uint64_t{4096} << zasl) : MaxTransferBytes();
        if (slba >= ns.nsze()) {
            r.status = sc::kLbaOutOfRange | sc::kDnr;
            ok = false;
        } else if (slba % ns.zsze()) {
            r.status = sc::kInvalidField | sc::kDnr;
            ok = false;
        } else {
            ok = ValidLength(r, b.len, limit);
        }
        b.off = ns.ByteOffset(slba);
        b.buf = r.data.data();
        break;
    }
    case opc::kWriteZeroes:
        b.op = BlkOp::kWriteZeroes;
        b.len = nlb << ns.lba_shift();
        b.off = ns.ByteOffset(slba);
        if (!ns.InRange(slba, nlb)) {
            r.status = sc::kLbaOutOfRange | sc::kDnr;
            ok = false;
        }
        break;
    case opc::kFlush:
        b.op = BlkOp::kFlush;
        b.fua = false;
        break;
    default: break;
    }
    if (!ok) {
        Complete(&r);
        return true;
    }
    b.done = &Controller::OnAsyncIoDone;
    b.opaque = &r;
    ns.backend().Submit(&b);
    return true;
}

// The backend finished r.blk: on an I/O engine or pool thread, or inside Submit.
void Controller::OnAsyncIoDone(BlkRequest* b) {
    Req& r = *static_cast<Req*>(b->opaque);
    Controller& c = *r.ctrl;
    Namespace& ns = *r.ns;
    r.status = NvmeStatusOfResult(b->result, r.io_kind, ns.zoned());
    if (r.status == sc::kSuccess) {
        switch (b->op) {
        case BlkOp::kRead:
            c.units_read_ += b->len;
            c.host_reads_++;
            r.c2h_len = static_cast<uint32_t>(b->len);
            break;
        case BlkOp::kAppend: {
            uint64_t lba = ns.LbaOfByte(b->result.value);
            r.dw0 = static_cast<uint32_t>(lba);
            r.dw1 = static_cast<uint32_t>(lba >> 32);
            c.units_written_ += b->len;
            c.host_writes_++;
            break;
        }
        case BlkOp::kWrite:
            c.units_written_ += b->len;
            c.host_writes_++;
            break;
        case BlkOp::kWriteZeroes: c.host_writes_++; break;
        default: break;
        }
    }
    c.Complete(&r);
}

// ---- on the worker pool: everything else ----

void Controller::ExecuteIo(Req& r) {
    uint8_t op = r.cmd.opcode;
    uint32_t nsid = r.cmd.nsid.get();
    if (op == opc::kFlush && nsid == 0xffffffffu) {
        Flush(r);
        return;
    }
    r.ns = ActiveNamespace(nsid);
    if (!r.ns) { r.status = sc::kInvalidNamespace | sc::kDnr; return; }
    // Read, Write, Write Zeroes, a namespace's Flush and (zoned) Zone Append ran to completion
    // in StartAsyncIo and never come here.
    switch (op) {
    case opc::kCompare: Compare(r); return;
    case opc::kDatasetManagement: DatasetManagement(r); return;
    default: break;
    }
    if (r.ns->zoned()) {
        switch (op) {
        case opc::kZoneMgmtSend: ZoneMgmtSend(r); return;
        case opc::kZoneMgmtRecv: ZoneMgmtRecv(r); return;
        default: break;
        }
    }
    r.status = sc::kInvalidOpcode | sc::kDnr;
}

void Controller::Compare(Req& r) {
    Namespace& ns = *r.ns;
    uint64_t slba = r.cmd.slba();
    uint64_t nlb = Bits(r.cmd.cdw12.get(), 15, 0) + 1ull;
    r.err_lba = slba;
    if (!ns.InRange(slba, nlb)) { r.status = sc::kLbaOutOfRange | sc::kDnr; return; }
    uint64_t len = nlb << ns.lba_shift();
    if (len > MaxTransferBytes()) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (!CheckData(r, len)) return;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[len]);
    BlkResult res = ns.backend().Read(ns.ByteOffset(slba), buf.get(), len);
    r.status = NvmeStatusOfResult(res, IoKind::kRead, ns.zoned());
    if (r.status != sc::kSuccess) return;
    host_reads_++;
    if (std::memcmp(buf.get(), r.data.data(), len) != 0) r.status = sc::kCompareFailure | sc::kDnr;
}

// Flush of NSID FFFFFFFFh (VWC bits 2:1 = 11b): every namespace, each backend once.
void Controller::Flush(Req& r) {
    std::set<BlockBackend*> done;
    for (auto& ns : subsys_->Namespaces()) {
        if (!NamespaceActive(*ns) || !done.insert(&ns->backend()).second) continue;
        uint16_t st = NvmeStatusOfResult(ns->backend().Flush(), IoKind::kWrite, ns->zoned());
        if (st != sc::kSuccess) r.status = st;
    }
}

void Controller::DatasetManagement(Req& r) {
    Namespace& ns = *r.ns;
    uint32_t nr = Bits(r.cmd.cdw10.get(), 7, 0) + 1;
    bool deallocate = Bit(r.cmd.cdw11.get(), 2);
    if (!CheckData(r, uint64_t{nr} * sizeof(DsmRange))) return;
    std::vector<DsmRange> ranges(nr);
    std::memcpy(ranges.data(), r.data.data(), nr * sizeof(DsmRange));
    for (const DsmRange& d : ranges) {
        uint64_t slba = d.slba.get(), nlb = d.nlb.get();
        if (nlb == 0) continue;
        if (!ns.InRange(slba, nlb)) {
            r.err_lba = slba;
            r.status = sc::kLbaOutOfRange | sc::kDnr;
            return;
        }
    }
    // Deallocation is advisory (DLFEAT = 0: deallocated blocks read back unspecified). Only a
    // conventional namespace frees space; sequential zones free theirs with Reset.
    if (!deallocate || ns.zoned() || ns.read_only()) return;
    for (const DsmRange& d : ranges) {
        uint64_t nlb = d.nlb.get();
        if (nlb == 0) continue;
        BlkResult res = ns.backend().Discard(ns.ByteOffset(d.slba.get()), nlb << ns.lba_shift());
        if (!res.ok()) {
            r.err_lba = d.slba.get();
            r.status = NvmeStatusOfResult(res, IoKind::kWrite, ns.zoned());
            return;
        }
    }
}

}  // namespace qzns::nvme
