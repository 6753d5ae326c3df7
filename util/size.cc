#include "util/size.h"

#include <cctype>

namespace qzns {
namespace {

using u128 = unsigned __int128;

Status SizeError(std::string_view s, std::string_view why) {
    return Status::Error(EINVAL,
                         "invalid size '" + std::string(s) + "' (" + std::string(why) +
                             "): expected a non-negative number of bytes below 2^64, optionally "
                             "followed by k, M, G, T, P or E for KiB, MiB, GiB, TiB, PiB or EiB");
}

// Returns the shift for a unit letter, or -1 when c is not one.
int UnitShift(char c) {
    switch (std::tolower(static_cast<unsigned char>(c))) {
    case 'k': return 10;
    case 'm': return 20;
    case 'g': return 30;
    case 't': return 40;
    case 'p': return 50;
    case 'e': return 60;
    default: return -1;
    }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
    if (IsDigit(c)) return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// Parses the suffix after the number; returns the shift or -1 on garbage.
int ParseSuffix(std::string_view rest) {
    if (rest.empty()) return 0;
    if (rest == "B" || rest == "b") return 0;
    int shift = UnitShift(rest[0]);
    if (shift < 0) return -1;
    rest.remove_prefix(1);
    if (rest.empty() || rest == "B" || rest == "b" || rest == "iB") return shift;
    return -1;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view s) {
    if (s.empty()) return SizeError(s, "empty");
    if (s[0] == '-') return SizeError(s, "negative");
    size_t i = 0;
    u128 whole = 0;
    bool overflow = false;
    bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    if (hex) {
        i = 2;
        size_t start = i;
        for (; i < s.size() && HexValue(s[i]) >= 0; i++) {
            whole = whole * 16 + static_cast<unsigned>(HexValue(s[i]));
            if (whole > UINT64_MAX) overflow = true;
        }
        if (i == start) return SizeError(s, "no digits after 0x");
        if (i < s.size() && s[i] == '.') return SizeError(s, "hex numbers take no fraction");
    } else {
        size_t start = i;
        for (; i < s.size() && IsDigit(s[i]); i++) {
            whole = whole * 10 + static_cast<unsigned>(s[i] - '0');
            if (whole > UINT64_MAX) overflow = true;
        }
        if (i == start) return SizeError(s, "does not start with a digit");
    }
    if (overflow) return SizeError(s, "too large");

    // Fraction kept exactly as frac / 10^frac_digits; trailing zeros carry no information, which
    // keeps the digit count (and so the 128-bit arithmetic below) bounded.
    u128 frac = 0;
    u128 frac_scale = 1;
    if (i < s.size() && s[i] == '.') {
        i++;
        size_t start = i;
        while (i < s.size() && IsDigit(s[i])) i++;
        if (i == start) return SizeError(s, "no digits after the decimal point");
        std::string_view digits = s.substr(start, i - start);
        while (!digits.empty() && digits.back() == '0') digits.remove_suffix(1);
        if (digits.size() > 19) return SizeError(s, "fraction is not a whole number of bytes");
        for (char c : digits) {
            frac = frac * 10 + static_cast<unsigned>(c - '0');
            frac_scale *= 10;
        }
    }

    int shift = ParseSuffix(s.substr(i));
    if (shift < 0) return SizeError(s, "unknown suffix '" + std::string(s.substr(i)) + "'");

    u128 unit = u128{1} << shift;
    if (whole > (u128{UINT64_MAX} >> shift)) return SizeError(s, "too large");
    u128 total = whole << shift;
    if (frac) {
        u128 frac_bytes = frac * unit;
        if (frac_bytes % frac_scale) return SizeError(s, "fraction is not a whole number of bytes");
        total += frac_bytes / frac_scale;
    }
    if (total > UINT64_MAX) return SizeError(s, "too large");
    return static_cast<uint64_t>(total);
}

std::string FormatSize(uint64_t bytes) {
    static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (u < 6 && bytes >= (uint64_t{1} << (10 * (u + 1)))) u++;
    for (;;) {
        u128 unit = u128{1} << (10 * u);
        // Tenths of the unit, rounded half up; 128 bits so 10 * bytes cannot overflow.
        u128 tenths = (u128{bytes} * 10 + unit / 2) / unit;
        if (tenths >= 10240 && u < 6) {  // 1023.96 KiB rounds to 1024.0: say "1 MiB" instead
            u++;
            continue;
        }
        std::string out = std::to_string(static_cast<uint64_t>(tenths / 10));
        if (tenths % 10) out += "." + std::to_string(static_cast<unsigned>(tenths % 10));
        return out + " " + kUnits[u];
    }
}

}  // namespace qzns
