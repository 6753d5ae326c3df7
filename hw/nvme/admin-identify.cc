// Identify (06h): controller, namespaces, namespace lists, descriptors, command set data.
#include <cstring>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {

void Controller::FillIdCtrl(IdCtrl* id) const {
    const SubsystemConfig& sc_ = subsys_->config();
    bool fabrics = cfg_.transport == TransportKind::kFabrics;
    id->vid.set(sc_.vid);
    id->ssvid.set(sc_.ssvid);
    SetAscii(id->sn, sc_.serial.c_str(), ' ');
    SetAscii(id->mn, sc_.model.c_str(), ' ');
    SetAscii(id->fr, sc_.firmware.c_str(), ' ');
    id->rab = 6;
    // CMIC.MCTRS makes Linux build a native-multipath head over the namespace; with zoned btrfs
    // on Linux 6.1 zone-append completions then carry the hidden path's bdev and btrfs oopses
    // (btrfs_rewrite_logical_zoned). Off unless the subsystem is configured for several paths.
    id->cmic = sc_.multi_controller ? kCmicMultiController : 0;
    id->mdts = cfg_.mdts;
    id->cntlid.set(cntlid_);
    id->ver.set(0x00020000);
    id->oaes.set(kOaesZoneDescriptorChanged);
    // 128-bit host identifier (fabrics Connect); any command resets the keep-alive timer.
    id->ctratt.set(kCtrattHostId128 | kCtrattTbkas);
    id->cntrltype = 1;  // I/O controller
    // Shadow doorbells (Doorbell Buffer Config) exist for PCI transports only; Linux's nvme-pci
    // driver uses them for its I/O queues when this bit is set.
    id->oacs.set(cfg_.transport == TransportKind::kPci && cfg_.doorbell_buffer ? kOacsDoorbellBufferConfig : 0);
    id->acl = 3;
    id->aerl = kAerl;
    id->frmw = (1u << 1) | 1u;  // one slot, read only
    id->lpa = kLpaCommandEffects | kLpaExtendedData;
    id->elpe = kElpe;
    id->npss = 0;
    id->wctemp.set(0x0157);
    id->cctemp.set(0x0175);
    id->kas.set(1);  // 100 ms granularity
    id->sqes = 0x66;
    id->cqes = 0x44;
    id->maxcmd.set(static_cast<uint16_t>(cfg_.mqes + 1));
    id->nn.set(sc_.max_nsid);
    id->oncs.set(kOncsCompare | kOncsDsm | kOncsWriteZeroes | kOncsTimestamp);
    id->vwc = kVwcPresent | kVwcFlushBroadcast;
    id->sgls.set(fabrics ? (kSglsSupported | kSglsOffset) : 0);
    std::memset(id->subnqn, 0, sizeof(id->subnqn));
    std::strncpy(id->subnqn, subsys_->nqn().c_str(), sizeof(id->subnqn) - 1);
    if (fabrics) {
        id->ioccsz.set((64 + cfg_.in_capsule_data_bytes) / 16);
        id->iorcsz.set(1);
        id->icdoff.set(0);
        id->fcatt = 0;  // dynamic controller model
        id->msdbd = 1;
    }
    id->psd[0].mp.set(2500);  // 25 W in 0.01 W units
    id->psd[0].enlat.set(16);
    id->psd[0].exlat.set(4);
}

