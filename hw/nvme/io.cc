// NVM command set I/O: Read, Write (FUA), Flush, Write Zeroes, Dataset Management, Compare.
// Zoned namespaces get the same commands; the zone rules are the backend's (status via
// NvmeStatusOfResult), the ZNS-only commands are in zns.cc.
#include <cstring>
#include <memory>
#include <set>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {

void Controller::ExecuteIo(Req& r) {
    uint8_t op = r.cmd.opcode;
    uint32_t nsid = r.cmd.nsid.get();
    if (op == opc::kFlush && nsid == 0xffffffffu) {
        Flush(r);
        return;
    }
    r.ns = ActiveNamespace(nsid);
    if (!r.ns) { r.status = sc::kInvalidNamespace | sc::kDnr; return; }
    switch (op) {
    case opc::kFlush: Flush(r); return;
    case opc::kWrite: ReadWrite(r, true); return;
    case opc::kRead: ReadWrite(r, false); return;
    case opc::kCompare: Compare(r); return;
    case opc::kWriteZeroes: WriteZeroes(r); return;
    case opc::kDatasetManagement: DatasetManagement(r); return;
    default: break;
    }
    if (r.ns->zoned()) {
        switch (op) {
        case opc::kZoneMgmtSend: ZoneMgmtSend(r); return;
        case opc::kZoneMgmtRecv: ZoneMgmtRecv(r); return;
        case opc::kZoneAppend: ZoneAppend(r); return;
        default: break;
        }
    }
    r.status = sc::kInvalidOpcode | sc::kDnr;
}

void Controller::ReadWrite(Req& r, bool write) {
    Namespace& ns = *r.ns;
    uint64_t slba = r.cmd.slba();
    uint32_t cdw12 = r.cmd.cdw12.get();
    uint64_t nlb = Bits(cdw12, 15, 0) + 1ull;
    bool fua = Bit(cdw12, 30) || !write_cache_.load();
    r.err_lba = slba;
    if (!ns.InRange(slba, nlb)) { r.status = sc::kLbaOutOfRange | sc::kDnr; return; }
    uint64_t len = nlb << ns.lba_shift();
    if (len > MaxTransferBytes()) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (!CheckData(r, len)) return;
    BlkResult res = write ? ns.backend().Write(ns.ByteOffset(slba), r.data.data(), len, fua)
                          : ns.backend().Read(ns.ByteOffset(slba), r.data.data(), len);
    r.status = NvmeStatusOfResult(res, write ? IoKind::kWrite : IoKind::kRead, ns.zoned());
    if (r.status != sc::kSuccess) return;
    if (write) {
        units_written_ += len;
        host_writes_++;
    } else {
        units_read_ += len;
        host_reads_++;
        r.c2h_len = static_cast<uint32_t>(len);
    }
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

void Controller::Flush(Req& r) {
    if (r.ns) {
        r.status = NvmeStatusOfResult(r.ns->backend().Flush(), IoKind::kWrite, r.ns->zoned());
        return;
    }
    // NSID FFFFFFFFh (VWC bits 2:1 = 11b): every namespace, each backend once.
    std::set<BlockBackend*> done;
    for (auto& ns : subsys_->Namespaces()) {
        if (!NamespaceActive(*ns) || !done.insert(&ns->backend()).second) continue;
        uint16_t st = NvmeStatusOfResult(ns->backend().Flush(), IoKind::kWrite, ns->zoned());
        if (st != sc::kSuccess) r.status = st;
    }
}

void Controller::WriteZeroes(Req& r) {
    Namespace& ns = *r.ns;
    uint64_t slba = r.cmd.slba();
    uint32_t cdw12 = r.cmd.cdw12.get();
    uint64_t nlb = Bits(cdw12, 15, 0) + 1ull;
    bool fua = Bit(cdw12, 30) || !write_cache_.load();
    r.err_lba = slba;
    if (!ns.InRange(slba, nlb)) { r.status = sc::kLbaOutOfRange | sc::kDnr; return; }
    BlkResult res = ns.backend().WriteZeroes(ns.ByteOffset(slba), nlb << ns.lba_shift(), fua);
    r.status = NvmeStatusOfResult(res, IoKind::kWrite, ns.zoned());
    if (r.status == sc::kSuccess) host_writes_++;
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
