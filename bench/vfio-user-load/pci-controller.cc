#include "bench/vfio-user-load/pci-controller.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "hw/vfio-user/protocol.h"

namespace qzns::load {

namespace {

constexpr uint32_t kAdminEntries = 32;
constexpr uint32_t kBar0 = vfu::kPciBar0RegionIndex;
constexpr uint32_t kCap = 0x00, kCc = 0x14, kCsts = 0x1c, kAqa = 0x24, kAsq = 0x28, kAcq = 0x30;
constexpr uint8_t kOpDeleteSq = 0x00, kOpDeleteCq = 0x04, kOpCreateSq = 0x01, kOpCreateCq = 0x05, kOpIdentify = 0x06, kOpSetFeatures = 0x09,
                  kOpDoorbellBufferConfig = 0x7c;
constexpr uint16_t kOacsDoorbellBufferConfig = 1u << 8;

bool WaitReady(VfioUserClient& c, bool ready, std::string* err) {
    for (int i = 0; i < 500; i++) {
        const uint32_t csts = c.Read32(kBar0, kCsts, err);
        if (!err->empty()) return false;
        if (csts & 2) {
            *err = "controller fatal status (CSTS.CFS)";
            return false;
        }
        if (static_cast<bool>(csts & 1) == ready) return true;
        usleep(10000);
    }
    *err = ready ? "CSTS.RDY never set" : "CSTS.RDY never cleared";
    return false;
}

}  // namespace

bool PciController::Enable(uint32_t io_queues, std::string* err) {
    const uint32_t vectors = c_.MsixVectors(err);
    if (!err->empty()) return false;
    if (vectors < io_queues + 1) {
        *err = "the device has " + std::to_string(vectors) + " MSI-X vectors, not one per queue";
        return false;
    }
    std::vector<int> fds;
    for (uint32_t v = 0; v <= io_queues; v++) {
        eventfds_.emplace_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        fds.push_back(eventfds_.back().get());
    }
    // Memory space and bus master on, as the guest's PCI core does before the driver starts.
    const uint16_t command = 0x0006;
    if (!c_.SetMsixEventfds(fds, err) ||
        !c_.RegionWrite(vfu::kPciConfigRegionIndex, 4, {reinterpret_cast<const uint8_t*>(&command), 2}, false, err))
        return false;
    const uint64_t cap = c_.Read64(kBar0, kCap, err);
    if (!err->empty()) return false;
    if ((cap >> 32) & 0xf) {
        *err = "CAP.DSTRD is not 0";
        return false;
    }
    max_entries_ = static_cast<uint32_t>(cap & 0xffff) + 1;
    if (!c_.Write32(kBar0, kCc, 0, false, err) || !WaitReady(c_, false, err)) return false;
    asq_ = mem_.Alloc(kAdminEntries * 64);
    acq_ = mem_.Alloc(kAdminEntries * 16);
    data_ = mem_.Alloc(4096);
    if (!asq_.ptr || !acq_.ptr || !data_.ptr) {
        *err = "guest memory too small";
        return false;
    }
    // EN, CSS 110b (all I/O command sets: ZNS needs it), MPS 4 KiB, IOSQES 6, IOCQES 4.
    return c_.Write32(kBar0, kAqa, ((kAdminEntries - 1) << 16) | (kAdminEntries - 1), false, err) &&
           c_.Write64(kBar0, kAsq, asq_.iova, err) && c_.Write64(kBar0, kAcq, acq_.iova, err) &&
           c_.Write32(kBar0, kCc, (6u << 16) | (4u << 20) | (6u << 4) | 1u, false, err) && WaitReady(c_, true, err);
}

bool PciController::Admin(uint8_t* sqe, const GuestBuffer* data, uint32_t* dw0, std::string* err) {
    const uint16_t cid = cid_++;
    PutLe(sqe + 2, cid, 2);
    if (data) PutLe(sqe + 24, data->iova, 8);
    std::memcpy(asq_.ptr + 64 * sq_tail_, sqe, 64);
    sq_tail_ = (sq_tail_ + 1) % kAdminEntries;
    if (!c_.Write32(kBar0, kDoorbells + SqSlot(0), sq_tail_, true, err)) return false;
    uint8_t* cqe = acq_.ptr + 16 * cq_head_;
    for (int waited = 0;;) {
        const uint16_t st = __atomic_load_n(reinterpret_cast<uint16_t*>(cqe + 14), __ATOMIC_ACQUIRE);
        if ((st & 1) == phase_) break;
        pollfd p{eventfds_[0].get(), POLLIN, 0};
        if (::poll(&p, 1, 100) == 1) {
            uint64_t n;
            (void)!::read(eventfds_[0].get(), &n, sizeof(n));
        } else if ((waited += 100) > 30000) {
            *err = "admin command 0x" + std::to_string(sqe[0]) + ": no completion within 30 s";
            return false;
        }
    }
    const uint16_t status = StatusOf(cqe);
    if (dw0) *dw0 = static_cast<uint32_t>(GetLe(cqe, 4));
    if (++cq_head_ == kAdminEntries) {
        cq_head_ = 0;
        phase_ ^= 1;
    }
    if (!c_.Write32(kBar0, kDoorbells + CqSlot(0), cq_head_, true, err)) return false;
    if (status != 0) {
        char b[80];
        snprintf(b, sizeof(b), "admin opcode 0x%02x failed with status 0x%03x", sqe[0], status);
        *err = b;
        return false;
    }
    return true;
}

bool PciController::Identify(uint32_t nsid, Geometry* g, std::string* err) {
    uint8_t sqe[64];
    auto identify = [&](uint8_t cns, uint8_t csi, uint32_t ns) {
        NewSqe(sqe, kOpIdentify, 0, ns);
        sqe[40] = cns;
        sqe[47] = csi;
        return Admin(sqe, &data_, nullptr, err);
    };
    if (!identify(0x01, 0, 0)) return false;
    GeometryFromController(data_.ptr, g);
    oacs_ = g->oacs;
    if (!identify(0x00, 0, nsid)) return false;
    GeometryFromNamespace(data_.ptr, nsid, g);
    const uint8_t flbas = data_.ptr[26];
    if (!identify(0x05, 0x02, nsid)) {
        g->zsze = 0;  // not a zoned namespace
        err->clear();
        return true;
    }
    GeometryFromZoned(data_.ptr, flbas, g);
    return true;
}

bool PciController::CreateQueues(uint32_t n, uint32_t entries, GuestMemory& rings_mem, std::vector<QueueRings>* out,
                                 std::string* err) {
    uint8_t sqe[64];
    NewSqe(sqe, kOpSetFeatures, 0, 0);
    sqe[40] = 0x07;  // Number of Queues, 0's based NSQR / NCQR
    PutLe(sqe + 44, ((n - 1) << 16) | (n - 1), 4);
    uint32_t granted = 0;
    if (!Admin(sqe, nullptr, &granted, err)) return false;
    if ((granted & 0xffff) + 1 < n || (granted >> 16) + 1 < n) {
        *err = "controller grants only " + std::to_string((granted & 0xffff) + 1) + " I/O queues";
        return false;
    }
    for (uint16_t qid = 1; qid <= n; qid++) {
        QueueRings r;
        r.qid = qid;
        r.entries = entries;
        r.sq = rings_mem.Alloc(64 * entries);
        r.cq = rings_mem.Alloc(16 * entries);
        r.eventfd = eventfds_[qid].get();
        if (!r.sq.ptr || !r.cq.ptr) {
            *err = "guest memory too small";
            return false;
        }
        NewSqe(sqe, kOpCreateCq, 0, 0);
        PutLe(sqe + 40, ((entries - 1) << 16) | qid, 4);
        PutLe(sqe + 44, (uint32_t{qid} << 16) | 0x3, 4);  // IV = qid, IEN, PC
        if (!Admin(sqe, &r.cq, nullptr, err)) return false;
        NewSqe(sqe, kOpCreateSq, 0, 0);
        PutLe(sqe + 40, ((entries - 1) << 16) | qid, 4);
        PutLe(sqe + 44, (uint32_t{qid} << 16) | 0x1, 4);  // CQID = qid, PC
        if (!Admin(sqe, &r.sq, nullptr, err)) return false;
        out->push_back(r);
    }
    return true;
}

bool PciController::Shutdown(uint32_t n, std::string* err) {
    uint8_t sqe[64];
    for (uint16_t qid = 1; qid <= n; qid++) {
        for (uint8_t op : {kOpDeleteSq, kOpDeleteCq}) {
            NewSqe(sqe, op, 0, 0);
            PutLe(sqe + 40, qid, 2);
            if (!Admin(sqe, nullptr, nullptr, err)) return false;
        }
    }
    const uint32_t cc = c_.Read32(kBar0, kCc, err);
    if (!err->empty() || !c_.Write32(kBar0, kCc, (cc & ~(3u << 14)) | (1u << 14), false, err)) return false;
    for (int i = 0; i < 500; i++) {
        const uint32_t csts = c_.Read32(kBar0, kCsts, err);
        if (!err->empty()) return false;
        if (((csts >> 2) & 3) == 2) return true;
        usleep(10000);
    }
    *err = "CSTS.SHST never said the shutdown was complete";
    return false;
}

bool PciController::EnableShadowDoorbells(std::string* err) {
    err->clear();
    if (!(oacs_ & kOacsDoorbellBufferConfig)) return false;
    shadow_ = mem_.Alloc(4096);
    eventidx_ = mem_.Alloc(4096);
    if (!shadow_.ptr || !eventidx_.ptr) {
        *err = "guest memory too small";
        return false;
    }
    uint8_t sqe[64];
    NewSqe(sqe, kOpDoorbellBufferConfig, 0, 0);
    PutLe(sqe + 32, eventidx_.iova, 8);  // PRP2: the EventIdx page
    if (!Admin(sqe, &shadow_, nullptr, err)) {
        shadow_ = eventidx_ = GuestBuffer{};
        return false;
    }
    return true;
}

}  // namespace qzns::load
