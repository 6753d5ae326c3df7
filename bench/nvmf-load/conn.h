// One NVMe/TCP host connection for the load generator: a non-blocking socket with a send buffer
// and a receive buffer that yields whole PDUs. Unlike the test clients (tests/nvmf), many commands
// are in flight at once, so nothing here waits for a particular reply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nvmf/tcp/pdu.h"

namespace qzns::load {

// A PDU from the controller; pointers are valid until the next Poll().
struct RxPdu {
    uint8_t type = 0;
    uint8_t flags = 0;
    const uint8_t* hdr = nullptr;  // hlen bytes, common header first
    const uint8_t* data = nullptr;
    uint32_t data_len = 0;
};

class Conn {
public:
    Conn() = default;
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;
    ~Conn() { Close(); }

    // TCP connect, ICReq/ICResp (no digests), then non-blocking mode.
    bool Open(const std::string& addr, uint16_t port, std::string* err);
    void Close();
    bool open() const { return fd_ >= 0; }
    uint32_t max_h2c_data() const { return max_h2c_data_; }

    // Appends a command capsule; `icd` bytes of in-capsule data are written by the caller into
    // the returned pointer (nullptr when icd == 0).
    uint8_t* PutCapsule(const uint8_t sqe[64], uint32_t icd);
    // Appends one H2CData PDU; the caller writes `len` data bytes into the returned pointer.
    uint8_t* PutH2CData(uint16_t cccid, uint16_t ttag, uint32_t datao, uint32_t len, bool last);

    // Sends what it can, waits up to timeout_ms for input, and calls on_pdu(const RxPdu&) for
    // every complete PDU. False when the connection failed (closed, reset, bad framing).
    template <typename F>
    bool Poll(int timeout_ms, F&& on_pdu) {
        if (!Io(timeout_ms)) return false;
        size_t pos = 0;
        RxPdu p;
        while (NextPdu(&pos, &p)) on_pdu(p);
        if (bad_) return false;
        Consume(pos);
        return true;
    }
    const std::string& error() const { return err_; }

private:
    bool Io(int timeout_ms);
    bool NextPdu(size_t* pos, RxPdu* p);
    void Consume(size_t n);
    uint8_t* Grow(size_t n);
    uint32_t DataOffset(uint32_t hlen) const;

    int fd_ = -1;
    uint32_t max_h2c_data_ = 0;
    uint32_t cpda_ = 0;
    std::vector<uint8_t> tx_;
    size_t tx_head_ = 0, tx_len_ = 0;
    std::vector<uint8_t> rx_;
    size_t rx_len_ = 0;
    bool bad_ = false;
    std::string err_;
};

}  // namespace qzns::load
