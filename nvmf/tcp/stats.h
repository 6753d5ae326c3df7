// Counters of the NVMe/TCP transport and the lifecycle of one request (SPDK's TCP request
// states), so a stuck command is visible from QMP: every request slot is in exactly one state and
// each state has a gauge.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace qzns::nvmf::tcp {

enum class RequestState : uint8_t {
    kFree,              // slot unused
    kNew,               // capsule header received, in-capsule data still arriving
    kNeedBuffer,        // waiting for the connection's data buffer budget
    kAwaitingR2tData,   // R2T sent, receiving H2CData
    kExecuting,         // submitted to the target, waiting for its completion
    kTransferringC2h,   // C2HData (and maybe CapsuleResp) queued, being sent
    kCompleted,         // CapsuleResp queued, being sent; slot is freed once it is on the wire
};
inline constexpr size_t kRequestStateCount = 7;
const char* RequestStateName(RequestState s);

// Written by one event-loop thread (relaxed atomics), read by anyone.
struct alignas(64) TcpStats {
    std::atomic<uint64_t> connections_accepted{0};
    std::atomic<uint64_t> connections_closed{0};
    std::atomic<uint64_t> pdus_rx{0};
    std::atomic<uint64_t> pdus_tx{0};
    std::atomic<uint64_t> bytes_rx{0};
    std::atomic<uint64_t> bytes_tx{0};
    std::atomic<uint64_t> commands{0};
    std::atomic<uint64_t> r2ts{0};
    std::atomic<uint64_t> c2h_success{0};  // reads completed by C2HData SUCCESS, no CapsuleResp
    std::atomic<uint64_t> term_reqs_sent{0};
    std::atomic<uint64_t> term_reqs_received{0};
    std::atomic<uint64_t> header_digest_errors{0};
    std::atomic<uint64_t> data_digest_errors{0};
    std::atomic<uint64_t> transport_errors{0};  // commands failed by the transport (SGL, digest)
    std::array<std::atomic<int64_t>, kRequestStateCount> requests_in_state{};
    // Bytes held by the connections (TcpConnection::memory_bytes), and the most one
    // connection has held; TcpConnection::MemoryBound is the limit of the latter.
    std::atomic<int64_t> memory_bytes{0};
    std::atomic<uint64_t> connection_memory_peak{0};

    static void Add(std::atomic<uint64_t>& c, uint64_t n = 1) {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
};

// A plain copy summed over event loops.
struct TcpStatsSnapshot {
    uint64_t connections_accepted = 0;
    uint64_t connections_active = 0;
    uint64_t connections_closed = 0;
    uint64_t pdus_rx = 0;
    uint64_t pdus_tx = 0;
    uint64_t bytes_rx = 0;
    uint64_t bytes_tx = 0;
    uint64_t commands = 0;
    uint64_t r2ts = 0;
    uint64_t c2h_success = 0;
    uint64_t term_reqs_sent = 0;
    uint64_t term_reqs_received = 0;
    uint64_t header_digest_errors = 0;
    uint64_t data_digest_errors = 0;
    uint64_t transport_errors = 0;
    std::array<int64_t, kRequestStateCount> requests_in_state{};  // kFree is not counted
    int64_t memory_bytes = 0;             // summed
    uint64_t connection_memory_peak = 0;  // the largest over event loops

    void Accumulate(const TcpStats& s);
};

}  // namespace qzns::nvmf::tcp
