#include <gtest/gtest.h>

#include "util/size.h"

namespace qzns {
namespace {

uint64_t Parsed(const char* s) {
    auto r = ParseSize(s);
    EXPECT_TRUE(r.ok()) << s << ": " << r.status().message();
    return r.ok() ? *r : ~uint64_t{0};
}

TEST(ParseSize, PlainBytesAndHex) {
    EXPECT_EQ(Parsed("0"), 0u);
    EXPECT_EQ(Parsed("512"), 512u);
    EXPECT_EQ(Parsed("512B"), 512u);
    EXPECT_EQ(Parsed("0x10000"), 65536u);
    EXPECT_EQ(Parsed("18446744073709551615"), UINT64_MAX);
}

TEST(ParseSize, BinarySuffixesInEverySpelling) {
    EXPECT_EQ(Parsed("1k"), 1024u);
    EXPECT_EQ(Parsed("1K"), 1024u);
    EXPECT_EQ(Parsed("64M"), 64ull << 20);
    EXPECT_EQ(Parsed("64m"), 64ull << 20);
    EXPECT_EQ(Parsed("64MiB"), 64ull << 20);
    EXPECT_EQ(Parsed("64MB"), 64ull << 20);
    EXPECT_EQ(Parsed("2G"), 2ull << 30);
    EXPECT_EQ(Parsed("3T"), 3ull << 40);
    EXPECT_EQ(Parsed("1P"), 1ull << 50);
    EXPECT_EQ(Parsed("15E"), 15ull << 60);
}

TEST(ParseSize, FractionsThatAreWholeBytes) {
    EXPECT_EQ(Parsed("1.5G"), 3ull << 29);
    EXPECT_EQ(Parsed("0.5k"), 512u);
    EXPECT_EQ(Parsed("1.25M"), 1310720u);
    EXPECT_EQ(Parsed("1.000000000000000000000000k"), 1024u);
}

TEST(ParseSize, RejectsBadInput) {
    for (const char* bad : {"", "-1", "-0", "abc", "12abc", "1.", ".5", "0.5", "0.3", "1.1",
                            "1.5x", "1KiBB", "1 M", " 1", "0x", "0x1.5", "1Mi", "1kb2",
                            "18446744073709551616", "16E", "99999999999999999999999",
                            "0.0000000000000000000001E"}) {
        auto r = ParseSize(bad);
        EXPECT_FALSE(r.ok()) << "accepted '" << bad << "'";
        if (!r.ok()) {
            EXPECT_EQ(r.status().err(), EINVAL) << bad;
        }
    }
}

TEST(ParseSize, ErrorNamesTheInputAndSuffixes) {
    auto r = ParseSize("12q");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("'12q'"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("k, M, G, T, P or E"), std::string::npos);
}

TEST(FormatSize, QemuImgHumanForm) {
    EXPECT_EQ(FormatSize(0), "0 B");
    EXPECT_EQ(FormatSize(512), "512 B");
    EXPECT_EQ(FormatSize(1023), "1023 B");
    EXPECT_EQ(FormatSize(1024), "1 KiB");
    EXPECT_EQ(FormatSize(64 << 10), "64 KiB");
    EXPECT_EQ(FormatSize(768ull << 20), "768 MiB");
    EXPECT_EQ(FormatSize(1ull << 30), "1 GiB");
    EXPECT_EQ(FormatSize(3ull << 29), "1.5 GiB");
    EXPECT_EQ(FormatSize(1536), "1.5 KiB");
    EXPECT_EQ(FormatSize((1ull << 20) - 1), "1 MiB");  // 1023.999 KiB rounds up a unit
    EXPECT_EQ(FormatSize(UINT64_MAX), "16 EiB");
}

TEST(FormatSize, RoundTripsThroughParseSize) {
    for (uint64_t v : {512ull, 1536ull, 64ull << 10, 3ull << 29, 5ull << 40}) {
        std::string text = FormatSize(v);
        text.erase(text.find(' '), 1);  // "1.5 GiB" -> "1.5GiB"
        EXPECT_EQ(Parsed(text.c_str()), v) << text;
    }
}

}  // namespace
}  // namespace qzns
