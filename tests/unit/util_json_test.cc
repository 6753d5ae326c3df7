#include <gtest/gtest.h>

#include "util/json.h"

namespace qzns {
namespace {

Json Parsed(std::string_view text) {
    auto r = ParseJson(text);
    EXPECT_TRUE(r.ok()) << text << ": " << r.status().message();
    return r.ok() ? *r : Json();
}

TEST(JsonWriter, QemuImgPrettyOutput) {
    Json info = Json::MakeObject();
    info.Set("virtual-size", uint64_t{1} << 30)
        .Set("filename", "test.qcow2")
        .Set("format", "qcow2")
        .Set("dirty-flag", false);
    Json specific = Json::MakeObject();
    specific.Set("type", "qcow2");
    specific.Set("data", Json::MakeObject().Set("compat", "1.1").Set("refcount-bits", 16));
    info.Set("format-specific", std::move(specific));
    info.Set("children", Json::MakeArray().Push(1).Push(Json::MakeObject()));
    EXPECT_EQ(info.Dump(4),
              "{\n"
              "    \"virtual-size\": 1073741824,\n"
              "    \"filename\": \"test.qcow2\",\n"
              "    \"format\": \"qcow2\",\n"
              "    \"dirty-flag\": false,\n"
              "    \"format-specific\": {\n"
              "        \"type\": \"qcow2\",\n"
              "        \"data\": {\n"
              "            \"compat\": \"1.1\",\n"
              "            \"refcount-bits\": 16\n"
              "        }\n"
              "    },\n"
              "    \"children\": [\n"
              "        1,\n"
              "        {}\n"
              "    ]\n"
              "}");
}

TEST(JsonWriter, CompactSingleLine) {
    Json j = Json::MakeObject();
    j.Set("return", Json::MakeObject());
    j.Set("list", Json::Array{Json(), true, -5, 2.5, "x"});
    EXPECT_EQ(j.Dump(), R"({"return": {}, "list": [null, true, -5, 2.5, "x"]})");
}

TEST(JsonWriter, SetReplacesInPlace) {
    Json j = Json::MakeObject();
    j.Set("a", 1).Set("b", 2).Set("a", 3);
    EXPECT_EQ(j.Dump(), R"({"a": 3, "b": 2})");
}

TEST(JsonWriter, EscapesStrings) {
    std::string s = "q\"b\\s/\n\t\r\b\f";
    s += '\x01';
    s += '\x1f';
    s += "\xc3\xa9\xe2\x82\xac";  // é€ pass through
    EXPECT_EQ(Json(s).Dump(), "\"q\\\"b\\\\s/\\n\\t\\r\\b\\f\\u0001\\u001f\xc3\xa9\xe2\x82\xac\"");
    EXPECT_EQ(Json(std::string("a\0b", 3)).Dump(), "\"a\\u0000b\"");
}

TEST(JsonWriter, NumbersKeepTheirKind) {
    EXPECT_EQ(Json(UINT64_MAX).Dump(), "18446744073709551615");
    EXPECT_EQ(Json(INT64_MIN).Dump(), "-9223372036854775808");
    EXPECT_EQ(Json(1.0).Dump(), "1.0");
    EXPECT_EQ(Json(0.1).Dump(), "0.1");
    EXPECT_EQ(Json(1e300).Dump(), "1e+300");
}

TEST(JsonParser, ParsesAllTypes) {
    Json j = Parsed(R"( {"execute": "query-block", "arguments": {"n": -3, "big": 18446744073709551615,
                         "f": 1.5e2, "ok": true, "no": false, "nil": null, "a": [1, [2], {}]}} )");
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.get("execute")->as_string(), "query-block");
    const Json* args = j.get("arguments");
    ASSERT_NE(args, nullptr);
    EXPECT_EQ(args->get("n")->as_int64(), std::optional<int64_t>(-3));
    EXPECT_FALSE(args->get("n")->as_uint64().has_value());
    EXPECT_EQ(args->get("big")->as_uint64(), std::optional<uint64_t>(UINT64_MAX));
    EXPECT_FALSE(args->get("big")->as_int64().has_value());
    EXPECT_EQ(args->get("f")->type(), Json::Type::kDouble);
    EXPECT_DOUBLE_EQ(args->get("f")->as_double(), 150.0);
    EXPECT_TRUE(args->get("ok")->as_bool());
    EXPECT_TRUE(args->get("no")->is_bool());
    EXPECT_TRUE(args->get("nil")->is_null());
    EXPECT_EQ(args->get("a")->size(), 3u);
    EXPECT_EQ(args->get("missing"), nullptr);
    EXPECT_EQ(j.get("execute")->get("x"), nullptr);  // not an object
    EXPECT_EQ(j.get("execute")->as_array().size(), 0u);  // wrong type is empty, not a crash
}

