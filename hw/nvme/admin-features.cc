// Get Features (0Ah) / Set Features (09h).
#include <algorithm>
#include <cstring>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/subsystem.h"

namespace qzns::nvme {
namespace {

constexpr uint32_t kSupportedAec = kAecSmartMask | kAecZoneDescriptorChanged;
// Get Features SEL = 11b: capabilities. Bit 2 changeable (nothing is saveable or NS specific).
constexpr uint32_t kCapChangeable = 1u << 2;

bool KnownFeature(uint8_t f) {
    switch (f) {
    case fid::kArbitration:
    case fid::kPowerManagement:
    case fid::kTemperatureThreshold:
    case fid::kVolatileWriteCache:
    case fid::kNumberOfQueues:
    case fid::kAsyncEventConfig:
    case fid::kTimestamp:
    case fid::kKeepAliveTimer:
    case fid::kIoCommandSetProfile:
        return true;
    default:
        return false;
    }
}

}  // namespace

void Controller::GetFeatures(Req& r) {
    uint32_t cdw10 = r.cmd.cdw10.get(), cdw11 = r.cmd.cdw11.get();
    uint8_t f = static_cast<uint8_t>(Bits(cdw10, 7, 0));
    uint32_t sel = Bits(cdw10, 10, 8);
    if (!KnownFeature(f) || sel > 3) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (sel == 3) {
        r.dw0 = f == fid::kNumberOfQueues ? 0 : kCapChangeable;
        return;
    }
    // Nothing is saveable: "saved" reports the default, like a power-on value.
    bool dflt = sel == 1 || sel == 2;
    Features fresh;
    fresh.nsqa = fresh.ncqa = static_cast<uint16_t>(cfg_.max_io_queues - 1);
    util::MutexLock lk(mu_);
    const Features& v = dflt ? fresh : feat_;
    switch (f) {
    case fid::kArbitration: r.dw0 = v.arbitration; break;
    case fid::kPowerManagement: r.dw0 = v.power_management; break;
    case fid::kTemperatureThreshold: {
        uint32_t tmpsel = Bits(cdw11, 19, 16), thsel = Bits(cdw11, 21, 20);
        if (tmpsel != 0 || thsel > 1) { r.status = sc::kInvalidField | sc::kDnr; return; }
        r.dw0 = thsel == 0 ? v.temp_over : v.temp_under;
        break;
    }
    case fid::kVolatileWriteCache: r.dw0 = v.write_cache ? 1 : 0; break;
    case fid::kNumberOfQueues: r.dw0 = uint32_t{v.nsqa} | (uint32_t{v.ncqa} << 16); break;
    case fid::kAsyncEventConfig: r.dw0 = v.async_event_config; break;
    case fid::kKeepAliveTimer: r.dw0 = kato_ms_.load(); break;
    case fid::kIoCommandSetProfile: r.dw0 = v.iocs_index; break;
    case fid::kTimestamp: {
        lk.Unlock();
        if (!CheckData(r, sizeof(TimestampData))) return;
        lk.Lock();
        auto now = std::chrono::steady_clock::now();
        uint64_t ms;
        uint8_t origin = 0;
        if (!dflt && feat_.timestamp_set) {
            ms = feat_.timestamp_ms + static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          now - feat_.timestamp_set_at).count());
            origin = 1;  // set by a host with Set Features
        } else {
            ms = static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::milliseconds>(now - created_).count());
        }
        TimestampData t{};
        for (int i = 0; i < 6; i++) t.timestamp[i] = static_cast<uint8_t>(ms >> (8 * i));
        t.attr = static_cast<uint8_t>(origin << 1);
        lk.Unlock();
        ReturnData(r, &t, sizeof(t), sizeof(t));
        break;
    }
    default: break;
    }
}

void Controller::SetFeatures(Req& r) {
    uint32_t cdw10 = r.cmd.cdw10.get(), cdw11 = r.cmd.cdw11.get();
    uint8_t f = static_cast<uint8_t>(Bits(cdw10, 7, 0));
    bool sv = Bit(cdw10, 31);
    if (!KnownFeature(f)) { r.status = sc::kInvalidField | sc::kDnr; return; }
    if (sv) { r.status = sc::kFeatureNotSaveable | sc::kDnr; return; }
    if (f == fid::kTimestamp) {
        if (!CheckData(r, sizeof(TimestampData))) return;
        TimestampData t = Load<TimestampData>(r.data.data());
        uint64_t ms = 0;
        for (int i = 0; i < 6; i++) ms |= uint64_t{t.timestamp[i]} << (8 * i);
        util::MutexLock lk(mu_);
        feat_.timestamp_ms = ms;
        feat_.timestamp_set_at = std::chrono::steady_clock::now();
        feat_.timestamp_set = true;
        return;
    }
    util::MutexLock lk(mu_);
    switch (f) {
    case fid::kArbitration: feat_.arbitration = cdw11 & 0xffffff07u; break;
    case fid::kPowerManagement:
        if (Bits(cdw11, 4, 0) != 0) { r.status = sc::kInvalidField | sc::kDnr; return; }  // NPSS = 0
        feat_.power_management = cdw11 & 0xff;
        break;
    case fid::kTemperatureThreshold: {
        uint32_t tmpsel = Bits(cdw11, 19, 16), thsel = Bits(cdw11, 21, 20);
        if (tmpsel != 0 || thsel > 1) { r.status = sc::kInvalidField | sc::kDnr; return; }
        (thsel == 0 ? feat_.temp_over : feat_.temp_under) = static_cast<uint16_t>(Bits(cdw11, 15, 0));
        break;
    }
    case fid::kVolatileWriteCache:
        feat_.write_cache = Bit(cdw11, 0);
        write_cache_ = feat_.write_cache;
        break;
    case fid::kNumberOfQueues: {
        uint32_t nsqr = Bits(cdw11, 15, 0), ncqr = Bits(cdw11, 31, 16);
        if (nsqr == 0xffff || ncqr == 0xffff) { r.status = sc::kInvalidField | sc::kDnr; return; }
        if (cfg_.transport == TransportKind::kPci && (!pci_sqs_.empty() || !pci_cqs_.empty())) {
            r.status = sc::kCommandSequenceError | sc::kDnr;
            return;
        }
        uint16_t max = static_cast<uint16_t>(cfg_.max_io_queues - 1);
        feat_.nsqa = static_cast<uint16_t>(std::min<uint32_t>(nsqr, max));
        feat_.ncqa = static_cast<uint16_t>(std::min<uint32_t>(ncqr, max));
        feat_.queues_set = true;
        r.dw0 = uint32_t{feat_.nsqa} | (uint32_t{feat_.ncqa} << 16);
        break;
    }
    case fid::kAsyncEventConfig:
        if (cdw11 & ~kSupportedAec) { r.status = sc::kInvalidField | sc::kDnr; return; }
        feat_.async_event_config = cdw11;
        break;
    case fid::kKeepAliveTimer:
        kato_ms_ = cdw11;
        lk.Unlock();
        WakeKeepAlive();
        return;
    case fid::kIoCommandSetProfile: {
        uint32_t index = Bits(cdw11, 8, 0);
        if (index > 1) { r.status = sc::kIoCommandSetCombinationRejected | sc::kDnr; return; }
        feat_.iocs_index = static_cast<uint16_t>(index);
        break;
    }
    default: break;
    }
}

}  // namespace qzns::nvme
