// The one JSON value type, writer and parser in qzns: qzns-img --output=json, QMP and
// vfio-user all go through here. Objects keep insertion order so output matches qemu-img's
// field order. The parser is strict RFC 8259 and bounded (nesting depth, no recursion beyond
// it, no quadratic key checks) because QMP text comes from outside the daemon.
#pragma once

#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "util/status.h"

namespace qzns {

class Json {
public:
    enum class Type { kNull, kBool, kInt, kUint, kDouble, kString, kArray, kObject };
    using Array = std::vector<Json>;
    using Object = std::vector<std::pair<std::string, Json>>;

    Json() = default;  // null
    Json(std::nullptr_t) {}
    Json(bool b) : v_(b) {}
    template <std::signed_integral T>
        requires(!std::same_as<T, bool>)
    Json(T i) : v_(static_cast<int64_t>(i)) {}
    template <std::unsigned_integral T>
        requires(!std::same_as<T, bool>)
    Json(T u) : v_(static_cast<uint64_t>(u)) {}
    Json(double d) : v_(d) {}
    Json(const char* s) : v_(std::string(s)) {}
    Json(std::string s) : v_(std::move(s)) {}
    Json(std::string_view s) : v_(std::string(s)) {}
    Json(Array a) : v_(std::move(a)) {}
    Json(Object o) : v_(std::move(o)) {}

    static Json MakeArray() { return Json(Array{}); }
    static Json MakeObject() { return Json(Object{}); }

    // kInt holds negative integers and whatever the caller built from a signed type; kUint holds
    // the rest. The parser produces kInt for values that fit int64 and kUint above that.
    Type type() const { return static_cast<Type>(v_.index()); }
    bool is_null() const { return type() == Type::kNull; }
    bool is_bool() const { return type() == Type::kBool; }
    bool is_integer() const { return type() == Type::kInt || type() == Type::kUint; }
    bool is_number() const { return is_integer() || type() == Type::kDouble; }
    bool is_string() const { return type() == Type::kString; }
    bool is_array() const { return type() == Type::kArray; }
    bool is_object() const { return type() == Type::kObject; }

    // Accessors never abort: on a type mismatch they return false / nullopt / 0.0 / an empty
    // string, array or object, so hostile input cannot crash the daemon. Check is_*() when the
    // difference matters.
    bool as_bool() const;
    // The integer if this is an integer in range of the target type.
    std::optional<int64_t> as_int64() const;
    std::optional<uint64_t> as_uint64() const;
    double as_double() const;  // any number
    const std::string& as_string() const;
    const Array& as_array() const;
    const Object& as_object() const;
    // Mutable access; converts this value to an empty array/object first if it is another type.
    Array& array();
    Object& object();

    // Object member or nullptr (also nullptr when this is not an object).
    const Json* get(std::string_view key) const;
    Json* get(std::string_view key);
    // Sets an object member, replacing an existing one in place (keeps its position). Turns a
    // non-object into an object. Returns *this for chaining.
    Json& Set(std::string_view key, Json value);
    // Appends to an array, turning a non-array into an array.
    Json& Push(Json value);
    size_t size() const;  // elements or members; 0 for scalars

    // indent > 0: qemu-img style, one member per line indented by `indent` spaces per level.
    // indent <= 0: one line, with QMP's ", " and ": " separators.
    std::string Dump(int indent = -1) const;

    // Integers compare by value across kInt/kUint; objects compare member by member in order.
    friend bool operator==(const Json& a, const Json& b);

private:
    void DumpTo(std::string& out, int indent, int depth) const;

    std::variant<std::monostate, bool, int64_t, uint64_t, double, std::string, Array, Object> v_;
};

inline constexpr int kJsonMaxDepth = 64;

// Parses exactly one JSON text (surrounding whitespace allowed). Errors are EINVAL with the byte
// offset, e.g. "JSON parse error at byte 17: expected ':' after object key". Duplicate object
// keys are rejected (as QEMU does); nesting deeper than max_depth is rejected.
[[nodiscard]] Result<Json> ParseJson(std::string_view text, int max_depth = kJsonMaxDepth);

// Parses one JSON value from the front of a stream (QMP sends values back to back) and stores
// the bytes used, including leading whitespace, in *consumed. Fails with EAGAIN when the text
// ends before the value does, so the caller can wait for more input.
[[nodiscard]] Result<Json> ParseJsonPrefix(std::string_view text, size_t* consumed,
                                           int max_depth = kJsonMaxDepth);

// Appends s as a quoted JSON string: control characters become \n, \t, ... or \u00XX; other
// bytes, including UTF-8 sequences, pass through.
void AppendJsonString(std::string& out, std::string_view s);

}  // namespace qzns
