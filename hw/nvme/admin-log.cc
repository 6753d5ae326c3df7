// Get Log Page (02h): error information, SMART / health, firmware slots, changed namespaces,
// commands supported and effects (per command set), and the ZNS Changed Zone List.
#include <algorithm>
#include <cstring>
#include <vector>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {
namespace {

void Put128(uint8_t (&dst)[16], uint64_t v) {
    le64 lo(v);
    std::memcpy(dst, &lo, 8);
    std::memset(dst + 8, 0, 8);
}

// Linux warns about I/O opcodes whose effects have bits other than CSUPP and LBCC.
void FillEffects(CommandsEffectsLog* log, uint8_t csi, bool doorbell_buffer) {
    for (uint8_t op : {opc::kDeleteIoSq, opc::kCreateIoSq, opc::kGetLogPage, opc::kDeleteIoCq, opc::kCreateIoCq,
                       opc::kIdentify, opc::kAbort, opc::kGetFeatures, opc::kAsyncEventRequest, opc::kKeepAlive})
        log->acs[op].set(kCseCsupp);
    log->acs[opc::kSetFeatures].set(kCseCsupp | kCseCcc);
    if (doorbell_buffer) log->acs[opc::kDoorbellBufferConfig].set(kCseCsupp);
    log->iocs[opc::kFlush].set(kCseCsupp | kCseLbcc);
    log->iocs[opc::kWrite].set(kCseCsupp | kCseLbcc);
    log->iocs[opc::kRead].set(kCseCsupp);
    log->iocs[opc::kCompare].set(kCseCsupp);
    log->iocs[opc::kWriteZeroes].set(kCseCsupp | kCseLbcc);
    log->iocs[opc::kDatasetManagement].set(kCseCsupp | kCseLbcc);
    if (csi == kCsiZns) {
        log->iocs[opc::kZoneMgmtSend].set(kCseCsupp | kCseLbcc);
        log->iocs[opc::kZoneMgmtRecv].set(kCseCsupp);
        log->iocs[opc::kZoneAppend].set(kCseCsupp | kCseLbcc);
    }
}

}  // namespace

void Controller::RecordError(const Req& r) {
    // Fabrics-level and aborted commands are not media or command errors worth a log entry.
    if (StatusNoDnr(r.status) == sc::kAbortSqDeleted) return;
    util::MutexLock lk(mu_);
    ErrorRecord e{++error_count_, r.qid, r.cmd.cid.get(), r.status, r.err_lba, r.cmd.nsid.get()};
    errors_.push_front(e);
    if (errors_.size() > kElpe + 1) errors_.pop_back();
}

void Controller::GetLogPage(Req& r) {
    uint32_t cdw10 = r.cmd.cdw10.get(), cdw11 = r.cmd.cdw11.get();
    uint8_t lid = static_cast<uint8_t>(Bits(cdw10, 7, 0));
    bool rae = Bit(cdw10, 15);
    uint64_t numd = ((uint64_t{Bits(cdw11, 15, 0)} << 16) | Bits(cdw10, 31, 16)) + 1;
    uint64_t offset = uint64_t{r.cmd.cdw12.get()} | (uint64_t{r.cmd.cdw13.get()} << 32);
    uint8_t csi = static_cast<uint8_t>(Bits(r.cmd.cdw14.get(), 31, 24));
    uint32_t nsid = r.cmd.nsid.get();
    uint64_t len = numd * 4;
    if (offset & 3) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (len > MaxTransferBytes()) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (!CheckData(r, len)) return;

    std::vector<uint8_t> page;
    auto put = [&page](const auto& s) {
        page.resize(sizeof(s));
        std::memcpy(page.data(), &s, sizeof(s));
    };
    switch (lid) {
    case lid::kErrorInfo: {
        util::MutexLock lk(mu_);
        page.assign((kElpe + 1) * sizeof(ErrorLogEntry), 0);
        size_t i = 0;
        for (const ErrorRecord& e : errors_) {
            ErrorLogEntry x{};
            x.error_count.set(e.count);
            x.sqid.set(e.sqid);
            x.cmdid.set(e.cid);
            x.status_field.set(static_cast<uint16_t>(e.status << 1));
            x.parm_error_location.set(0xffff);
            x.lba.set(e.lba);
            x.nsid.set(e.nsid);
            std::memcpy(page.data() + i++ * sizeof(x), &x, sizeof(x));
        }
        break;
    }
    case lid::kSmartHealth: {
        SmartLog s{};
        s.temperature.set(313);  // 40 C
        s.avail_spare = 100;
        s.spare_thresh = 10;
        // Data units are thousands of 512-byte units, rounded up.
        Put128(s.data_units_read, (units_read_.load() / 512 + 999) / 1000);
        Put128(s.data_units_written, (units_written_.load() / 512 + 999) / 1000);
        Put128(s.host_reads, host_reads_.load());
        Put128(s.host_writes, host_writes_.load());
        Put128(s.power_cycles, 1);
        {
            util::MutexLock lk(mu_);
            Put128(s.num_err_log_entries, error_count_);
        }
        s.temp_sensor[0].set(313);
        put(s);
        break;
    }
    case lid::kFirmwareSlot: {
        FirmwareSlotLog f{};
        f.afi = 1;
        SetAscii(f.frs[0], subsys_->config().firmware.c_str(), ' ');
        put(f);
        break;
    }
    case lid::kChangedNsList: {
        ChangedNsList l{};  // namespaces never change while controllers exist
        put(l);
        if (!rae) ClearEventMask(lid::kChangedNsList);
        break;
    }
    case lid::kCommandsEffects: {
        if (csi != kCsiNvm && csi != kCsiZns) { r.status = sc::kInvalidField | sc::kDnr; return; }
        CommandsEffectsLog l{};
        FillEffects(&l, csi, cfg_.transport == TransportKind::kPci && cfg_.doorbell_buffer);
        put(l);
        break;
    }
    case lid::kChangedZoneList: {
        auto ns = ActiveNamespace(nsid);
        if (!ns || !ns->zoned()) { r.status = sc::kInvalidField | sc::kDnr; return; }
        ChangedZoneList l{};
        {
            util::MutexLock lk(mu_);
            auto it = changed_zones_.find(nsid);
            if (it != changed_zones_.end()) {
                if (it->second.overflow) {
                    l.nrzid.set(0xffff);
                } else {
                    l.nrzid.set(static_cast<uint16_t>(it->second.zids.size()));
                    for (size_t i = 0; i < it->second.zids.size(); i++) l.zid[i].set(it->second.zids[i]);
                }
                if (!rae) changed_zones_.erase(it);  // cleared by a read that does not retain
            }
        }
        put(l);
        if (!rae) ClearEventMask(lid::kChangedZoneList);
        break;
    }
    default:
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    if (offset >= page.size()) { r.status = sc::kInvalidField | sc::kDnr; return; }
    ReturnData(r, page.data() + offset, page.size() - offset, len);
}

}  // namespace qzns::nvme
