// An I/O queue on an NVMe/TCP connection: a command goes out as a capsule (its write data in
// the capsule when it fits IOCCSZ, else sent when the controller's R2T asks for it), read data
// arrives in C2HData PDUs, completions in CapsuleResp PDUs or with DATA_SUCCESS.
#pragma once

#include "bench/load/nvme-cmd.h"
#include "bench/load/queue-port.h"
#include "bench/nvmf-load/conn.h"

namespace qzns::load {

class TcpQueuePort final : public QueuePort {
public:
    TcpQueuePort(Conn& c, const Geometry& g) : c_(c), g_(g) {}
    void Submit(uint8_t* sqe, uint32_t len, DataDir dir, QueueSink& sink) override;
    bool Poll(int timeout_ms, QueueSink& sink) override;
    const std::string& error() const override { return c_.error(); }

private:
    void OnPdu(const RxPdu& p, QueueSink& sink);

    Conn& c_;
    const Geometry& g_;
};

}  // namespace qzns::load
