// The one parser for qemu-style option strings: `-o key=value,key2=value2` for qzns-img and
// `--blockdev driver=qcow2,node-name=x,file=y`. A comma inside a value is written ",,".
// OptionSet then hands typed values to the caller and reports whatever nobody asked for, so a
// misspelt option is an error rather than silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace qzns {

struct Option {
    std::string key;
    std::string value;
    // The item had no '=' ("help", "lazy_refcounts"): value is empty. QEMU reads a bare key
    // as "key=on", so TakeBool() does too; `help` is the common case.
    bool bare = false;
};

// Splits "k=v,k2=v2". Values may contain '=' and ",," (an escaped comma); keys may not contain
// ',' or '='. One trailing comma is tolerated, as in QEMU. Empty keys and duplicate keys fail
// with EINVAL. An empty string yields no options.
[[nodiscard]] Result<std::vector<Option>> ParseOptionString(std::string_view s);

// Typed, consuming access to a parsed option list. Each Take* removes the key (marks it used);
// RejectUnknown() then fails on anything left.
class OptionSet {
public:
    OptionSet() = default;
    explicit OptionSet(std::vector<Option> options);
    [[nodiscard]] static Result<OptionSet> Parse(std::string_view s);

    // True if the key is present and not yet taken.
    bool Has(std::string_view key) const;
    // The raw value ("" for a bare key), or nullopt when absent.
    std::optional<std::string> Take(std::string_view key);

    // A byte size in ParseSize syntax ("64M", "1.5G"). Without a default, absence is an error.
    [[nodiscard]] Result<uint64_t> TakeSize(std::string_view key);
    [[nodiscard]] Result<uint64_t> TakeSize(std::string_view key, uint64_t default_value);
    // An unsigned integer in decimal or 0x hex.
    [[nodiscard]] Result<uint64_t> TakeUint(std::string_view key);
    [[nodiscard]] Result<uint64_t> TakeUint(std::string_view key, uint64_t default_value);
    // on/off, true/false, yes/no; a bare key means on.
    [[nodiscard]] Result<bool> TakeBool(std::string_view key);
    [[nodiscard]] Result<bool> TakeBool(std::string_view key, bool default_value);

    // Takes every "prefix.rest" key and returns them as "rest", for nested blockdev options
    // such as file.filename=/x or file.driver=file.
    OptionSet TakeGroup(std::string_view prefix);

    // Keys not taken yet, in their original order.
    std::vector<std::string> Untaken() const;
    // EINVAL "<context>: Invalid parameter 'foo'" (or "parameters 'a', 'b'") if any key is left.
    [[nodiscard]] Status RejectUnknown(std::string_view context) const;

private:
    struct Entry {
        Option option;
        bool taken = false;
    };
    Entry* Find(std::string_view key);
    const Entry* Find(std::string_view key) const;

    std::vector<Entry> entries_;
};

// Parses an unsigned decimal or 0x-prefixed hex integer; shared by option and command-line
// parsing so both accept the same spellings.
[[nodiscard]] Result<uint64_t> ParseUint(std::string_view s);
// on/off, true/false, yes/no.
[[nodiscard]] Result<bool> ParseBool(std::string_view s);

}  // namespace qzns
