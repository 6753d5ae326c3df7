// libFuzzer target for the JSON parser (util/json.cc), which reads QMP text from outside the
// daemon. Any input must parse or fail with an error, never crash; and what parses must survive
// the writer: Dump, in both layouts, parses back to an equal value, and dumping that again gives
// the same text (the writer is a function of the value). The streaming parser must agree with
// the whole-text parser on every prefix it accepts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "util/json.h"

using qzns::Json;

namespace {

void CheckRoundTrip(const Json& v) {
    for (int indent : {-1, 4}) {
        std::string text = v.Dump(indent);
        auto again = qzns::ParseJson(text);
        if (!again.ok() || !(*again == v) || again->Dump(indent) != text) __builtin_trap();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    // A small depth limit too, so the depth check is reached without deep inputs.
    for (int depth : {qzns::kJsonMaxDepth, 3}) {
        auto v = qzns::ParseJson(text, depth);
        if (v.ok()) CheckRoundTrip(*v);
    }
    size_t used = 0;
    auto p = qzns::ParseJsonPrefix(text, &used);
    if (p.ok()) {
        if (used == 0 || used > size) __builtin_trap();
        // The prefix the stream parser took is one complete value on its own.
        auto whole = qzns::ParseJson(text.substr(0, used));
        if (!whole.ok() || !(*whole == *p)) __builtin_trap();
        CheckRoundTrip(*p);
    }
    return 0;
}
