// QmpSession without sockets: framing of back-to-back values, resynchronisation after a bad
// request, the request size cap, and negotiation before commands.
#include "qapi/qmp-session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qzns::qmp {
namespace {

class QmpSessionTest : public ::testing::Test {
protected:
    QmpSessionTest() {
        dispatcher_.Register("echo", [](const Json& a) -> CommandResult { return a; });
    }
    std::vector<std::string> Feed(std::string_view bytes) {
        std::vector<std::string> out;
        session_.Receive(bytes, [&](const std::string& r) { out.push_back(r); });
        return out;
    }
    QmpDispatcher dispatcher_;
    QmpSession session_{dispatcher_};
};

TEST_F(QmpSessionTest, CommandsNeedNegotiationFirst) {
    auto r = Feed(R"({"execute": "echo"})");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(r[0].find("CommandNotFound"), std::string::npos) << r[0];
    r = Feed(R"({"execute": "qmp_capabilities"}{"execute": "echo", "arguments": {"a": 1}, "id": 3})");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0], R"({"return": {}})");
    EXPECT_EQ(r[1], R"({"return": {"a": 1}, "id": 3})");
    EXPECT_TRUE(session_.negotiated());
}

TEST_F(QmpSessionTest, RequestSplitAcrossReadsIsAnsweredOnceComplete) {
    Feed(R"({"execute": "qmp_capabilities"})");
    std::string req = R"({"execute": "echo", "arguments": {"n": 12345}})";
    for (size_t i = 0; i + 1 < req.size(); i++) EXPECT_TRUE(Feed(req.substr(i, 1)).empty()) << i;
    auto r = Feed(req.substr(req.size() - 1));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0], R"({"return": {"n": 12345}})");
}

TEST_F(QmpSessionTest, BadRequestIsAnsweredAndTheNextLineStillWorks) {
    Feed(R"({"execute": "qmp_capabilities"})");
    auto r = Feed("{\"execute\": ] more junk\n{\"execute\": \"echo\", \"id\": 1}\n");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_NE(r[0].find("JSON parse error"), std::string::npos) << r[0];
    EXPECT_EQ(r[1], R"({"return": {}, "id": 1})");
}

TEST_F(QmpSessionTest, OversizedRequestIsRefusedAndNotBuffered) {
    Feed(R"({"execute": "qmp_capabilities"})");
    std::string big = "[\"" + std::string(kMaxRequestBytes, 'x');
    auto r = Feed(big);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(r[0].find("too large"), std::string::npos) << r[0];
    EXPECT_EQ(session_.buffered(), 0u);
    // The rest of that line is dropped as it arrives, then the client is heard again.
    EXPECT_TRUE(Feed(std::string(kMaxRequestBytes, 'y')).empty());
    EXPECT_EQ(session_.buffered(), 0u);
    r = Feed("\"]\n{\"execute\": \"echo\"}");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0], R"({"return": {}})");
}

}  // namespace
}  // namespace qzns::qmp
