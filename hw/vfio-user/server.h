// A vfio-user server for one device: listens on a Unix socket, serves one client at a time,
// negotiates the protocol version, keeps the client's DMA mappings and interrupt eventfds, and
// turns region accesses into calls on a VfioUserDevice. Every message is validated; a broken
// client gets an error reply (its errno) or, when the stream can no longer be trusted, a
// closed connection. The server then waits for the next client.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hw/vfio-user/device.h"
#include "hw/vfio-user/dma.h"
#include "hw/vfio-user/message.h"
#include "util/mutex.h"
#include "util/status.h"

namespace qzns::vfu {

struct ServerOptions {
    // Advertised in the VERSION reply ("capabilities"). QEMU sends SET_IRQS eventfds in chunks
    // of max_msg_fds and never more than 16.
    uint32_t max_msg_fds = kMaxMsgFdsLimit;
    uint32_t max_data_xfer_size = 1u << 20;
    uint32_t max_dma_maps = 65535;
    uint64_t pgsizes = 4096;
    bool write_multiple = true;
    // How long a server-to-client request (DMA_READ/WRITE) waits for its reply.
    int request_timeout_ms = 5000;
    // One line per message received or sent, for debugging and the integration log.
    std::function<void(const std::string&)> trace;
    // Called on the serving thread when a client has negotiated VERSION (true) and after that
    // client is gone and the device has been reset (false); `why` says why the connection
    // ended ("" for a clean close). Connections that never negotiate (probes) are not reported.
    std::function<void(bool connected, const std::string& why)> on_client;
    // Called when a client was closed because another one is being served.
    std::function<void()> on_refused;
};

// Per-command counters, readable while serving.
struct ServerStats {
    std::atomic<uint64_t> commands[19] = {};
    std::atomic<uint64_t> error_replies{0};
    std::atomic<uint64_t> dropped_errors{0};   // errors on NO_REPLY commands
    std::atomic<uint64_t> protocol_closes{0};  // connections closed for protocol violations
    std::atomic<uint64_t> irqs_raised{0};
    std::atomic<uint64_t> irqs_dropped{0};
    std::atomic<uint64_t> clients_refused{0};  // connected while another client was served
};

class VfioUserServer final : private IrqSink, private DmaMessageIo {
public:
    VfioUserServer(VfioUserDevice* device, ServerOptions options);
    ~VfioUserServer() override;
    VfioUserServer(const VfioUserServer&) = delete;
    VfioUserServer& operator=(const VfioUserServer&) = delete;

    // Binds and listens on `path`. A stale socket file there is removed; a socket some other
    // server still accepts on is not (EADDRINUSE).
    [[nodiscard]] Status Listen(const std::string& path);
    // Accepts and serves clients one at a time until Stop(). Needs Listen() first. A client
    // that connects while another is served is closed at once (QEMU reports the failure)
    // rather than left waiting in the backlog.
    [[nodiscard]] Status Run();
    // Serves one already connected client (e.g. one end of a socketpair) until it disconnects
    // or Stop() is called. A disconnect is not an error; a protocol violation returns it.
    [[nodiscard]] Status ServeConnection(UniqueFd conn);
    // Thread-safe; makes Run() / ServeConnection() return soon.
    void Stop();

    // Handles one client command (no socket I/O; used by ServeConnection and by the fuzzer).
    // Returns the reply to send, nothing for NO_REPLY commands, or an error when the
    // connection must be closed. `msg` may be modified (its fds taken).
    [[nodiscard]] Result<std::optional<OutMessage>> HandleMessage(Message& msg);
    // Forgets the client: resets the device, drops mappings and eventfds.
    void DropClient();

    // Safe from any thread (tests and monitors ask while the connection thread runs).
    bool negotiated() const { return negotiated_.load(); }
    // A client has negotiated VERSION and is still connected.
    bool client_connected() const { return client_connected_.load(); }
    const ServerStats& stats() const { return stats_; }
    DmaSpace* dma() { return &dma_; }
    IrqSink* irq_sink() { return this; }

private:
    // IrqSink
    bool Trigger(uint32_t vector) override;
    uint32_t MsixVectorsEnabled() const override;
    // DmaMessageIo
    Status DmaReadMsg(uint64_t addr, void* buf, uint32_t len) override;
    Status DmaWriteMsg(uint64_t addr, const void* buf, uint32_t len) override;
    uint32_t max_xfer() const override;

    using Reply = Result<std::optional<OutMessage>>;
    Reply HandleVersion(Message& m);
    Reply HandleDmaMap(Message& m);
    Reply HandleDmaUnmap(Message& m);
    Reply HandleGetInfo(Message& m);
    Reply HandleGetRegionInfo(Message& m);
    Reply HandleGetIrqInfo(Message& m);
    Reply HandleSetIrqs(Message& m);
    Reply HandleRegionRead(Message& m);
    Reply HandleRegionWrite(Message& m);
    Reply HandleWriteMulti(Message& m);
    Reply HandleReset(Message& m);
    [[nodiscard]] Status CheckAccess(uint32_t region, uint64_t offset, uint64_t count,
                                     bool write) const;

    // Sends a server-to-client command and waits for its reply.
    [[nodiscard]] Result<Message> Transact(OutMessage& req);
    [[nodiscard]] Status Send(OutMessage& msg);
    void Trace(const char* dir, const MsgHeader& h, const std::string& extra = "");
    void ResetIrqs();

    VfioUserDevice* const device_;
    const ServerOptions opts_;
    ServerStats stats_;
    DmaMapTable dma_;
    std::atomic<bool> negotiated_{false};
    uint32_t peer_max_xfer_ = 1u << 20;
    uint32_t peer_max_fds_ = 8;

    mutable util::Mutex irq_mu_;
    std::vector<std::vector<UniqueFd>> irq_fds_ GUARDED_BY(irq_mu_);  // [index][vector]

    UniqueFd listen_fd_;
    std::string listen_path_;
    UniqueFd stop_fd_;  // eventfd
    std::atomic<bool> stop_{false};
    std::atomic<bool> client_connected_{false};

    // The current connection.
    util::Mutex conn_mu_;
    int conn_fd_ GUARDED_BY(conn_mu_) = -1;
    std::thread::id serve_thread_ GUARDED_BY(conn_mu_);
    util::Mutex send_mu_;  // guards no data: keeps each message whole on the socket
    // Commands that arrived while the serve thread waited (serve thread only).
    std::deque<Message> deferred_;
    // Guarded by wait_mu_ too (GUARDED_BY in a nested struct cannot name the server's mutex).
    struct Waiter {
        std::optional<Message> reply;
        bool failed = false;
    };
    util::Mutex wait_mu_;  // wait_cv_ signals a reply or a closed connection
    util::CondVar wait_cv_;
    std::map<uint16_t, Waiter*> waiters_ GUARDED_BY(wait_mu_);
    uint16_t next_msg_id_ GUARDED_BY(wait_mu_) = 0x8000;
};

}  // namespace qzns::vfu
