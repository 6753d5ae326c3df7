// The seam between one queue's load (QueueWorker, queue.h) and the transport that carries its
// commands: capsules and PDUs on an NVMe/TCP connection (bench/nvmf-load/tcp-port.h), or a PCI
// queue pair in memory shared with a vfio-user server (bench/vfio-user-load/pci-port.h). The
// worker decides what to send and checks what comes back; the port moves the bytes.
#pragma once

#include <cstdint>
#include <string>

namespace qzns::load {

enum class DataDir : uint8_t { kNone, kToController, kFromController };

// What a port calls back into, on the worker's thread, from Submit or Poll.
class QueueSink {
public:
    // Host-to-controller data of command `cid`: bytes [off, off + len) into dst, when the
    // transport needs them (at submission, or when the controller asks for them).
    virtual void FillData(uint16_t cid, uint32_t off, uint32_t len, uint8_t* dst) = 0;
    // Controller-to-host data of command `cid`, as it arrives, before its completion.
    virtual void ReadData(uint16_t cid, uint32_t off, const uint8_t* data, uint32_t len) = 0;
    // status is SCT << 8 | SC; result is CQE DW0-DW1.
    virtual void Complete(uint16_t cid, uint16_t status, uint64_t result) = 0;

protected:
    ~QueueSink() = default;
};

// One I/O queue. Single-threaded: the worker's thread calls everything.
class QueuePort {
public:
    virtual ~QueuePort() = default;
    // Queues the command in `sqe` (opcode, CID, NSID and CDW10-15 filled by NewSqe and the
    // caller; the port writes the data pointer), which moves `len` bytes in direction `dir`.
    // It may go out at once or at the next Poll.
    virtual void Submit(uint8_t* sqe, uint32_t len, DataDir dir, QueueSink& sink) = 0;
    // Sends what was submitted, waits up to timeout_ms for the controller and hands whatever
    // arrived to `sink`. False when the queue is lost (error() says why).
    virtual bool Poll(int timeout_ms, QueueSink& sink) = 0;
    virtual const std::string& error() const = 0;
};

}  // namespace qzns::load
