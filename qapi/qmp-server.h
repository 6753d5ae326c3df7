// A QMP server: the QEMU Machine Protocol over a Unix or TCP stream socket. Greeting, capability
// negotiation (`qmp_capabilities`), `{"execute": ..., "arguments": ..., "id": ...}` requests
// answered with `{"return": ...}` or `{"error": {"class", "desc"}}`, and asynchronous events with
// timestamps — enough that socat, qmp-shell or QEMU's Python QMP library can drive qzns.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "qapi/qmp-session.h"
#include "util/json.h"
#include "util/mutex.h"
#include "util/status.h"

namespace qzns::qmp {

class QmpServer {
public:
    // `address` is "unix:/path" or "tcp:host:port" (QEMU's --qmp / chardev syntax, simplified).
    static Result<std::unique_ptr<QmpServer>> Start(const std::string& address);
    ~QmpServer();

    QmpDispatcher& dispatcher() { return dispatcher_; }
    // Sends an event to every client that finished capability negotiation.
    void Emit(const std::string& event, Json data);
    void Stop();

private:
    QmpServer() = default;
    void Run();
    void SendTo(int fd, const std::string& s);

    struct Client {
        int fd;
        bool negotiated;  // the session's, copied under mu_ for Emit on other threads
        // Only the loop thread uses it (without mu_: commands may take long) and erases clients.
        std::unique_ptr<QmpSession> session;
    };
    int listen_fd_ = -1;
    int wake_fd_ = -1;
    std::string unix_path_;
    std::thread thread_;
    QmpDispatcher dispatcher_;
    mutable util::Mutex mu_;
    std::vector<Client> clients_ GUARDED_BY(mu_);
    bool stop_ GUARDED_BY(mu_) = false;
};

}  // namespace qzns::qmp
