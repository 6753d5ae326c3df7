#include "bench/nvmf-load/tcp-port.h"

#include <algorithm>

#include "bench/nvmf-load/session.h"

namespace qzns::load {

namespace tcp = nvmf::tcp;

void TcpQueuePort::Submit(uint8_t* sqe, uint32_t len, DataDir dir, QueueSink& sink) {
    const bool in_capsule = dir == DataDir::kToController && len <= g_.icd;
    const uint16_t cid = static_cast<uint16_t>(GetLe(sqe + 2, 2));
    SetSgl(sqe, len, in_capsule);
    uint8_t* d = c_.PutCapsule(sqe, in_capsule ? len : 0);
    if (d) sink.FillData(cid, 0, len, d);
}

bool TcpQueuePort::Poll(int timeout_ms, QueueSink& sink) {
    return c_.Poll(timeout_ms, [&](const RxPdu& p) { OnPdu(p, sink); });
}

void TcpQueuePort::OnPdu(const RxPdu& p, QueueSink& sink) {
    const uint16_t cid = static_cast<uint16_t>(GetLe(p.hdr + 8, 2));
    if (p.type == static_cast<uint8_t>(tcp::PduType::kCapsuleResp)) {
        const uint8_t* cqe = p.hdr + 8;
        sink.Complete(static_cast<uint16_t>(GetLe(cqe + 12, 2)), StatusOf(cqe), GetLe(cqe, 8));
    } else if (p.type == static_cast<uint8_t>(tcp::PduType::kR2T)) {
        const uint16_t ttag = static_cast<uint16_t>(GetLe(p.hdr + 10, 2));
        const uint32_t r2to = static_cast<uint32_t>(GetLe(p.hdr + 12, 4)), r2tl = static_cast<uint32_t>(GetLe(p.hdr + 16, 4));
        const uint32_t chunk = c_.max_h2c_data() ? c_.max_h2c_data() : r2tl;
        for (uint32_t o = 0; o < r2tl; o += chunk) {
            const uint32_t n = std::min(chunk, r2tl - o);
            uint8_t* d = c_.PutH2CData(cid, ttag, r2to + o, n, o + n == r2tl);
            sink.FillData(cid, r2to + o, n, d);
        }
    } else if (p.type == static_cast<uint8_t>(tcp::PduType::kC2HData)) {
        sink.ReadData(cid, static_cast<uint32_t>(GetLe(p.hdr + 12, 4)), p.data, p.data_len);
        if (p.flags & tcp::kFlagDataSuccess) sink.Complete(cid, 0, 0);
    }
}

}  // namespace qzns::load
