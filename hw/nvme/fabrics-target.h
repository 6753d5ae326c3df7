// The seam between a fabrics transport (NVMe/TCP) and the transport-independent NVMe target
// (subsystems, controllers, namespaces). The transport owns sockets, PDUs, data movement and
// digests; the target owns every NVMe command, including Fabrics Connect / Property Get/Set,
// controller lifetime and keep-alive. SPDK's transport ops table is the model.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "util/inline-function.h"

namespace qzns::nvme {

// 64-byte submission queue entry and 16-byte completion queue entry, as on the wire
// (little-endian). hw/nvme/spec.h gives typed views of these bytes.
struct SqeBytes {
    uint8_t b[64];
};
struct CqeBytes {
    uint8_t b[16];
};
static_assert(sizeof(SqeBytes) == 64 && sizeof(CqeBytes) == 16);

// Called exactly once per command, possibly from another thread. For controller-to-host
// commands `c2h_len` is how many bytes of the data buffer are valid to send (may be less than
// the buffer); it is 0 otherwise. It never allocates: a transport captures a pointer to its
// own per-command state (and a generation number), not objects.
using CompletionFn = util::InlineFunction<void(const CqeBytes& cqe, uint32_t c2h_len), 32>;

// A completion that stamps the SQ Head Pointer (CQE bytes 8-9) that fabrics queues report in
// every response, for commands the fabrics layer answers itself. A separate object, not a
// wrapping CompletionFn, because a CompletionFn cannot hold another one.
struct SqhdCompletion {
    CompletionFn done;
    uint16_t head = 0;
    void operator()(const CqeBytes& cqe, uint32_t c2h_len) const {
        CqeBytes c = cqe;
        c.b[8] = static_cast<uint8_t>(head);
        c.b[9] = static_cast<uint8_t>(head >> 8);
        done(c, c2h_len);
    }
};

// The SQ head after one more command of a queue of sqsize + 1 entries (0's based sqsize):
// one step per command, wrapping at the queue size. `counter` counts the queue's commands.
inline uint16_t NextSqhd(std::atomic<uint32_t>& counter, uint16_t sqsize) {
    uint32_t size = sqsize + 1u;
    uint16_t head = static_cast<uint16_t>(counter.fetch_add(1) % size + 1);
    return head == size ? 0 : head;
}

// One queue (one NVMe/TCP connection). The first command must be a Fabrics Connect, which
// binds the queue to a subsystem and controller (admin queue: a new controller; I/O queue: the
// controller named by CNTLID in the Connect data).
class FabricsQueue {
public:
    virtual ~FabricsQueue() = default;
    // Submits one command. Host-to-controller data (in-capsule, or gathered by the transport
    // after R2T) is in `data`; for controller-to-host commands `data` is a zeroed buffer of the
    // length the command's SGL describes and the target fills it. The buffer stays valid until
    // `done` has been called. `data` is empty for commands without data.
    virtual void Submit(const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done) = 0;
    // The transport lost or closed the connection: outstanding commands still complete (their
    // completions may be dropped), the queue is detached from its controller.
    virtual void Disconnect() = 0;
    // The target wants this connection closed (controller torn down by keep-alive timeout,
    // subsystem removed, controller reset/shutdown for I/O queues). Set once by the transport.
    virtual void SetCloseRequest(std::function<void()> close) = 0;
};

class FabricsTarget {
public:
    virtual ~FabricsTarget() = default;
    // A transport accepted a connection from `peer` (e.g. "192.0.2.1:51234") on a port whose
    // configured subsystems the target knows.
    virtual std::unique_ptr<FabricsQueue> NewQueue(const std::string& peer) = 0;
};

}  // namespace qzns::nvme
