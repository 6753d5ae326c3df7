#include "bench/nvmf-load/conn.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qzns::load {

using nvmf::tcp::PduCommonHeader;
namespace tcp = nvmf::tcp;

namespace {

bool WriteAll(int fd, const void* p, size_t n) {
    const uint8_t* c = static_cast<const uint8_t*>(p);
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

bool ReadAll(int fd, void* p, size_t n) {
    uint8_t* c = static_cast<uint8_t*>(p);
    while (n > 0) {
        pollfd pfd{fd, POLLIN, 0};
        if (poll(&pfd, 1, 10000) <= 0) return false;
        ssize_t r = recv(fd, c, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        c += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

}  // namespace

bool Conn::Open(const std::string& addr, uint16_t port, std::string* err) {
    Close();
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    const std::string service = std::to_string(port);
    if (getaddrinfo(addr.c_str(), service.c_str(), &hints, &res) != 0 || !res) {
        *err = "cannot resolve " + addr;
        return false;
    }
    fd_ = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd_ >= 0 && connect(fd_, res->ai_addr, res->ai_addrlen) == 0;
    freeaddrinfo(res);
    if (!ok) {
        *err = std::string("connect: ") + strerror(errno);
        Close();
        return false;
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    tcp::IcReqPdu req{};
    req.ch.type = static_cast<uint8_t>(tcp::PduType::kIcReq);
    req.ch.hlen = tcp::kIcPduLen;
    req.ch.plen = le32(tcp::kIcPduLen);
    req.maxr2t = le32(0);  // one outstanding R2T per command, what the target supports at least
    tcp::IcRespPdu resp{};
    if (!WriteAll(fd_, &req, sizeof(req)) || !ReadAll(fd_, &resp, sizeof(resp)) ||
        resp.ch.type != static_cast<uint8_t>(tcp::PduType::kIcResp)) {
        *err = "ICReq/ICResp exchange failed";
        Close();
        return false;
    }
    max_h2c_data_ = resp.maxh2cdata.get();
    cpda_ = resp.cpda;
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
    tx_head_ = tx_len_ = rx_len_ = 0;
    bad_ = false;
    err_.clear();
    return true;
}

void Conn::Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
}

uint8_t* Conn::Grow(size_t n) {
    if (tx_head_ == tx_len_) tx_head_ = tx_len_ = 0;
    if (tx_len_ + n > tx_.size()) tx_.resize(tx_len_ + n + (tx_.size() / 2));
    uint8_t* p = tx_.data() + tx_len_;
    tx_len_ += n;
    return p;
}

// The host places data where the controller's CPDA alignment says (0's based dwords).
uint32_t Conn::DataOffset(uint32_t hlen) const {
    const uint32_t align = (cpda_ + 1) * 4;
    return (hlen + align - 1) / align * align;
}

uint8_t* Conn::PutCapsule(const uint8_t sqe[64], uint32_t icd) {
    const uint32_t hlen = tcp::kCapsuleCmdHlen;
    const uint32_t pdo = icd ? DataOffset(hlen) : 0;
    const uint32_t plen = icd ? pdo + icd : hlen;
    uint8_t* p = Grow(plen);
    std::memset(p, 0, icd ? pdo : hlen);
    auto* ch = reinterpret_cast<PduCommonHeader*>(p);
    ch->type = static_cast<uint8_t>(tcp::PduType::kCapsuleCmd);
    ch->hlen = static_cast<uint8_t>(hlen);
    ch->pdo = static_cast<uint8_t>(pdo);
    ch->plen = le32(plen);
    std::memcpy(p + 8, sqe, 64);
    return icd ? p + pdo : nullptr;
}

uint8_t* Conn::PutH2CData(uint16_t cccid, uint16_t ttag, uint32_t datao, uint32_t len, bool last) {
    const uint32_t pdo = DataOffset(tcp::kDataHlen);
    uint8_t* p = Grow(pdo + len);
    std::memset(p, 0, pdo);
    auto* d = reinterpret_cast<tcp::DataPdu*>(p);
    d->ch.type = static_cast<uint8_t>(tcp::PduType::kH2CData);
    d->ch.flags = last ? tcp::kFlagDataLast : 0;
    d->ch.hlen = tcp::kDataHlen;
    d->ch.pdo = static_cast<uint8_t>(pdo);
    d->ch.plen = le32(pdo + len);
    d->cccid = le16(cccid);
    d->ttag = le16(ttag);
    d->datao = le32(datao);
    d->datal = le32(len);
    return p + pdo;
}

bool Conn::Io(int timeout_ms) {
    if (fd_ < 0) return false;
    pollfd pfd{fd_, static_cast<short>(POLLIN | (tx_len_ > tx_head_ ? POLLOUT : 0)), 0};
    // Send first without waiting: most of the time the socket has room.
    int n = tx_len_ > tx_head_ ? 1 : poll(&pfd, 1, timeout_ms);
    if (n < 0 && errno != EINTR) return false;
    while (tx_len_ > tx_head_) {
        ssize_t w = send(fd_, tx_.data() + tx_head_, tx_len_ - tx_head_, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) {
            err_ = std::string("send: ") + strerror(errno);
            return false;
        }
        tx_head_ += static_cast<size_t>(w);
    }
    if (tx_len_ > tx_head_) {
        pfd.events = POLLIN | POLLOUT;
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) return false;
    }
    for (;;) {
        if (rx_.size() - rx_len_ < 65536) rx_.resize(rx_len_ + 262144);
        ssize_t r = recv(fd_, rx_.data() + rx_len_, rx_.size() - rx_len_, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r == 0) {
            err_ = "connection closed by the controller";
            return false;
        }
        if (r < 0) {
            err_ = std::string("recv: ") + strerror(errno);
            return false;
        }
        rx_len_ += static_cast<size_t>(r);
        if (static_cast<size_t>(r) < 65536) break;
    }
    return true;
}

bool Conn::NextPdu(size_t* pos, RxPdu* p) {
    if (bad_ || rx_len_ - *pos < 8) return false;
    const uint8_t* b = rx_.data() + *pos;
    const auto* ch = reinterpret_cast<const PduCommonHeader*>(b);
    const uint32_t plen = ch->plen.get();
    if (ch->hlen < 8 || plen < ch->hlen || plen > (64u << 20) ||
        (ch->flags & (tcp::kFlagHdgst | tcp::kFlagDdgst))) {
        err_ = "bad PDU framing from the controller";
        bad_ = true;
        return false;
    }
    if (rx_len_ - *pos < plen) return false;
    p->type = ch->type;
    p->flags = ch->flags;
    p->hdr = b;
    const uint32_t pdo = ch->pdo ? ch->pdo : ch->hlen;
    p->data = b + pdo;
    p->data_len = plen > pdo ? plen - pdo : 0;
    if (ch->type == static_cast<uint8_t>(tcp::PduType::kC2HTermReq)) {
        err_ = "C2HTermReq from the controller";
        bad_ = true;
        return false;
    }
    *pos += plen;
    return true;
}

void Conn::Consume(size_t n) {
    if (n == 0) return;
    std::memmove(rx_.data(), rx_.data() + n, rx_len_ - n);
    rx_len_ -= n;
}

}  // namespace qzns::load
