// A QMP server: the QEMU Machine Protocol over a Unix or TCP stream socket. Greeting, capability
// negotiation (`qmp_capabilities`), `{"execute": ..., "arguments": ..., "id": ...}` requests
// answered with `{"return": ...}` or `{"error": {"class", "desc"}}`, and asynchronous events with
// timestamps — enough that socat, qmp-shell or QEMU's Python QMP library can drive qzns.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "util/json.h"
#include "util/mutex.h"
#include "util/status.h"

namespace qzns::qmp {

// A command failure as QMP reports it.
struct QmpError {
    std::string klass = "GenericError";  // GenericError, CommandNotFound, DeviceNotFound
    std::string desc;
};

using CommandResult = std::variant<Json, QmpError>;
using CommandHandler = std::function<CommandResult(const Json& arguments)>;

class QmpServer {
public:
    // `address` is "unix:/path" or "tcp:host:port" (QEMU's --qmp / chardev syntax, simplified).
    static Result<std::unique_ptr<QmpServer>> Start(const std::string& address);
    ~QmpServer();

    void Register(const std::string& name, CommandHandler handler);
    // Sends an event to every client that finished capability negotiation.
    void Emit(const std::string& event, Json data);
    std::vector<std::string> CommandNames() const;
    void Stop();

private:
    QmpServer() = default;
    void Run();
    std::string Dispatch(const Json& req, bool* negotiated);
    void SendTo(int fd, const std::string& s);

    struct Client {
        int fd;
        std::string inbuf;
        bool negotiated = false;
        bool discarding = false;  // after a bad or oversized request: drop input up to a newline
    };
    int listen_fd_ = -1;
    int wake_fd_ = -1;
    std::string unix_path_;
    std::thread thread_;
    mutable util::Mutex mu_;
    std::map<std::string, CommandHandler> commands_ GUARDED_BY(mu_);
    std::vector<Client> clients_ GUARDED_BY(mu_);
    bool stop_ GUARDED_BY(mu_) = false;
};

}  // namespace qzns::qmp
