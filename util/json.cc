#include "util/json.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace qzns {

// ---- accessors ----

bool Json::as_bool() const { return is_bool() && std::get<bool>(v_); }

std::optional<int64_t> Json::as_int64() const {
    if (type() == Type::kInt) return std::get<int64_t>(v_);
    if (type() == Type::kUint) {
        uint64_t u = std::get<uint64_t>(v_);
        if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            return static_cast<int64_t>(u);
    }
    return std::nullopt;
}

std::optional<uint64_t> Json::as_uint64() const {
    if (type() == Type::kUint) return std::get<uint64_t>(v_);
    if (type() == Type::kInt && std::get<int64_t>(v_) >= 0)
        return static_cast<uint64_t>(std::get<int64_t>(v_));
    return std::nullopt;
}

double Json::as_double() const {
    switch (type()) {
    case Type::kInt: return static_cast<double>(std::get<int64_t>(v_));
    case Type::kUint: return static_cast<double>(std::get<uint64_t>(v_));
    case Type::kDouble: return std::get<double>(v_);
    default: return 0.0;
    }
}

const std::string& Json::as_string() const {
    static const std::string kEmpty;
    return is_string() ? std::get<std::string>(v_) : kEmpty;
}

const Json::Array& Json::as_array() const {
    static const Array kEmpty;
    return is_array() ? std::get<Array>(v_) : kEmpty;
}

const Json::Object& Json::as_object() const {
    static const Object kEmpty;
    return is_object() ? std::get<Object>(v_) : kEmpty;
}

Json::Array& Json::array() {
    if (!is_array()) v_ = Array{};
    return std::get<Array>(v_);
}

Json::Object& Json::object() {
    if (!is_object()) v_ = Object{};
    return std::get<Object>(v_);
}

const Json* Json::get(std::string_view key) const {
    if (!is_object()) return nullptr;
    for (const auto& [k, v] : std::get<Object>(v_))
        if (k == key) return &v;
    return nullptr;
}

Json* Json::get(std::string_view key) {
    return const_cast<Json*>(static_cast<const Json*>(this)->get(key));
}

Json& Json::Set(std::string_view key, Json value) {
    if (Json* existing = get(key)) {
        *existing = std::move(value);
    } else {
        object().emplace_back(std::string(key), std::move(value));
    }
    return *this;
}

Json& Json::Push(Json value) {
    array().push_back(std::move(value));
    return *this;
}

size_t Json::size() const {
    if (is_array()) return std::get<Array>(v_).size();
    if (is_object()) return std::get<Object>(v_).size();
    return 0;
}

bool operator==(const Json& a, const Json& b) {
    if (a.is_integer() && b.is_integer()) {
        if (auto x = a.as_int64(), y = b.as_int64(); x && y) return *x == *y;
        if (auto x = a.as_uint64(), y = b.as_uint64(); x && y) return *x == *y;
        return false;
    }
    return a.v_ == b.v_;
}

// ---- writer ----

void AppendJsonString(std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out += '"';
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (u < 0x20 || u == 0x7f) {
                out += "\\u00";
                out += kHex[u >> 4];
                out += kHex[u & 15];
            } else {
                out += c;
            }
        }
    }
    out += '"';
}

namespace {

void AppendDouble(std::string& out, double d) {
    // JSON has no NaN or infinity; null is what JavaScript's JSON.stringify emits for them.
    if (!std::isfinite(d)) {
        out += "null";
        return;
    }
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
    std::string_view text(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
    out += text;
    // Keep a double recognisable as one after a round trip through the parser.
    if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

void Newline(std::string& out, int indent, int depth) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(depth), ' ');
}

}  // namespace

