#include <gtest/gtest.h>

#include "util/endian.h"
#include "util/status.h"

namespace qzns {
namespace {

Result<int> Half(int v) {
    if (v % 2) return Status::Error(EINVAL, "odd value");
    return v / 2;
}

Status UseHalf(int v, int* out) {
    QZNS_ASSIGN(int h, Half(v));
    *out = h;
    return Status::Ok();
}

TEST(Status, ErrorCarriesMessageAndPrefix) {
    Status st = Status::Error(ENOSPC, "no space").Prefix("write at 0x1000");
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.err(), ENOSPC);
    EXPECT_EQ(st.message(), "write at 0x1000: no space");
}

TEST(Status, AssignPropagatesError) {
    int out = 0;
    EXPECT_TRUE(UseHalf(8, &out).ok());
    EXPECT_EQ(out, 4);
    Status st = UseHalf(7, &out);
    EXPECT_EQ(st.err(), EINVAL);
}

TEST(Endian, BigAndLittleLayouts) {
    be32 b(0x11223344);
    le32 l(0x11223344);
    auto* pb = reinterpret_cast<const uint8_t*>(&b);
    auto* pl = reinterpret_cast<const uint8_t*>(&l);
    EXPECT_EQ(pb[0], 0x11);
    EXPECT_EQ(pl[0], 0x44);
    EXPECT_EQ(b.get(), 0x11223344u);
    EXPECT_EQ(l.get(), 0x11223344u);
}

}  // namespace
}  // namespace qzns
