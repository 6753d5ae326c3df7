// Counters shared by every queue thread of the load generator: operations by kind, bytes,
// statuses (expected by the spec vs unexpected), verification results and a latency histogram
// with ~3% resolution that the reporter reads every second.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace qzns::load {

enum class OpKind : uint8_t { kWrite, kAppend, kRead, kReset, kReport, kCount };
inline constexpr const char* kOpNames[] = {"write", "append", "read", "reset", "report"};
inline constexpr int kOpKinds = static_cast<int>(OpKind::kCount);

// Log-linear buckets over nanoseconds: 32 sub-buckets per power of two.
class LatencyHistogram {
public:
    static constexpr int kSub = 32;
    static constexpr int kBuckets = 64 * kSub;
    static int Bucket(uint64_t ns) {
        if (ns < kSub) return static_cast<int>(ns);
        const int msb = 63 - __builtin_clzll(ns);
        const int shift = msb - 5;  // log2(kSub)
        return (shift + 1) * kSub + static_cast<int>((ns >> shift) & (kSub - 1));
    }
    static uint64_t BucketLow(int b) {
        if (b < kSub) return static_cast<uint64_t>(b);
        const int shift = b / kSub - 1;
        return (uint64_t{kSub} + static_cast<uint64_t>(b % kSub)) << shift;
    }
    void Add(uint64_t ns) { n_[Bucket(ns)].fetch_add(1, std::memory_order_relaxed); }
    using Snapshot = std::array<uint64_t, kBuckets>;
    void Read(Snapshot* s) const {
        for (int i = 0; i < kBuckets; i++) (*s)[i] = n_[i].load(std::memory_order_relaxed);
    }
    // Percentile p (0-100) of the difference now - before, in ns; 0 when empty.
    static uint64_t Percentile(const Snapshot& now, const Snapshot& before, double p) {
        uint64_t total = 0;
        for (int i = 0; i < kBuckets; i++) total += now[i] - before[i];
        if (total == 0) return 0;
        const uint64_t rank = static_cast<uint64_t>(p / 100.0 * static_cast<double>(total - 1)) + 1;
        uint64_t seen = 0;
        for (int i = 0; i < kBuckets; i++) {
            seen += now[i] - before[i];
            if (seen >= rank) return BucketLow(i);
        }
        return BucketLow(kBuckets - 1);
    }

private:
    std::array<std::atomic<uint64_t>, kBuckets> n_{};
};

struct Stats {
    std::array<std::atomic<uint64_t>, kOpKinds> ops{};
    std::atomic<uint64_t> bytes_written{0}, bytes_read{0};
    std::atomic<uint64_t> bytes_verified{0};     // read back and equal to the model
    std::atomic<uint64_t> verify_failures{0};    // blocks that differ from the model
    std::atomic<uint64_t> lost_bytes{0};         // acknowledged bytes that did not read back
    std::atomic<uint64_t> report_checks{0};      // quiet zones compared with Report Zones
    std::atomic<uint64_t> report_mismatches{0};
    std::atomic<uint64_t> append_lba_errors{0};  // assigned LBA outside the zone or reused
    std::atomic<uint64_t> faults_learned{0};     // zones the model learned are Read Only/Offline
    std::atomic<uint64_t> conn_drops{0}, reconnects{0}, connect_failures{0};
    std::atomic<uint64_t> aborted{0};            // commands in flight when a connection dropped
    std::array<std::atomic<uint64_t>, 0x800> expected_status{};    // by SCT<<8|SC
    std::array<std::atomic<uint64_t>, 0x800> unexpected_status{};
    LatencyHistogram lat;
};

}  // namespace qzns::load
