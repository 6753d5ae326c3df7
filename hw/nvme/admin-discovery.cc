// What a controller of the discovery subsystem answers (NVMe-oF 1.1 §5): Identify Controller
// (CNTRLTYPE 2), the Discovery Log Page (70h), Get/Set Features for Asynchronous Event
// Configuration and Keep Alive Timer, plus Keep Alive and AER from the common path. Everything
// else is Invalid Opcode, as in Linux's nvmet. The registers, Connect, Property Get/Set,
// keep-alive and events are the controller's own, shared with NVM subsystems.
#include <algorithm>
#include <cstring>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/discovery-log.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {
namespace {

constexpr uint16_t kKas = 1;  // keep-alive granularity 100 ms

}  // namespace

void Controller::ExecuteDiscoveryAdmin(Req& r) {
    switch (r.cmd.opcode) {
    case opc::kIdentify: IdentifyDiscovery(r); return;
    case opc::kGetLogPage: DiscoveryLogPage(r); return;
    case opc::kGetFeatures:
    case opc::kSetFeatures: DiscoveryFeatures(r); return;
    default: r.status = sc::kInvalidOpcode | sc::kDnr; return;
    }
}

void Controller::IdentifyDiscovery(Req& r) {
    if (Bits(r.cmd.cdw10.get(), 7, 0) != cns::kController) {
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    if (!CheckData(r, sizeof(IdCtrl))) return;
    const SubsystemConfig& sc_ = subsys_->config();
    IdCtrl id{};
    SetAscii(id.sn, sc_.serial.c_str(), ' ');
    SetAscii(id.mn, sc_.model.c_str(), ' ');
    SetAscii(id.fr, sc_.firmware.c_str(), ' ');
    id.mdts = 0;  // no limit: the log page grows with the number of exports
    id.cntlid.set(cntlid_);
    id.ver.set(kVersionDiscovery);
    id.oaes.set(disc::kAecDiscoveryLogChange);
    id.cntrltype = 2;  // discovery controller
    id.aerl = kAerl;
    id.lpa = kLpaExtendedData;  // NUMDU and LPO: libnvme reads the log page in pieces
    id.kas.set(kKas);
    id.sqes = 0x66;
    id.cqes = 0x44;
    id.maxcmd.set(static_cast<uint16_t>(cfg_.mqes + 1));
    id.sgls.set(kSglsSupported | kSglsOffset);
    std::strncpy(id.subnqn, subsys_->nqn().c_str(), sizeof(id.subnqn) - 1);
    // IOCCSZ / IORCSZ stay 0: no I/O queues (Linux skips its capsule-size checks for discovery).
    id.msdbd = 1;
    std::memcpy(r.data.data(), &id, sizeof(id));
    r.c2h_len = sizeof(id);
}

void Controller::DiscoveryLogPage(Req& r) {
    const uint32_t cdw10 = r.cmd.cdw10.get();
    const uint8_t lid = static_cast<uint8_t>(Bits(cdw10, 7, 0));
    const bool rae = Bit(cdw10, 15);
    const uint64_t numd = ((uint64_t{r.cmd.cdw11.get() & 0xffff} << 16) | Bits(cdw10, 31, 16)) + 1;
    const uint64_t len = numd * 4;
    const uint64_t offset = uint64_t{r.cmd.cdw12.get()} | (uint64_t{r.cmd.cdw13.get()} << 32);
    if (lid != kLidDiscovery) {
        r.status = sc::kInvalidLogPage | sc::kDnr;
        return;
    }
    if (offset & 3) {
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    if (!CheckData(r, len)) return;
    std::vector<uint8_t> page = subsys_->discovery_log()->Page(hostnqn());
    if (offset > page.size()) {
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    // Bytes past the end of the page read as zeros.
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, page.size() - offset));
    std::memcpy(r.data.data(), page.data() + offset, n);
    std::memset(r.data.data() + n, 0, static_cast<size_t>(len - n));
    if (!rae) ClearEventMask(kLidDiscovery);
    r.c2h_len = static_cast<uint32_t>(len);
}

void Controller::DiscoveryFeatures(Req& r) {
    const uint32_t cdw10 = r.cmd.cdw10.get(), cdw11 = r.cmd.cdw11.get();
    const uint8_t f = static_cast<uint8_t>(Bits(cdw10, 7, 0));
    const bool set = r.cmd.opcode == opc::kSetFeatures;
    if (set && Bit(cdw10, 31)) {
        r.status = sc::kFeatureNotSaveable | sc::kDnr;
        return;
    }
    switch (f) {
    case fid::kAsyncEventConfig: {
        util::MutexLock lk(mu_);
        if (set) feat_.async_event_config = cdw11 & disc::kAecDiscoveryLogChange;
        r.dw0 = feat_.async_event_config;
        return;
    }
    case fid::kKeepAliveTimer:
        if (set) {
            kato_ms_ = cdw11;
            WakeKeepAlive();
        }
        r.dw0 = kato_ms_.load();
        return;
    default: r.status = sc::kInvalidField | sc::kDnr; return;
    }
}

void Controller::OnDiscoveryLogChanged() {
    if (torn_down_.load() || !(csts_.load() & kCstsRdy)) return;
    {
        util::MutexLock lk(mu_);
        if (!(feat_.async_event_config & disc::kAecDiscoveryLogChange)) return;
    }
    // One outstanding notice until the host reads the log page with RAE clear.
    PostEvent(kAenTypeNotice, disc::kAenInfoDiscoveryLogChange, kLidDiscovery);
}

}  // namespace qzns::nvme
