// Asynchronous Event Request (0Ch) and the events behind it: Zone Descriptor Changed notices
// (ZNS: type Notice, information EFh, log page BFh), masked until the host reads the log page.
#include <algorithm>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {

void Controller::AsyncEventRequest(Req* r) {
    {
        util::MutexLock lk(mu_);
        if (aers_.size() > kAerl) {
            r->status = sc::kAsyncEventRequestLimitExceeded | sc::kDnr;
        } else {
            SetState(*r, RequestState::kAerPending);
            aers_.push_back(r);
            r = nullptr;
        }
    }
    if (r) {
        Complete(r);
        return;
    }
    DeliverEvents();
}

void Controller::PostEvent(uint8_t type, uint8_t info, uint8_t log_page) {
    {
        util::MutexLock lk(mu_);
        // One outstanding event per log page: more changes only extend the log.
        if (masked_log_pages_.count(log_page)) return;
        masked_log_pages_.insert(log_page);
        events_.push_back(PendingEvent{type, info, log_page});
    }
    DeliverEvents();
}

void Controller::DeliverEvents() {
    std::vector<Req*> ready;
    {
        util::MutexLock lk(mu_);
        while (!aers_.empty() && !events_.empty()) {
            PendingEvent e = events_.front();
            events_.pop_front();
            Req* r = aers_.front();
            aers_.pop_front();
            r->dw0 = uint32_t{e.type} | (uint32_t{e.info} << 8) | (uint32_t{e.log_page} << 16);
            ready.push_back(r);
        }
    }
    for (Req* r : ready) Complete(r);
}

void Controller::AbortPendingAers(uint16_t status) {
    std::deque<Req*> aers;
    {
        util::MutexLock lk(mu_);
        aers.swap(aers_);
    }
    for (Req* r : aers) {
        r->status = status;
        Complete(r);
    }
}

void Controller::ClearEventMask(uint8_t log_page) {
    util::MutexLock lk(mu_);
    masked_log_pages_.erase(log_page);
    events_.erase(std::remove_if(events_.begin(), events_.end(),
                                 [&](const PendingEvent& e) { return e.log_page == log_page; }),
                  events_.end());
}

void Controller::OnZoneChanged(uint32_t nsid, uint64_t zslba) {
    if (torn_down_.load()) return;
    bool notify;
    {
        util::MutexLock lk(mu_);
        ChangedZones& cz = changed_zones_[nsid];
        if (!cz.overflow && std::find(cz.zids.begin(), cz.zids.end(), zslba) == cz.zids.end()) {
            if (cz.zids.size() == 511) {
                cz.overflow = true;
                cz.zids.clear();
            } else {
                cz.zids.push_back(zslba);
            }
        }
        notify = (feat_.async_event_config & kAecZoneDescriptorChanged) && (csts_.load() & kCstsRdy);
    }
    if (notify) PostEvent(kAenTypeNotice, kAenInfoZoneDescriptorChanged, lid::kChangedZoneList);
}

}  // namespace qzns::nvme
