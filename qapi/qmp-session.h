// The protocol half of a QMP server, with no socket: the command table and its dispatch
// (QmpDispatcher), and one client's byte stream turned into replies (QmpSession). QmpServer
// moves bytes between sockets and sessions; tests and the fuzzer feed sessions directly.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
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

// A client may not make the daemon buffer more than this for one request.
inline constexpr size_t kMaxRequestBytes = 1 << 20;

// Thread-safe: handlers may be registered while clients are served.
class QmpDispatcher {
public:
    // Replaces a handler of the same name.
    void Register(const std::string& name, CommandHandler handler);
    std::vector<std::string> CommandNames() const;
    // One request to its reply line (without the line end). `negotiated` is the client's
    // capability negotiation state; qmp_capabilities sets it.
    std::string Dispatch(const Json& req, bool* negotiated) const;

private:
    mutable util::Mutex mu_;
    std::map<std::string, CommandHandler> commands_ GUARDED_BY(mu_);
};

// Splits one client's stream into requests: JSON values back to back (QMP does not need them
// on separate lines). After a malformed or oversized request the rest of its line is dropped,
// so a client resynchronises by starting its next request on a new line.
class QmpInput {
public:
    void Append(std::string_view bytes);
    // The next request, or the error to answer a bad one with; nullopt until more bytes arrive.
    std::optional<Result<Json>> Next();
    size_t buffered() const { return inbuf_.size(); }

private:
    std::string inbuf_;
    bool discarding_ = false;
};

// One client: its input stream and negotiation state. Not thread-safe; one per connection.
class QmpSession {
public:
    explicit QmpSession(const QmpDispatcher& dispatcher) : dispatcher_(dispatcher) {}
    // Bytes from the client; `reply` gets every reply line (without the line end) in order.
    void Receive(std::string_view bytes, const std::function<void(const std::string&)>& reply);
    bool negotiated() const { return negotiated_; }
    size_t buffered() const { return input_.buffered(); }

private:
    const QmpDispatcher& dispatcher_;
    QmpInput input_;
    bool negotiated_ = false;
};

// {"error": {"class": klass, "desc": desc}[, "id": id]} as one line.
std::string ErrorReply(const std::string& klass, const std::string& desc, const Json* id);

}  // namespace qzns::qmp
