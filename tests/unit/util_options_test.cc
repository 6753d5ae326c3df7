#include <gtest/gtest.h>

#include "util/options.h"

namespace qzns {
namespace {

TEST(ParseOptionString, SplitsKeysAndValues) {
    auto r = ParseOptionString("size=64M,cluster_size=64k,compat=1.1");
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->size(), 3u);
    EXPECT_EQ((*r)[0].key, "size");
    EXPECT_EQ((*r)[0].value, "64M");
    EXPECT_FALSE((*r)[0].bare);
    EXPECT_EQ((*r)[2].key, "compat");
    EXPECT_EQ((*r)[2].value, "1.1");
}

TEST(ParseOptionString, DoubledCommaIsALiteralComma) {
    auto r = ParseOptionString("file=a,,b,,,,c,driver=file");
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].value, "a,b,,c");
    EXPECT_EQ((*r)[1].key, "driver");
}

TEST(ParseOptionString, ValueMayContainEquals) {
    auto r = ParseOptionString("secret=a=b");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ((*r)[0].value, "a=b");
}

TEST(ParseOptionString, BareKeyAndEmptyValue) {
    auto r = ParseOptionString("help,x=");
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].key, "help");
    EXPECT_TRUE((*r)[0].bare);
    EXPECT_FALSE((*r)[1].bare);
    EXPECT_EQ((*r)[1].value, "");
}

TEST(ParseOptionString, EmptyStringAndTrailingComma) {
    auto empty = ParseOptionString("");
    ASSERT_TRUE(empty.ok());
    EXPECT_TRUE(empty->empty());
    auto trailing = ParseOptionString("a=1,");
    ASSERT_TRUE(trailing.ok());
    EXPECT_EQ(trailing->size(), 1u);
}

TEST(ParseOptionString, RejectsEmptyAndDuplicateKeys) {
    for (const char* bad : {",a=1", "=1", ",", "a,,b", "a=1,,,=2", "a=1,b=2,a=3", "help,help"}) {
        auto r = ParseOptionString(bad);
        EXPECT_FALSE(r.ok()) << "accepted '" << bad << "'";
    }
    auto dup = ParseOptionString("size=1,size=2");
    ASSERT_FALSE(dup.ok());
    EXPECT_NE(dup.status().message().find("'size'"), std::string::npos);
}

TEST(OptionSet, TypedTakes) {
    auto r = OptionSet::Parse("size=1.5G,l2=0x10,n=42,lazy_refcounts=on,x=no,bare");
    ASSERT_TRUE(r.ok());
    OptionSet o = std::move(*r);
    EXPECT_EQ(*o.TakeSize("size"), 3ull << 29);
    EXPECT_EQ(*o.TakeUint("l2"), 16u);
    EXPECT_EQ(*o.TakeUint("n"), 42u);
    EXPECT_TRUE(*o.TakeBool("lazy_refcounts"));
    EXPECT_FALSE(*o.TakeBool("x"));
    EXPECT_TRUE(*o.TakeBool("bare"));
    EXPECT_TRUE(o.RejectUnknown("qcow2").ok());
}

TEST(OptionSet, DefaultsAndMissing) {
    OptionSet o;
    EXPECT_EQ(*o.TakeSize("cluster_size", 65536), 65536u);
    EXPECT_TRUE(*o.TakeBool("x", true));
    EXPECT_EQ(*o.TakeUint("y", 7), 7u);
    EXPECT_FALSE(o.TakeSize("size").ok());
    EXPECT_FALSE(o.Take("z").has_value());
}

TEST(OptionSet, BadValuesNameTheParameter) {
    auto o = *OptionSet::Parse("size=12q,n=0x,b=maybe,u=18446744073709551616");
    auto s = o.TakeSize("size");
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("Parameter 'size'"), std::string::npos);
    EXPECT_FALSE(o.TakeUint("n").ok());
    auto b = o.TakeBool("b");
    ASSERT_FALSE(b.ok());
    EXPECT_NE(b.status().message().find("'b'"), std::string::npos);
    EXPECT_FALSE(o.TakeUint("u").ok());
}

TEST(OptionSet, TakeIsConsumingAndRejectUnknownListsLeftovers) {
    auto o = *OptionSet::Parse("a=1,foo=2,bar=3");
    EXPECT_EQ(o.Take("a"), std::optional<std::string>("1"));
    EXPECT_FALSE(o.Take("a").has_value());
    EXPECT_FALSE(o.Has("a"));
    EXPECT_TRUE(o.Has("foo"));
    Status st = o.RejectUnknown("qcow2 create");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.err(), EINVAL);
    EXPECT_EQ(st.message(), "qcow2 create: Invalid parameters 'foo', 'bar'");
    o.Take("bar");
    EXPECT_EQ(o.RejectUnknown("").message(), "Invalid parameter 'foo'");
}

TEST(OptionSet, BlockdevSyntaxWithNestedGroup) {
    auto r = OptionSet::Parse("driver=qcow2,node-name=disk0,file.driver=file,"
                              "file.filename=/tmp/a,,b.qcow2,file.locking=off");
    ASSERT_TRUE(r.ok());
    OptionSet o = std::move(*r);
    EXPECT_EQ(o.Take("driver"), std::optional<std::string>("qcow2"));
    EXPECT_EQ(o.Take("node-name"), std::optional<std::string>("disk0"));
    OptionSet file = o.TakeGroup("file");
    EXPECT_TRUE(o.RejectUnknown("blockdev").ok());
    EXPECT_EQ(file.Take("driver"), std::optional<std::string>("file"));
    EXPECT_EQ(file.Take("filename"), std::optional<std::string>("/tmp/a,b.qcow2"));
    EXPECT_FALSE(*file.TakeBool("locking"));
    EXPECT_TRUE(file.RejectUnknown("file").ok());
}

}  // namespace
}  // namespace qzns