TEST(JsonParser, StringEscapesAndUnicode) {
    EXPECT_EQ(Parsed(R"("a\"\\\/\b\f\n\r\t")").as_string(), "a\"\\/\b\f\n\r\t");
    EXPECT_EQ(Parsed(R"("\u00e9\u20AC")").as_string(), "\xc3\xa9\xe2\x82\xac");
    EXPECT_EQ(Parsed(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");
    EXPECT_EQ(Parsed("\"\xf0\x9f\x98\x80\"").as_string(), "\xf0\x9f\x98\x80");
    EXPECT_EQ(Parsed(R"("\u0000")").as_string(), std::string(1, '\0'));
}

TEST(JsonParser, RoundTrip) {
    const char* text = R"({"a": [1, -2, 3.25, "x\u0001y", null, true], "b": {"c": {}}, "d": 18446744073709551615})";
    Json j = Parsed(text);
    EXPECT_EQ(j.Dump(), text);
    EXPECT_EQ(Parsed(j.Dump(4)), j);
}

TEST(JsonParser, RejectsInvalidText) {
    for (const char* bad : {"", " ", "{", "[1,]", "[1 2]", "{\"a\"}", "{\"a\":1,}", "{a:1}",
                            "'x'", "01", "-", "1.", ".5", "1e", "+1", "NaN", "Infinity",
                            "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
                            "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\nb\"", "[1] [2]",
                            "\xef\xbb\xbf{}", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
                            "\"\xf4\x90\x80\x80\"", "\"\x80\"", "\"\xe2\x82\"", "1e999",
                            "{\"a\":1,\"a\":2}"}) {
        auto r = ParseJson(bad);
        EXPECT_FALSE(r.ok()) << "accepted: " << bad;
        if (!r.ok()) {
            EXPECT_EQ(r.status().err(), EINVAL) << bad;
        }
    }
}

TEST(JsonParser, ErrorReportsByteOffset) {
    auto r = ParseJson(R"({"a": 1 "b": 2})");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "JSON parse error at byte 8: expected ',' or '}' in object");
}

TEST(JsonParser, DepthLimit) {
    std::string ok(64, '[');
    ok += std::string(64, ']');
    EXPECT_TRUE(ParseJson(ok).ok());
    std::string deep(65, '[');
    deep += std::string(65, ']');
    auto r = ParseJson(deep);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("nesting"), std::string::npos);
    // A huge unterminated nest must fail fast, not blow the stack.
    EXPECT_FALSE(ParseJson(std::string(1 << 20, '[')).ok());
}

TEST(JsonParser, ManyKeysDuplicateDetected) {
    std::string text = "{";
    for (int i = 0; i < 1000; i++) text += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ",";
    std::string good = text + "\"end\": 0}";
    Json j = Parsed(good);
    EXPECT_EQ(j.size(), 1001u);
    EXPECT_EQ(j.get("k999")->as_int64(), std::optional<int64_t>(999));
    auto dup = ParseJson(text + "\"k500\": 1}");
    ASSERT_FALSE(dup.ok());
    EXPECT_NE(dup.status().message().find("duplicate key 'k500'"), std::string::npos);
}

TEST(JsonParser, StreamPrefix) {
    std::string_view stream = R"( {"execute": "qmp_capabilities"}{"execute": "quit"} )";
    size_t used = 0;
    auto first = ParseJsonPrefix(stream, &used);
    ASSERT_TRUE(first.ok()) << first.status().message();
    EXPECT_EQ(first->get("execute")->as_string(), "qmp_capabilities");
    stream.remove_prefix(used);
    auto second = ParseJsonPrefix(stream, &used);
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(second->get("execute")->as_string(), "quit");
    auto partial = ParseJsonPrefix(R"({"execute": "qu)", &used);
    ASSERT_FALSE(partial.ok());
    EXPECT_EQ(partial.status().err(), EAGAIN);
    auto bad = ParseJsonPrefix(R"({"execute" 1})", &used);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().err(), EINVAL);
}

}  // namespace
}  // namespace qzns
