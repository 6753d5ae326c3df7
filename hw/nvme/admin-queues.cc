// Queue management for PCI-style transports (Create/Delete I/O SQ/CQ, Doorbell Buffer Config),
// Abort and Keep Alive.
// The rings live in host memory, so the controller validates and the transport's PciQueueHooks
// maps them.
#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {

void Controller::CreateIoCq(Req& r) {
    uint32_t cdw10 = r.cmd.cdw10.get(), cdw11 = r.cmd.cdw11.get();
    uint16_t qid = static_cast<uint16_t>(Bits(cdw10, 15, 0));
    uint32_t qsize = Bits(cdw10, 31, 16);
    bool pc = Bit(cdw11, 0), ien = Bit(cdw11, 1);
    uint16_t iv = static_cast<uint16_t>(Bits(cdw11, 31, 16));
    util::MutexLock lk(mu_);
    if (qid == 0 || qid > uint32_t{feat_.ncqa} + 1 || pci_cqs_.count(qid)) {
        r.status = sc::kInvalidQueueIdentifier | sc::kDnr;
        return;
    }
    if (qsize == 0 || qsize > cfg_.mqes) { r.status = sc::kInvalidQueueSize | sc::kDnr; return; }
    if (!pc) { r.status = sc::kInvalidField | sc::kDnr; return; }  // CAP.CQR = 1
    if (ien && iv >= cfg_.msix_vectors) { r.status = sc::kInvalidInterruptVector | sc::kDnr; return; }
    uint64_t prp1 = r.cmd.dptr1.get();
    if (prp1 == 0 || (prp1 & 0xfff)) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (!hooks_) { r.status = sc::kInternalError; return; }
    uint16_t st = hooks_->CreateIoCq(IoCqParams{qid, qsize + 1, prp1, ien, iv});
    if (st != sc::kSuccess) { r.status = st; return; }
    pci_cqs_.insert(qid);
}

void Controller::CreateIoSq(Req& r) {
    uint32_t cdw10 = r.cmd.cdw10.get(), cdw11 = r.cmd.cdw11.get();
    uint16_t qid = static_cast<uint16_t>(Bits(cdw10, 15, 0));
    uint32_t qsize = Bits(cdw10, 31, 16);
    bool pc = Bit(cdw11, 0);
    uint8_t qprio = static_cast<uint8_t>(Bits(cdw11, 2, 1));
    uint16_t cqid = static_cast<uint16_t>(Bits(cdw11, 31, 16));
    util::MutexLock lk(mu_);
    if (qid == 0 || qid > uint32_t{feat_.nsqa} + 1 || pci_sqs_.count(qid)) {
        r.status = sc::kInvalidQueueIdentifier | sc::kDnr;
        return;
    }
    if (cqid == 0 || !pci_cqs_.count(cqid)) { r.status = sc::kCompletionQueueInvalid | sc::kDnr; return; }
    if (qsize == 0 || qsize > cfg_.mqes) { r.status = sc::kInvalidQueueSize | sc::kDnr; return; }
    if (!pc) { r.status = sc::kInvalidField | sc::kDnr; return; }
    uint64_t prp1 = r.cmd.dptr1.get();
    if (prp1 == 0 || (prp1 & 0xfff)) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (!hooks_) { r.status = sc::kInternalError; return; }
    uint16_t st = hooks_->CreateIoSq(IoSqParams{qid, qsize + 1, prp1, cqid, qprio});
    if (st != sc::kSuccess) { r.status = st; return; }
    pci_sqs_[qid] = cqid;
    ReserveRequests(qid, qsize + 1);
}

// Base 2.0 5.8: PRP1 is the Shadow Doorbell buffer, PRP2 the EventIdx buffer, each one memory
// page; an address that is not memory-page aligned is Invalid Field in Command. Both must be
// PRPs (the command carries no SGL). The transport checks the pages are guest memory.
void Controller::DoorbellBufferConfig(Req& r) {
    uint64_t dbs = r.cmd.dptr1.get(), eis = r.cmd.dptr2.get();
    util::MutexLock lk(mu_);
    uint64_t page = 4096ull << CcMps(cc_);
    if (((r.cmd.flags >> 6) & 3) != 0 || dbs == 0 || eis == 0 || (dbs & (page - 1)) || (eis & (page - 1)) ||
        dbs == eis) {
        r.status = sc::kInvalidField | sc::kDnr;
        return;
    }
    if (!hooks_) { r.status = sc::kInternalError; return; }
    r.status = hooks_->SetDoorbellBuffer(dbs, eis, static_cast<uint32_t>(page));
}

void Controller::DeleteIoSq(Req& r) {
    uint16_t qid = static_cast<uint16_t>(Bits(r.cmd.cdw10.get(), 15, 0));
    util::MutexLock lk(mu_);
    if (qid == 0 || !pci_sqs_.count(qid)) { r.status = sc::kInvalidQueueIdentifier | sc::kDnr; return; }
    if (hooks_) hooks_->DeleteIoSq(qid);
    pci_sqs_.erase(qid);
}

void Controller::DeleteIoCq(Req& r) {
    uint16_t qid = static_cast<uint16_t>(Bits(r.cmd.cdw10.get(), 15, 0));
    util::MutexLock lk(mu_);
    if (qid == 0 || !pci_cqs_.count(qid)) { r.status = sc::kInvalidQueueIdentifier | sc::kDnr; return; }
    for (auto& [sq, cq] : pci_sqs_)
        if (cq == qid) { r.status = sc::kInvalidQueueDeletion | sc::kDnr; return; }
    if (hooks_) hooks_->DeleteIoCq(qid);
    pci_cqs_.erase(qid);
}

void Controller::Abort(Req& r) {
    uint32_t cdw10 = r.cmd.cdw10.get();
    uint16_t sqid = static_cast<uint16_t>(Bits(cdw10, 15, 0));
    uint16_t cid = static_cast<uint16_t>(Bits(cdw10, 31, 16));
    r.dw0 = 1;  // bit 0 set: command not aborted
    if (sqid != 0) return;  // I/O commands run to completion: they cannot be recalled
    // A pending Asynchronous Event Request can be aborted.
    Req* victim = nullptr;
    {
        util::MutexLock lk(mu_);
        for (auto it = aers_.begin(); it != aers_.end(); ++it) {
            if ((*it)->cmd.cid.get() == cid) {
                victim = *it;
                aers_.erase(it);
                break;
            }
        }
    }
    if (victim) {
        victim->status = sc::kAbortRequested;
        Complete(victim);
        r.dw0 = 0;
    }
}

void Controller::KeepAlive(Req& /*r*/) { Touch(); }

}  // namespace qzns::nvme