void Json::DumpTo(std::string& out, int indent, int depth) const {
    switch (type()) {
    case Type::kNull: out += "null"; break;
    case Type::kBool: out += std::get<bool>(v_) ? "true" : "false"; break;
    case Type::kInt: out += std::to_string(std::get<int64_t>(v_)); break;
    case Type::kUint: out += std::to_string(std::get<uint64_t>(v_)); break;
    case Type::kDouble: AppendDouble(out, std::get<double>(v_)); break;
    case Type::kString: AppendJsonString(out, std::get<std::string>(v_)); break;
    case Type::kArray: {
        const Array& a = std::get<Array>(v_);
        out += '[';
        for (size_t i = 0; i < a.size(); i++) {
            if (i) out += indent > 0 ? "," : ", ";
            if (indent > 0) Newline(out, indent, depth + 1);
            a[i].DumpTo(out, indent, depth + 1);
        }
        if (indent > 0 && !a.empty()) Newline(out, indent, depth);
        out += ']';
        break;
    }
    case Type::kObject: {
        const Object& o = std::get<Object>(v_);
        out += '{';
        for (size_t i = 0; i < o.size(); i++) {
            if (i) out += indent > 0 ? "," : ", ";
            if (indent > 0) Newline(out, indent, depth + 1);
            AppendJsonString(out, o[i].first);
            out += ": ";
            o[i].second.DumpTo(out, indent, depth + 1);
        }
        if (indent > 0 && !o.empty()) Newline(out, indent, depth);
        out += '}';
        break;
    }
    }
}

std::string Json::Dump(int indent) const {
    std::string out;
    DumpTo(out, indent, 0);
    return out;
}

// ---- parser ----

namespace {

class Parser {
public:
    Parser(std::string_view text, int max_depth, bool stream)
        : s_(text), max_depth_(max_depth), stream_(stream) {}

    Result<Json> ParseValue(int depth) {
        SkipSpace();
        if (pos_ >= s_.size()) return End("expected a value");
        char c = s_[pos_];
        switch (c) {
        case '{': return ParseObject(depth);
        case '[': return ParseArray(depth);
        case '"': {
            QZNS_ASSIGN(std::string str, ParseString());
            return Json(std::move(str));
        }
        case 't': QZNS_TRY(Literal("true")); return Json(true);
        case 'f': QZNS_TRY(Literal("false")); return Json(false);
        case 'n': QZNS_TRY(Literal("null")); return Json();
        default:
            if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
            return Error("unexpected character " + Describe(c));
        }
    }

    void SkipSpace() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            pos_++;
    }
    size_t pos() const { return pos_; }

    Status Error(const std::string& msg) const {
        return Status::Error(EINVAL, "JSON parse error at byte " + std::to_string(pos_) + ": " + msg);
    }

private:
    // Running out of text is "need more" for a stream and an error for a complete document.
    Status End(const std::string& msg) const {
        if (stream_) return Status::Error(EAGAIN, "incomplete JSON value");
        return Error("unexpected end of input, " + msg);
    }

    static std::string Describe(char c) {
        auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
        static constexpr char kHex[] = "0123456789abcdef";
        return std::string("byte 0x") + kHex[u >> 4] + kHex[u & 15];
    }

    Status Literal(std::string_view word) {
        for (size_t i = 0; i < word.size(); i++) {
            if (pos_ + i >= s_.size()) return End("in literal");
            if (s_[pos_ + i] != word[i]) {
                pos_ += i;
                return Error("invalid literal, expected '" + std::string(word) + "'");
            }
        }
        pos_ += word.size();
        return Status::Ok();
    }

