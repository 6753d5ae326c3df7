// Errors as values. A Status carries an errno-style code and a message a user can act on;
// Result<T> is a value or a Status. Nothing in qzns throws across a layer boundary.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace qzns {

class [[nodiscard]] Status {
public:
    Status() = default;
    static Status Ok() { return Status(); }
    static Status Error(int err, std::string msg) { return Status(err ? err : EIO, std::move(msg)); }

    bool ok() const { return err_ == 0; }
    int err() const { return err_; }
    const std::string& message() const { return msg_; }

    // Adds context in front of the message ("l2 table at 0x50000: ...").
    Status Prefix(const std::string& ctx) const {
        if (ok()) return *this;
        return Status(err_, ctx + ": " + msg_);
    }

private:
    Status(int err, std::string msg) : err_(err), msg_(std::move(msg)) {}
    int err_ = 0;
    std::string msg_;
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Status st) : v_(std::move(st)) {}

    bool ok() const { return v_.index() == 0; }
    T& value() & { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    const T& value() const& { return std::get<0>(v_); }
    T& operator*() { return value(); }
    T* operator->() { return &value(); }
    Status status() const { return ok() ? Status::Ok() : std::get<1>(v_); }

private:
    std::variant<T, Status> v_;
};

}  // namespace qzns

// Propagate a failed Status out of the current function.
#define QZNS_TRY(expr)                              \
    do {                                            \
        ::qzns::Status qzns_st_ = (expr);           \
        if (!qzns_st_.ok()) return qzns_st_;        \
    } while (0)

#define QZNS_CONCAT_(a, b) a##b
#define QZNS_CONCAT(a, b) QZNS_CONCAT_(a, b)
#define QZNS_ASSIGN_IMPL_(tmp, lhs, expr)           \
    auto tmp = (expr);                              \
    if (!tmp.ok()) return tmp.status();             \
    lhs = std::move(tmp).value()
// `QZNS_ASSIGN(auto x, f());` declares x from a Result or returns its error.
#define QZNS_ASSIGN(lhs, expr) QZNS_ASSIGN_IMPL_(QZNS_CONCAT(qzns_r_, __LINE__), lhs, expr)
