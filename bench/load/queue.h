// One I/O queue's load: a single-threaded loop over one queue (a QueuePort: an NVMe/TCP
// connection or a PCI queue pair over vfio-user) that keeps up to QD commands in flight against
// the zones this queue owns, and checks every completion and every byte read against the zone
// model (model.h). The model outlives the connection, so after a reconnect the acknowledged data
// is still checked.
#pragma once

#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/load/model.h"
#include "bench/load/nvme-cmd.h"
#include "bench/load/queue-port.h"
#include "bench/load/stats.h"

namespace qzns::load {

// kMixed is the verified zoned mix; the others are plain benchmark patterns over a namespace
// without zones (each queue gets its own LBA range; nothing is verified).
enum class Rw : uint8_t { kMixed, kRandRead, kRandWrite, kSeqWrite };

inline bool ParseRw(const std::string& m, Rw* rw) {
    if (m == "mixed") *rw = Rw::kMixed;
    else if (m == "randread") *rw = Rw::kRandRead;
    else if (m == "randwrite") *rw = Rw::kRandWrite;
    else if (m == "seqwrite") *rw = Rw::kSeqWrite;
    else return false;
    return true;
}

struct Workload {
    Rw rw = Rw::kMixed;
    uint32_t qd = 32;
    uint32_t bs = 4096;              // bytes per write / append / read
    uint32_t read_pct = 30;          // share of random reads of acknowledged data
    uint32_t append_pct = 50;        // share of zones filled by Zone Append after each reset
    uint32_t appends_per_zone = 8;   // appends in flight per zone
    uint32_t report_ms = 500;        // Report Zones period
    bool verify_only = false;        // read back a saved model, write nothing
};

class QueueWorker final : private QueueSink {
public:
    QueueWorker(const Workload& w, const Geometry& g, Stats& st, uint64_t seed)
        : w_(w), g_(g), st_(st), rng_(seed) {}

    // Runs until *stop (then drains) or until the port fails or *broken is set. Returns true
    // when it drained cleanly.
    bool Run(QueuePort& port, const std::atomic<bool>& stop, const std::atomic<bool>& broken);
    // Gives this worker its part of the namespace as queue `index` of `count`: for the
    // benchmark patterns an equal LBA range seen as one zone; for the zoned mix the
    // `zones_per_queue` zones from zone index * zones_per_queue, their generations drawn from
    // `seed` (so a saved model is told apart from a new run's data).
    void TakeShare(uint32_t index, uint32_t count, uint32_t zones_per_queue, uint64_t seed);
    // Verify-only runs end by themselves once every zone is swept.
    bool finished() const;

    std::vector<Zone> zones;  // contiguous zones owned by this queue

private:
    struct Slot {
        bool busy = false;
        OpKind kind{};
        uint32_t zone = 0;
        uint64_t off = 0;   // offset in the zone (LBAs)
        uint32_t nlb = 0;
        uint32_t tag = 0;
        uint32_t gen = 0;
        uint32_t received = 0;
        uint64_t t0 = 0;
    };
    int FreeSlot() const;
    bool Issue(uint32_t zi);
    bool IssueBench(uint32_t zi);
    void IssueRw(OpKind kind, uint32_t zi, uint64_t off, uint32_t nlb);
    void IssueReset(uint32_t zi);
    void IssueReport();
    // QueueSink
    void FillData(uint16_t cid, uint32_t off, uint32_t len, uint8_t* dst) override;
    void ReadData(uint16_t cid, uint32_t off, const uint8_t* data, uint32_t len) override;
    void Complete(uint16_t cid, uint16_t status, uint64_t result) override;
    Slot* BusySlot(uint16_t cid, const char* what);
    void OnReadData(Slot& s, uint32_t datao, const uint8_t* data, uint32_t len);
    void CheckReport();
    bool ZoneError(Zone& z, OpKind kind, uint16_t status);
    void Learn(Zone& z, Fault f);
    void FillSlot(const Slot& s, uint32_t byte_off, uint32_t len, uint8_t* dst);
    void Forget(Slot& s);
    void AbortAll();
    uint64_t Rand(uint64_t n) { return n ? rng_() % n : 0; }

    const Workload& w_;
    const Geometry& g_;
    Stats& st_;
    std::mt19937_64 rng_;
    QueuePort* port_ = nullptr;
    std::vector<Slot> slots_;
    uint32_t busy_ = 0;
    uint32_t next_tag_ = 1;
    uint32_t cursor_ = 0;
    bool report_busy_ = false;
    uint64_t last_report_ = 0;
    std::vector<uint8_t> report_;
    std::vector<uint8_t> scratch_;
};

uint64_t NowNs();

}  // namespace qzns::load
