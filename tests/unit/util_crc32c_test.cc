#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "util/crc32c.h"

namespace qzns {
namespace {

TEST(Crc32c, CheckValue) {
    EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
    EXPECT_EQ(Crc32cPortable("123456789", 9), 0xE3069283u);
    EXPECT_EQ(Crc32c("", 0), 0u);
}

// RFC 3720 (iSCSI) appendix B.4.
TEST(Crc32c, Rfc3720Vectors) {
    uint8_t buf[32];
    std::memset(buf, 0, sizeof buf);
    EXPECT_EQ(Crc32c(buf, 32), 0x8A9136AAu);
    EXPECT_EQ(Crc32cPortable(buf, 32), 0x8A9136AAu);
    std::memset(buf, 0xff, sizeof buf);
    EXPECT_EQ(Crc32c(buf, 32), 0x62A8AB43u);
    EXPECT_EQ(Crc32cPortable(buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = static_cast<uint8_t>(i);
    EXPECT_EQ(Crc32c(buf, 32), 0x46DD794Eu);
    EXPECT_EQ(Crc32cPortable(buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = static_cast<uint8_t>(31 - i);
    EXPECT_EQ(Crc32c(buf, 32), 0x113FDB5Cu);
}

TEST(Crc32c, ChainingEqualsOneShot) {
    std::vector<uint8_t> data(1000);
    std::mt19937 rng(1);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    uint32_t whole = Crc32c(data.data(), data.size());
    for (size_t split : {0, 1, 7, 8, 9, 500, 999, 1000}) {
        uint32_t a = Crc32c(data.data(), split);
        EXPECT_EQ(Crc32c(data.data() + split, data.size() - split, a), whole) << split;
        uint32_t p = Crc32cPortable(data.data(), split);
        EXPECT_EQ(Crc32cPortable(data.data() + split, data.size() - split, p), whole) << split;
    }
}

TEST(Crc32c, HardwareMatchesPortableAtEveryLengthAndAlignment) {
    std::vector<uint8_t> data(300);
    std::mt19937 rng(2);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 200; len++)
            ASSERT_EQ(Crc32c(data.data() + off, len), Crc32cPortable(data.data() + off, len))
                << off << "+" << len;
}

}  // namespace
}  // namespace qzns
