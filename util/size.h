// Byte sizes as users type and read them: "64M", "1.5G", "512" in, "768 MiB" out. Follows
// qemu-img's conventions so command lines and human output carry over unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/status.h"

namespace qzns {

// Parses a byte count: plain digits ("512"), "0x" hex ("0x10000"), or a decimal number with a
// binary (1024-based) suffix k/K, m/M, g/G, t/T, p/P, e/E, optionally followed by "iB" or "B"
// ("64M", "64MiB", "64MB" are all 64 * 2^20). A lone "B" suffix means bytes. Fractions are
// accepted when they yield a whole number of bytes ("1.5G", "0.5k"), as qemu does.
// Negative values, values >= 2^64, empty strings and trailing garbage fail with EINVAL.
[[nodiscard]] Result<uint64_t> ParseSize(std::string_view s);

// Human form in qemu-img style: the largest binary unit not exceeding the value, an integer when
// exact and otherwise rounded to one decimal ("512 B", "64 KiB", "1 GiB", "1.5 GiB").
[[nodiscard]] std::string FormatSize(uint64_t bytes);

}  // namespace qzns
