// The NVMe/TCP listener: accepts connections on one address/port for one FabricsTarget and
// runs them on a few epoll event-loop threads (each owns its connections; idle loops sleep).
// The daemon starts one TcpServer per port, e.g. the I/O subsystems on 4420 and the discovery
// subsystem on 8009, each with its own target.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hw/nvme/fabrics-target.h"
#include "nvmf/tcp/connection.h"
#include "nvmf/tcp/stats.h"
#include "util/json.h"
#include "util/status.h"

namespace qzns::nvmf::tcp {

struct TcpServerOptions {
    // Numeric IPv4/IPv6 address or host name ("::1", "[::1]", "0.0.0.0"); empty = 127.0.0.1.
    std::string addr = "127.0.0.1";
    uint16_t port = 4420;  // 0: any free port (see TcpServer::port())
    nvme::FabricsTarget* target = nullptr;  // required; must outlive the server
    unsigned threads = 1;                   // event loops; connections are spread round robin
    int backlog = 128;
    // Stop(): how long to wait for the target to complete outstanding commands.
    std::chrono::milliseconds stop_timeout{10000};
    // After a C2HTermReq: how long to try to flush it before closing anyway.
    std::chrono::milliseconds term_linger{2000};
    // A connection that has not completed ICReq/ICResp in this time is closed: a host sends
    // ICReq right after connecting, and a peer that never does would hold a descriptor forever.
    std::chrono::milliseconds icreq_timeout{10000};
    TcpTransportOptions transport;  // transport.log defaults to stderr
};

class EventLoop;

class TcpServer {
public:
    static Result<std::unique_ptr<TcpServer>> Start(TcpServerOptions opts);
    ~TcpServer();
    TcpServer(const TcpServer&) = delete;
    TcpServer& operator=(const TcpServer&) = delete;

    // Stops accepting, closes every connection (FabricsQueue::Disconnect) and waits up to
    // stop_timeout for outstanding completions; after that, late completions are dropped and
    // connections still holding target buffers are leaked rather than freed under the target.
    // Idempotent; the destructor calls it. Start/Stop/Requests belong to one control thread;
    // Stats may be called from anywhere, also after Stop.
    void Stop();

    uint16_t port() const { return port_; }
    const std::string& address() const { return address_; }  // "127.0.0.1:4420", "[::1]:4420"

    TcpStatsSnapshot Stats() const;
    // {"connections-active": .., "pdus-rx": .., ..., "requests": {"executing": 3, ...}}
    Json StatsJson() const;
    // Every request not free, on every connection (asks each event loop; waits at most 1 s).
    std::vector<TcpRequestInfo> Requests() const;

private:
    TcpServer() = default;

    TcpServerOptions opts_;
    uint16_t port_ = 0;
    std::string address_;
    std::vector<std::unique_ptr<EventLoop>> loops_;
    bool stopped_ = false;
};

}  // namespace qzns::nvmf::tcp
