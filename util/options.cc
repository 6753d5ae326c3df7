#include "util/options.h"

#include "util/size.h"

namespace qzns {
namespace {

Status MissingParameter(std::string_view key) {
    return Status::Error(EINVAL, "Parameter '" + std::string(key) + "' is required");
}

}  // namespace

Result<std::vector<Option>> ParseOptionString(std::string_view s) {
    std::vector<Option> out;
    size_t i = 0;
    while (i < s.size()) {
        Option opt;
        size_t key_end = s.find_first_of(",=", i);
        if (key_end == std::string_view::npos) key_end = s.size();
        opt.key = std::string(s.substr(i, key_end - i));
        if (opt.key.empty())
            return Status::Error(EINVAL, "empty parameter name at offset " + std::to_string(i) +
                                             " in '" + std::string(s) + "'");
        i = key_end;
        if (i < s.size() && s[i] == '=') {
            i++;
            // The value runs to the first single comma; ",," stands for a literal comma.
            while (i < s.size()) {
                if (s[i] == ',') {
                    if (i + 1 < s.size() && s[i + 1] == ',') {
                        opt.value += ',';
                        i += 2;
                        continue;
                    }
                    break;
                }
                opt.value += s[i++];
            }
        } else {
            opt.bare = true;
        }
        for (const Option& o : out)
            if (o.key == opt.key)
                return Status::Error(EINVAL, "Parameter '" + opt.key + "' given more than once");
        out.push_back(std::move(opt));
        if (i < s.size()) i++;  // the separating comma; a trailing one ends the loop
    }
    return out;
}

Result<uint64_t> ParseUint(std::string_view s) {
    std::string_view digits = s;
    unsigned base = 10;
    if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
        base = 16;
        digits.remove_prefix(2);
    }
    if (digits.empty())
        return Status::Error(EINVAL, "'" + std::string(s) + "' is not an unsigned integer");
    uint64_t v = 0;
    for (char c : digits) {
        unsigned d;
        if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
        else return Status::Error(EINVAL, "'" + std::string(s) + "' is not an unsigned integer");
        if (v > (UINT64_MAX - d) / base)
            return Status::Error(ERANGE, "'" + std::string(s) + "' does not fit in 64 bits");
        v = v * base + d;
    }
    return v;
}

Result<bool> ParseBool(std::string_view s) {
    if (s == "on" || s == "true" || s == "yes") return true;
    if (s == "off" || s == "false" || s == "no") return false;
    return Status::Error(EINVAL, "'" + std::string(s) + "' is not a boolean: use on or off");
}

OptionSet::OptionSet(std::vector<Option> options) {
    entries_.reserve(options.size());
    for (Option& o : options) entries_.push_back(Entry{std::move(o), false});
}

Result<OptionSet> OptionSet::Parse(std::string_view s) {
    QZNS_ASSIGN(std::vector<Option> options, ParseOptionString(s));
    return OptionSet(std::move(options));
}

OptionSet::Entry* OptionSet::Find(std::string_view key) {
    for (Entry& e : entries_)
        if (!e.taken && e.option.key == key) return &e;
    return nullptr;
}

const OptionSet::Entry* OptionSet::Find(std::string_view key) const {
    for (const Entry& e : entries_)
        if (!e.taken && e.option.key == key) return &e;
    return nullptr;
}

bool OptionSet::Has(std::string_view key) const { return Find(key) != nullptr; }

std::optional<std::string> OptionSet::Take(std::string_view key) {
    Entry* e = Find(key);
    if (!e) return std::nullopt;
    e->taken = true;
    return e->option.value;
}

Result<uint64_t> OptionSet::TakeSize(std::string_view key) {
    Entry* e = Find(key);
    if (!e) return MissingParameter(key);
    e->taken = true;
    auto r = ParseSize(e->option.value);
    if (!r.ok()) return r.status().Prefix("Parameter '" + std::string(key) + "'");
    return r;
}

Result<uint64_t> OptionSet::TakeSize(std::string_view key, uint64_t default_value) {
    if (!Has(key)) return default_value;
    return TakeSize(key);
}

Result<uint64_t> OptionSet::TakeUint(std::string_view key) {
    Entry* e = Find(key);
    if (!e) return MissingParameter(key);
    e->taken = true;
    auto r = ParseUint(e->option.value);
    if (!r.ok()) return r.status().Prefix("Parameter '" + std::string(key) + "'");
    return r;
}

Result<uint64_t> OptionSet::TakeUint(std::string_view key, uint64_t default_value) {
    if (!Has(key)) return default_value;
    return TakeUint(key);
}

Result<bool> OptionSet::TakeBool(std::string_view key) {
    Entry* e = Find(key);
    if (!e) return MissingParameter(key);
    e->taken = true;
    if (e->option.bare) return true;
    auto r = ParseBool(e->option.value);
    if (!r.ok()) return r.status().Prefix("Parameter '" + std::string(key) + "'");
    return r;
}

Result<bool> OptionSet::TakeBool(std::string_view key, bool default_value) {
    if (!Has(key)) return default_value;
    return TakeBool(key);
}

OptionSet OptionSet::TakeGroup(std::string_view prefix) {
    std::vector<Option> group;
    std::string dotted = std::string(prefix) + ".";
    for (Entry& e : entries_) {
        if (e.taken || e.option.key.size() <= dotted.size() ||
            e.option.key.compare(0, dotted.size(), dotted) != 0)
            continue;
        e.taken = true;
        Option o = e.option;
        o.key.erase(0, dotted.size());
        group.push_back(std::move(o));
    }
    return OptionSet(std::move(group));
}

std::vector<std::string> OptionSet::Untaken() const {
    std::vector<std::string> keys;
    for (const Entry& e : entries_)
        if (!e.taken) keys.push_back(e.option.key);
    return keys;
}

Status OptionSet::RejectUnknown(std::string_view context) const {
    std::vector<std::string> keys = Untaken();
    if (keys.empty()) return Status::Ok();
    std::string msg = keys.size() == 1 ? "Invalid parameter " : "Invalid parameters ";
    for (size_t i = 0; i < keys.size(); i++) msg += (i ? ", '" : "'") + keys[i] + "'";
    if (!context.empty()) msg = std::string(context) + ": " + msg;
    return Status::Error(EINVAL, msg);
}

}  // namespace qzns