void Controller::Identify(Req& r) {
    uint32_t cdw10 = r.cmd.cdw10.get(), cdw11 = r.cmd.cdw11.get();
    uint8_t cns = static_cast<uint8_t>(Bits(cdw10, 7, 0));
    uint8_t csi = static_cast<uint8_t>(Bits(cdw11, 31, 24));
    uint32_t nsid = r.cmd.nsid.get();
    alignas(8) uint8_t buf[4096] = {};
    if (!CheckData(r, 4096)) return;

    // A namespace that exists but is not active reads as zeros; an NSID no namespace could have
    // is Invalid Namespace or Format.
    auto lookup = [&](bool* invalid) -> std::shared_ptr<Namespace> {
        *invalid = nsid == 0 || nsid > subsys_->config().max_nsid;
        if (*invalid) return nullptr;
        return ActiveNamespace(nsid);
    };
    bool invalid = false;
    switch (cns) {
    case cns::kNamespace: {
        auto ns = lookup(&invalid);
        if (invalid) { r.status = sc::kInvalidNamespace | sc::kDnr; return; }
        if (ns) {
            IdNs id{};
            ns->FillIdNs(&id);
            std::memcpy(buf, &id, sizeof(id));
        }
        break;
    }
    case cns::kController: {
        IdCtrl id{};
        FillIdCtrl(&id);
        std::memcpy(buf, &id, sizeof(id));
        break;
    }
    case cns::kActiveNsList:
    case cns::kCsiActiveNsList: {
        if (nsid >= 0xfffffffeu) { r.status = sc::kInvalidNamespace | sc::kDnr; return; }
        if (cns == cns::kCsiActiveNsList && csi != kCsiNvm && csi != kCsiZns) {
            r.status = sc::kInvalidField | sc::kDnr;
            return;
        }
        size_t n = 0;
        for (auto& ns : subsys_->Namespaces()) {
            if (ns->nsid() <= nsid || !NamespaceActive(*ns)) continue;
            if (cns == cns::kCsiActiveNsList && ns->csi() != csi) continue;
            if (n == 1024) break;
            le32 v(ns->nsid());
            std::memcpy(buf + 4 * n++, &v, 4);
        }
        break;
    }
    case cns::kNsDescriptorList: {
        auto ns = lookup(&invalid);
        if (invalid || !ns) { r.status = sc::kInvalidNamespace | sc::kDnr; return; }
        ns->FillDescriptors(buf);
        break;
    }
    case cns::kNvmSetList:
        break;  // no NVM Sets: zero entries
    case cns::kCsiNamespace: {
        auto ns = lookup(&invalid);
        if (invalid) { r.status = sc::kInvalidNamespace | sc::kDnr; return; }
        if (csi != kCsiNvm && csi != kCsiZns) { r.status = sc::kInvalidField | sc::kDnr; return; }
        if (ns && ns->csi() != csi) { r.status = sc::kInvalidField | sc::kDnr; return; }
        if (ns && csi == kCsiZns) {
            IdNsZns id{};
            ns->FillIdNsZns(&id);
            std::memcpy(buf, &id, sizeof(id));
        }
        // CSI 0: the NVM command set specific structure has nothing this device reports.
        break;
    }
    case cns::kCsiController:
        if (csi == kCsiZns) {
            IdCtrlZns id{};
            id.zasl = static_cast<uint8_t>(EffectiveZasl());
            std::memcpy(buf, &id, sizeof(id));
        } else if (csi == kCsiNvm) {
            IdCtrlNvm id{};  // no Verify/Write Zeroes/DSM size limits beyond MDTS
            std::memcpy(buf, &id, sizeof(id));
        } else {
            r.status = sc::kInvalidField | sc::kDnr;
            return;
        }
        break;
    case cns::kIndependentNamespace: {
        auto ns = lookup(&invalid);
        if (invalid) { r.status = sc::kInvalidNamespace | sc::kDnr; return; }
        if (ns) {
            IdNsIndependent id{};
            ns->FillIdNsIndependent(&id);
            std::memcpy(buf, &id, sizeof(id));
        }
        break;
    }
    case cns::kIoCommandSet: {
        IoCommandSetVectors v{};
        v.iocsc[0].set(kIocsNvm | kIocsZns);
        v.iocsc[1].set(kIocsNvm);
        std::memcpy(buf, &v, sizeof(v));
        break;
    }
    default:
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    ReturnData(r, buf, sizeof(buf), 4096);
}

}  // namespace qzns::nvme
