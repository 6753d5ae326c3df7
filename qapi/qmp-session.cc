#include "qapi/qmp-session.h"

#include <algorithm>

namespace qzns::qmp {

std::string ErrorReply(const std::string& klass, const std::string& desc, const Json* id) {
    Json e = Json::MakeObject();
    e.Set("class", klass).Set("desc", desc);
    Json r = Json::MakeObject();
    r.Set("error", std::move(e));
    if (id) r.Set("id", *id);
    return r.Dump(-1);
}

void QmpDispatcher::Register(const std::string& name, CommandHandler handler) {
    util::MutexLock lk(mu_);
    commands_[name] = std::move(handler);
}

std::vector<std::string> QmpDispatcher::CommandNames() const {
    util::MutexLock lk(mu_);
    std::vector<std::string> out;
    for (const auto& [n, h] : commands_) out.push_back(n);
    return out;
}

std::string QmpDispatcher::Dispatch(const Json& req, bool* negotiated) const {
    const Json* id = req.is_object() ? req.get("id") : nullptr;
    if (!req.is_object()) return ErrorReply("GenericError", "QMP input must be a JSON object", nullptr);
    if (req.get("exec-oob"))  // no capabilities are offered, so there is no out-of-band mode
        return ErrorReply("GenericError", "QMP input member 'exec-oob' needs the 'oob' capability, which qzns "
                                          "does not offer", id);
    const Json* exec = req.get("execute");
    if (!exec || !exec->is_string())
        return ErrorReply("GenericError", "QMP input lacks member 'execute'", id);
    for (const auto& [k, v] : req.as_object()) {
        if (k != "execute" && k != "arguments" && k != "id")
            return ErrorReply("GenericError", "QMP input member '" + k + "' is unexpected", id);
    }
    const std::string& name = exec->as_string();
    const Json* args = req.get("arguments");
    if (args && !args->is_object())
        return ErrorReply("GenericError", "QMP input member 'arguments' must be an object", id);
    if (name == "qmp_capabilities") {
        if (*negotiated)
            return ErrorReply("CommandNotFound", "Capabilities negotiation is already complete, command "
                                                 "'qmp_capabilities' ignored", id);
        if (args) {
            for (const auto& [k, v] : args->as_object()) {
                if (k != "enable") return ErrorReply("GenericError", "Parameter '" + k + "' is unexpected", id);
                if (!v.is_array())
                    return ErrorReply("GenericError", "Invalid parameter type for 'enable', expected: array", id);
                if (!v.as_array().empty()) {  // qzns offers no capabilities (QEMU's wording)
                    const Json& c = v.as_array().front();
                    return ErrorReply("GenericError", "Capability '" + (c.is_string() ? c.as_string() : c.Dump(-1)) +
                                                          "' not available", id);
                }
            }
        }
        *negotiated = true;
        Json r = Json::MakeObject();
        r.Set("return", Json::MakeObject());
        if (id) r.Set("id", *id);
        return r.Dump(-1);
    }
    if (!*negotiated)
        return ErrorReply("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'", id);
    CommandHandler h;
    {
        // Copied out so a handler runs without the lock (it may register or list commands).
        util::MutexLock lk(mu_);
        auto it = commands_.find(name);
        if (it == commands_.end()) return ErrorReply("CommandNotFound", "The command " + name + " has not been found", id);
        h = it->second;
    }
    static const Json kEmpty = Json::MakeObject();
    CommandResult res = h(args ? *args : kEmpty);
    if (auto* err = std::get_if<QmpError>(&res)) return ErrorReply(err->klass, err->desc, id);
    Json r = Json::MakeObject();
    r.Set("return", std::get<Json>(std::move(res)));
    if (id) r.Set("id", *id);
    return r.Dump(-1);
}

void QmpInput::Append(std::string_view bytes) {
    if (discarding_) {
        // Dropped here already, so a client that never sends a newline cannot grow the buffer.
        size_t nl = bytes.find('\n');
        if (nl == std::string_view::npos) return;
        bytes.remove_prefix(nl + 1);
        discarding_ = false;
    }
    inbuf_.append(bytes);
}

std::optional<Result<Json>> QmpInput::Next() {
    if (discarding_) {
        size_t nl = inbuf_.find('\n');
        if (nl == std::string::npos) {
            inbuf_.clear();
            return std::nullopt;
        }
        inbuf_.erase(0, nl + 1);
        discarding_ = false;
    }
    size_t used = 0;
    auto v = ParseJsonPrefix(inbuf_, &used);
    if (!v.ok() && v.status().err() == EAGAIN) {
        if (inbuf_.find_first_not_of(" \t\r\n") == std::string::npos) inbuf_.clear();
        if (inbuf_.size() > kMaxRequestBytes) {
            // Refused, and the connection stays usable from the next line on.
            inbuf_.clear();
            discarding_ = true;
            return Status::Error(E2BIG, "QMP request too large (limit " + std::to_string(kMaxRequestBytes) +
                                            " bytes)");
        }
        return std::nullopt;
    }
    if (!v.ok()) {
        // Resynchronise at the line after the bad request: requests that followed it in the same
        // read are still answered.
        inbuf_.erase(0, std::min(inbuf_.size(), inbuf_.find_first_not_of(" \t\r\n")));
        discarding_ = true;
        return v;
    }
    inbuf_.erase(0, used);
    return v;
}

void QmpSession::Receive(std::string_view bytes, const std::function<void(const std::string&)>& reply) {
    input_.Append(bytes);
    while (auto next = input_.Next()) {
        if (!next->ok()) {
            reply(ErrorReply("GenericError", next->status().message(), nullptr));
            continue;
        }
        reply(dispatcher_.Dispatch(**next, &negotiated_));
    }
}

}  // namespace qzns::qmp
