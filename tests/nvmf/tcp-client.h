// A raw-socket NVMe/TCP host for tests: builds every PDU byte by byte (independently of the
// transport's own structs), checks the controller's digests and framing on receive, and can
// send arbitrary malformed bytes.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "util/crc32c.h"

namespace qzns::nvmf::testing {

inline void Put16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}
inline void Put32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void Put64(uint8_t* p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t Get32(const uint8_t* p) {
    return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

enum class Sgl { kNone, kInCapsule, kTransport };

// A 64-byte SQE the way the Linux host builds it (PSDT = SGL, facts §A2).
inline std::vector<uint8_t> MakeSqe(uint8_t opcode, uint16_t cid, Sgl sgl, uint32_t len,
                                    uint8_t cdw10 = 0, uint8_t cdw11 = 0, uint8_t fctype = 0) {
    std::vector<uint8_t> s(64, 0);
    s[0] = opcode;
    s[1] = 0x40;
    Put16(&s[2], cid);
    if (opcode == 0x7f) s[4] = fctype;
    if (sgl == Sgl::kInCapsule) {
        Put64(&s[24], 0);
        Put32(&s[32], len);
        s[39] = 0x01;
    } else {
        Put32(&s[32], sgl == Sgl::kNone ? 0 : len);
        s[39] = 0x5a;
    }
    s[40] = cdw10;
    s[44] = cdw11;
    return s;
}

struct RxPdu {
    std::vector<uint8_t> hdr;   // hlen bytes
    std::vector<uint8_t> data;  // payload (without padding and digest)
    uint8_t type() const { return hdr[0]; }
    uint8_t flags() const { return hdr[1]; }
    uint32_t plen() const { return Get32(&hdr[4]); }
};

class TestClient {
public:
    ~TestClient() {
        if (fd_ >= 0) close(fd_);
    }

    bool Connect(uint16_t port, const std::string& host = "127.0.0.1") {
        bool v6 = host.find(':') != std::string::npos;
        fd_ = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) return false;
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (v6) {
            sockaddr_in6 a{};
            a.sin6_family = AF_INET6;
            a.sin6_port = htons(port);
            inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
            return connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
        }
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        inet_pton(AF_INET, host.c_str(), &a.sin_addr);
        return connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    }

    bool Send(const std::vector<uint8_t>& b) { return Send(b.data(), b.size()); }
    bool Send(const void* p, size_t n) {
        const uint8_t* c = static_cast<const uint8_t*>(p);
        if (byte_by_byte) {
            for (size_t i = 0; i < n; i++)
                if (send(fd_, c + i, 1, MSG_NOSIGNAL) != 1) return false;
            return true;
        }
        while (n > 0) {
            ssize_t w = send(fd_, c, n, MSG_NOSIGNAL);
            if (w <= 0) return false;
            c += w;
            n -= static_cast<size_t>(w);
        }
        return true;
    }

    // Reads exactly n bytes; false on EOF/error/timeout.
    bool Recv(void* p, size_t n, int timeout_ms = 5000) {
        uint8_t* c = static_cast<uint8_t*>(p);
        while (n > 0) {
            pollfd pfd{fd_, POLLIN, 0};
            if (poll(&pfd, 1, timeout_ms) <= 0) return false;
            ssize_t r = recv(fd_, c, n, 0);
            if (r <= 0) return false;
            c += r;
            n -= static_cast<size_t>(r);
        }
        return true;
    }

    // True when the peer closes (EOF or reset) within the timeout, with no more data.
    bool WaitClosed(int timeout_ms = 5000) {
        uint8_t b;
        pollfd pfd{fd_, POLLIN, 0};
        if (poll(&pfd, 1, timeout_ms) <= 0) return false;
        ssize_t r = recv(fd_, &b, 1, 0);
        return r == 0 || (r < 0 && errno == ECONNRESET);
    }

    // --- PDU builders ---
    static std::vector<uint8_t> IcReqBytes(bool hd, bool dd, uint8_t hpda = 0) {
        std::vector<uint8_t> p(128, 0);
        p[0] = 0x00;
        p[2] = 128;
        Put32(&p[4], 128);
        p[10] = hpda;
        p[11] = static_cast<uint8_t>((hd ? 1 : 0) | (dd ? 2 : 0));
        return p;
    }

    // Exchanges ICReq/ICResp; returns the ICResp or nullopt.
    std::optional<RxPdu> Handshake(bool hd, bool dd, uint8_t hpda = 0) {
        if (!Send(IcReqBytes(hd, dd, hpda))) return std::nullopt;
        std::vector<uint8_t> r(128);
        if (!Recv(r.data(), r.size())) return std::nullopt;
        hd_ = hd;
        dd_ = dd;
        RxPdu p;
        p.hdr = r;
        return p;
    }

    // A host PDU with optional payload, digests as negotiated.
    std::vector<uint8_t> Build(uint8_t type, uint8_t flags, std::vector<uint8_t> hdr,
                               const std::vector<uint8_t>& data) const {
        const uint32_t hlen = static_cast<uint32_t>(hdr.size());
        const uint32_t header = hlen + (hd_ ? 4 : 0);
        const bool ddg = dd_ && !data.empty();
        hdr[0] = type;
        hdr[1] = static_cast<uint8_t>(flags | (hd_ ? 1 : 0) | (ddg ? 2 : 0));
        hdr[2] = static_cast<uint8_t>(hlen);
        hdr[3] = static_cast<uint8_t>(data.empty() ? 0 : header);
        Put32(&hdr[4], header + static_cast<uint32_t>(data.size()) + (ddg ? 4 : 0));
        std::vector<uint8_t> out = hdr;
        if (hd_) {
            uint8_t d[4];
            Put32(d, Crc32c(hdr.data(), hlen));
            out.insert(out.end(), d, d + 4);
        }
        out.insert(out.end(), data.begin(), data.end());
        if (ddg) {
            uint8_t d[4];
            Put32(d, Crc32c(data.data(), data.size()));
            out.insert(out.end(), d, d + 4);
        }
        return out;
    }

    std::vector<uint8_t> CapsuleBytes(const std::vector<uint8_t>& sqe,
                                      const std::vector<uint8_t>& icd = {}) const {
        std::vector<uint8_t> h(8);
        h.insert(h.end(), sqe.begin(), sqe.end());
        return Build(0x04, 0, h, icd);
    }
    bool SendCapsule(const std::vector<uint8_t>& sqe, const std::vector<uint8_t>& icd = {}) {
        return Send(CapsuleBytes(sqe, icd));
    }

    std::vector<uint8_t> H2CDataBytes(uint16_t cccid, uint16_t ttag, uint32_t datao,
                                      const std::vector<uint8_t>& data, bool last) const {
        std::vector<uint8_t> h(24, 0);
        Put16(&h[8], cccid);
        Put16(&h[10], ttag);
        Put32(&h[12], datao);
        Put32(&h[16], static_cast<uint32_t>(data.size()));
        return Build(0x06, last ? 0x04 : 0, h, data);
    }

    // Receives one controller PDU, checking framing and digests (failures go to *error).
    std::optional<RxPdu> RecvPdu(std::string* error = nullptr, int timeout_ms = 5000) {
        auto fail = [&](const std::string& e) -> std::optional<RxPdu> {
            if (error) *error = e;
            return std::nullopt;
        };
        uint8_t ch[8];
        if (!Recv(ch, 8, timeout_ms)) return fail("no PDU (closed or timeout)");
        RxPdu p;
        const uint8_t type = ch[0], flags = ch[1], hlen = ch[2], pdo = ch[3];
        const uint32_t plen = Get32(ch + 4);
        if (plen > 16 * 1024 * 1024 || hlen < 8 || plen < hlen) return fail("bad framing");
        p.hdr.assign(ch, ch + 8);
        p.hdr.resize(hlen);
        if (!Recv(p.hdr.data() + 8, hlen - 8u)) return fail("short header");
        const bool is_term = type == 0x03;
        const bool hdg = (flags & 1) != 0;
        if (!is_term && hdg != hd_) return fail("HDGSTF mismatch");
        uint32_t consumed = hlen;
        if (hdg) {
            uint8_t d[4];
            if (!Recv(d, 4)) return fail("short header digest");
            if (Get32(d) != Crc32c(p.hdr.data(), hlen)) return fail("bad header digest");
            consumed += 4;
        }
        if (is_term) {
            p.data.resize(plen - hlen);
            if (!Recv(p.data.data(), p.data.size())) return fail("short term req");
            return p;
        }
        if (plen == consumed) return p;
        const bool ddg = (flags & 2) != 0;
        if (ddg != dd_) return fail("DDGSTF mismatch");
        if (pdo < consumed) return fail("pdo inside header");
        std::vector<uint8_t> pad(pdo - consumed);
        if (!pad.empty() && !Recv(pad.data(), pad.size())) return fail("short pad");
        const uint32_t dlen = plen - pdo - (ddg ? 4 : 0);
        p.data.resize(dlen);
        if (!Recv(p.data.data(), dlen)) return fail("short data");
        if (ddg) {
            uint8_t d[4];
            if (!Recv(d, 4)) return fail("short data digest");
            if (Get32(d) != Crc32c(p.data.data(), dlen)) return fail("bad data digest");
        }
        return p;
    }

    int fd() const { return fd_; }
    bool hd() const { return hd_; }
    bool dd() const { return dd_; }
    void SetDigests(bool hd, bool dd) {
        hd_ = hd;
        dd_ = dd;
    }
    bool byte_by_byte = false;

private:
    int fd_ = -1;
    bool hd_ = false;
    bool dd_ = false;
};

}  // namespace qzns::nvmf::testing