    Result<Json> ParseObject(int depth) {
        if (depth >= max_depth_) return Error("nesting deeper than " + std::to_string(max_depth_));
        pos_++;  // '{'
        Json obj = Json::MakeObject();
        Json::Object& members = obj.object();
        // Linear duplicate checks suit the small objects QMP sends; past 16 members a hash set
        // keeps a hostile object with many keys linear.
        std::unordered_set<std::string> seen;
        SkipSpace();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            pos_++;
            return obj;
        }
        for (;;) {
            SkipSpace();
            if (pos_ >= s_.size()) return End("expected an object key");
            if (s_[pos_] != '"') return Error("expected '\"' to start an object key");
            size_t key_pos = pos_;
            QZNS_ASSIGN(std::string key, ParseString());
            bool dup = false;
            if (members.size() < 16) {
                for (const auto& m : members) dup |= m.first == key;
            } else {
                if (seen.empty())
                    for (const auto& m : members) seen.insert(m.first);
                dup = seen.count(key) != 0;
            }
            if (dup) {
                pos_ = key_pos;
                return Error("duplicate key '" + key + "'");
            }
            SkipSpace();
            if (pos_ >= s_.size()) return End("expected ':'");
            if (s_[pos_] != ':') return Error("expected ':' after object key");
            pos_++;
            QZNS_ASSIGN(Json value, ParseValue(depth + 1));
            if (!seen.empty()) seen.insert(key);
            members.emplace_back(std::move(key), std::move(value));
            SkipSpace();
            if (pos_ >= s_.size()) return End("expected ',' or '}'");
            if (s_[pos_] == ',') {
                pos_++;
                continue;
            }
            if (s_[pos_] == '}') {
                pos_++;
                return obj;
            }
            return Error("expected ',' or '}' in object");
        }
    }

    Result<Json> ParseArray(int depth) {
        if (depth >= max_depth_) return Error("nesting deeper than " + std::to_string(max_depth_));
        pos_++;  // '['
        Json arr = Json::MakeArray();
        SkipSpace();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            pos_++;
            return arr;
        }
        for (;;) {
            QZNS_ASSIGN(Json value, ParseValue(depth + 1));
            arr.array().push_back(std::move(value));
            SkipSpace();
            if (pos_ >= s_.size()) return End("expected ',' or ']'");
            if (s_[pos_] == ',') {
                pos_++;
                continue;
            }
            if (s_[pos_] == ']') {
                pos_++;
                return arr;
            }
            return Error("expected ',' or ']' in array");
        }
    }

    bool Digit() const { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; }

    Result<Json> ParseNumber() {
        size_t start = pos_;
        bool negative = false;
        if (s_[pos_] == '-') {
            negative = true;
            pos_++;
        }
        if (pos_ >= s_.size()) return End("expected a digit");
        if (s_[pos_] == '0') {
            pos_++;
            if (Digit()) return Error("leading zeros are not allowed");
        } else if (Digit()) {
            while (Digit()) pos_++;
        } else {
            return Error("expected a digit");
        }
        bool integer = true;
        if (pos_ < s_.size() && s_[pos_] == '.') {
            integer = false;
            pos_++;
            if (pos_ >= s_.size()) return End("expected a digit after '.'");
            if (!Digit()) return Error("expected a digit after '.'");
            while (Digit()) pos_++;
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            integer = false;
            pos_++;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) pos_++;
            if (pos_ >= s_.size()) return End("expected an exponent");
            if (!Digit()) return Error("expected a digit in the exponent");
            while (Digit()) pos_++;
        }
        // A number at the very end of a stream may continue in the next read ("12" then "3").
        if (stream_ && pos_ >= s_.size()) return End("number may continue");
        const char* first = s_.data() + start;
        const char* last = s_.data() + pos_;
        if (integer) {
            if (negative) {
                int64_t v;
                auto [p, ec] = std::from_chars(first, last, v);
                if (ec == std::errc() && p == last) return Json(v);
            } else {
                uint64_t v;
                auto [p, ec] = std::from_chars(first, last, v);
                if (ec == std::errc() && p == last) {
                    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                        return Json(static_cast<int64_t>(v));
                    return Json(v);
                }
            }
            // Out of 64-bit range: fall back to a double, as QEMU does.
        }
        double d;
        auto [p, ec] = std::from_chars(first, last, d);
        if (ec == std::errc::result_out_of_range) {
            pos_ = start;
            return Error("number out of range");
        }
        if (ec != std::errc() || p != last) {
            pos_ = start;
            return Error("invalid number");
        }
        return Json(d);
    }

    static void AppendUtf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xc0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xe0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else {
            out += static_cast<char>(0xf0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        }
    }

    Result<uint32_t> Hex4() {
        if (pos_ + 4 > s_.size()) return End("in \\u escape");
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
            char c = s_[pos_];
            uint32_t d;
            if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') d = static_cast<uint32_t>(c - 'A' + 10);
            else return Error("invalid hex digit in \\u escape");
            v = v * 16 + d;
            pos_++;
        }
        return v;
    }

    // Validates one raw UTF-8 sequence starting at pos_ (RFC 3629: no overlongs, no surrogates,
    // nothing above U+10FFFF) and copies it.
    Status CopyUtf8(std::string& out) {
        auto b0 = static_cast<unsigned char>(s_[pos_]);
        size_t n;
        uint32_t cp;
        if (b0 >= 0xc2 && b0 <= 0xdf) { n = 2; cp = b0 & 0x1f; }
        else if (b0 >= 0xe0 && b0 <= 0xef) { n = 3; cp = b0 & 0x0f; }
        else if (b0 >= 0xf0 && b0 <= 0xf4) { n = 4; cp = b0 & 0x07; }
        else return Error("invalid UTF-8 lead byte");
        if (pos_ + n > s_.size()) return End("in UTF-8 sequence");
        for (size_t i = 1; i < n; i++) {
            auto b = static_cast<unsigned char>(s_[pos_ + i]);
            if ((b & 0xc0) != 0x80) return Error("invalid UTF-8 continuation byte");
            cp = (cp << 6) | (b & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return Error("invalid UTF-8 sequence");
        out.append(s_.data() + pos_, n);
        pos_ += n;
        return Status::Ok();
    }

    Result<std::string> ParseString() {
        pos_++;  // '"'
        std::string out;
        for (;;) {
            if (pos_ >= s_.size()) return End("unterminated string");
            auto c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                pos_++;
                return out;
            }
            if (c < 0x20) return Error("control character in string must be escaped");
            if (c >= 0x80) {
                QZNS_TRY(CopyUtf8(out));
                continue;
            }
            if (c != '\\') {
                out += static_cast<char>(c);
                pos_++;
                continue;
            }
            pos_++;
            if (pos_ >= s_.size()) return End("in escape");
            char e = s_[pos_++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                QZNS_ASSIGN(uint32_t cp, Hex4());
                if (cp >= 0xdc00 && cp <= 0xdfff) return Error("unpaired low surrogate");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (pos_ + 2 > s_.size()) return End("expected a low surrogate");
                    if (s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
                        return Error("high surrogate not followed by a low surrogate");
                    pos_ += 2;
                    QZNS_ASSIGN(uint32_t lo, Hex4());
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return Error("high surrogate not followed by a low surrogate");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                AppendUtf8(out, cp);
                break;
            }
            default:
                pos_--;
                return Error("invalid escape " + Describe(e));
            }
        }
    }

    std::string_view s_;
    size_t pos_ = 0;
    int max_depth_;
    bool stream_;
};

}  // namespace

Result<Json> ParseJson(std::string_view text, int max_depth) {
    Parser p(text, max_depth, /*stream=*/false);
    QZNS_ASSIGN(Json value, p.ParseValue(0));
    p.SkipSpace();
    if (p.pos() != text.size()) return p.Error("trailing characters after the JSON value");
    return value;
}

Result<Json> ParseJsonPrefix(std::string_view text, size_t* consumed, int max_depth) {
    Parser p(text, max_depth, /*stream=*/true);
    QZNS_ASSIGN(Json value, p.ParseValue(0));
    *consumed = p.pos();
    return value;
}

}  // namespace qzns
