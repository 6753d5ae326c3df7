#include "hw/nvme/discovery-log.h"

#include <algorithm>
#include <cstring>

namespace qzns::nvme {
namespace {

template <size_t N>
void CopyString(char (&dst)[N], const std::string& s) {
    std::memset(dst, 0, N);
    std::memcpy(dst, s.data(), std::min(s.size(), N - 1));
}

bool SameRecords(const std::vector<DiscoveryRecord>& a, const std::vector<DiscoveryRecord>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++) {
        if (a[i].subnqn != b[i].subnqn || a[i].traddr != b[i].traddr || a[i].trsvcid != b[i].trsvcid ||
            a[i].portid != b[i].portid || a[i].allowed_hosts != b[i].allowed_hosts)
            return false;
    }
    return true;
}

bool Visible(const DiscoveryRecord& r, const std::string& hostnqn) {
    return r.allowed_hosts.empty() ||
           std::find(r.allowed_hosts.begin(), r.allowed_hosts.end(), hostnqn) != r.allowed_hosts.end();
}

}  // namespace

bool DiscoveryLog::SetRecords(std::vector<DiscoveryRecord> records) {
    util::MutexLock lk(mu_);
    if (SameRecords(records_, records)) return false;
    records_ = std::move(records);
    genctr_++;
    return true;
}

uint64_t DiscoveryLog::genctr() const {
    util::MutexLock lk(mu_);
    return genctr_;
}

std::vector<uint8_t> DiscoveryLog::Page(const std::string& hostnqn) const {
    util::MutexLock lk(mu_);
    std::vector<const DiscoveryRecord*> visible;
    for (const auto& r : records_)
        if (Visible(r, hostnqn)) visible.push_back(&r);
    std::vector<uint8_t> page(sizeof(DiscoveryLogHeader) + visible.size() * sizeof(DiscoveryLogEntry), 0);
    DiscoveryLogHeader h{};
    h.genctr.set(genctr_);
    h.numrec.set(visible.size());
    h.recfmt.set(0);
    std::memcpy(page.data(), &h, sizeof(h));
    for (size_t i = 0; i < visible.size(); i++) {
        const DiscoveryRecord& r = *visible[i];
        DiscoveryLogEntry e{};
        e.trtype = disc::kTrtypeTcp;
        e.adrfam = r.traddr.find(':') != std::string::npos ? disc::kAdrfamIpv6 : disc::kAdrfamIpv4;
        e.subtype = disc::kSubtypeNvm;
        e.treq = disc::kTreqSecureChannelNotRequired;
        e.portid.set(r.portid);
        e.cntlid.set(0xffff);
        e.asqsz.set(disc::kAsqsz);
        e.eflags.set(0);
        CopyString(e.trsvcid, std::to_string(r.trsvcid));
        CopyString(e.subnqn, r.subnqn);
        CopyString(e.traddr, r.traddr);
        e.tsas[0] = disc::kSectypeNone;
        std::memcpy(page.data() + sizeof(DiscoveryLogHeader) + i * sizeof(DiscoveryLogEntry), &e, sizeof(e));
    }
    return page;
}

}  // namespace qzns::nvme
