// libFuzzer target for the daemon's QMP input: bytes from a client go through the session's
// framing (QmpInput: values back to back, resynchronisation after errors, the request size cap)
// into the daemon's real command table (RegisterQmpCommands) over real block nodes. Nothing a
// client sends may crash the daemon, buffer more than the cap, or produce a reply that is not
// one line holding one JSON object with "return" or "error".
//
// What the harness confines, and why: the commands run against a private temporary directory.
// blockdev-add sees every file name rewritten into that directory (names with '/' refused), so
// an input can open and modify the harness's own images but no other file; export types are
// stand-ins that do the node bookkeeping of a real export without opening sockets, listeners
// or socket files; `quit` (which signals the process) is replaced by a no-op.
//
// Input: byte 0 picks the size of the pieces the stream arrives in; the rest is the stream.
// QZNS_FUZZ_QMP_TRACE=1 prints every reply, to see what a crashing or seed input does.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "qapi/qmp-session.h"
#include "storage-daemon/block-nodes.h"
#include "storage-daemon/exports.h"
#include "storage-daemon/qmp-commands.h"

using namespace qzns;
using namespace qzns::daemon;

namespace {

struct Harness {
    std::string dir;
    std::vector<uint8_t> zoned_image;  // pristine bytes of dir/zns.qcow2
    bool dirty = true;                 // an input may have changed the images
};

std::vector<uint8_t> MakeZonedImage() {
    auto mem = NewMemFile();
    qcow2::CreateOptions co;
    co.cluster_size = 4096;
    co.size = 8ull * 64 * 1024;
    qcow2::ZonedGeometry g;
    g.zone_size = 64 * 1024;
    g.zone_capacity = 48 * 1024;
    g.nr_conv_zones = 1;
    g.max_open_zones = 2;
    co.zoned = g;
    if (Status st = qcow2::Create(BorrowFile(mem.get()), co); !st.ok()) {
        fprintf(stderr, "fuzz-qmp: cannot create the zoned image: %s\n", st.message().c_str());
        abort();
    }
    auto size = mem->Size();
    std::vector<uint8_t> bytes(size.ok() ? *size : 0);
    if (!mem->Pread(bytes.data(), bytes.size(), 0).ok()) abort();
    return bytes;
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
    FILE* f = fopen(path.c_str(), "wb");
    if (!f || fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || fclose(f) != 0) {
        fprintf(stderr, "fuzz-qmp: cannot write %s\n", path.c_str());
        abort();
    }
}

Harness& Get() {
    static Harness* h = [] {
        auto* h = new Harness();
        char tmpl[] = "/tmp/qzns-fuzz-qmp-XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        h->dir = tmpl;
        h->zoned_image = MakeZonedImage();
        atexit([] { std::filesystem::remove_all(Get().dir); });
        return h;
    }();
    return *h;
}

void RestoreImages(Harness& h) {
    if (!h.dirty) return;
    WriteFile(h.dir + "/zns.qcow2", h.zoned_image);
    WriteFile(h.dir + "/plain.raw", std::vector<uint8_t>(64 * 1024));
    h.dirty = false;
}

// Rewrites a file name value into the harness directory; false if it names another directory.
bool Confine(Json& v, const std::string& dir) {
    if (v.is_array() || v.is_object() || v.is_null()) return true;  // BlockNodes rejects these
    std::string name = v.is_string() ? v.as_string() : v.is_bool() ? (v.as_bool() ? "on" : "off") : v.Dump();
    if (name.find('/') != std::string::npos) return false;
    v = Json(dir + "/" + name);
    return true;
}

// Every place BlockNodes::AddJson finds a file name after flattening: file=, file.filename=
// and {"file": {"filename": ...}}.
bool ConfineBlockdevArgs(Json& args, const std::string& dir) {
    for (auto& [k, v] : args.object()) {
        if (k == "file.filename" && !Confine(v, dir)) return false;
        if (k != "file") continue;
        if (!v.is_object()) {
            if (!Confine(v, dir)) return false;
            continue;
        }
        for (auto& [fk, fv] : v.object())
            if (fk == "filename" && !Confine(fv, dir)) return false;
    }
    return true;
}

class StandInExport : public Export {
public:
    StandInExport(std::string id, std::string type, BlockNode* node)
        : id_(std::move(id)), type_(std::move(type)), node_(node) {
        node_->users++;
    }
    const std::string& id() const override { return id_; }
    const char* type() const override { return type_.c_str(); }
    const std::string& node_name() const override { return node_->node_name; }
    Json Describe() const override {
        Json j = Json::MakeObject();
        j.Set("id", id_).Set("type", type_).Set("node-name", node_->node_name);
        return j;
    }
    Status Stop() override {
        if (node_) node_->users--;
        node_ = nullptr;
        return Status::Ok();
    }

private:
    std::string id_, type_;
    BlockNode* node_;
};

ExportFactory StandIn(std::string type) {
    return [type](OptionSet o, ExportContext& ctx) -> Result<std::unique_ptr<Export>> {
        std::string id = o.Take("id").value_or("");
        auto node_name = o.Take("node-name");
        if (!node_name) return Status::Error(EINVAL, "--export: node-name is required");
        BlockNode* bn = ctx.nodes->Find(*node_name);
        if (!bn) return Status::Error(ENOENT, "--export: no block node named '" + *node_name + "'");
        return std::unique_ptr<Export>(new StandInExport(id, type, bn));
    };
}

void CheckReply(const std::string& line) {
    static const bool trace = getenv("QZNS_FUZZ_QMP_TRACE") != nullptr;
    if (trace) fprintf(stderr, "<- %s\n", line.c_str());
    if (line.find('\n') != std::string::npos) __builtin_trap();
    auto v = ParseJson(line);
    if (!v.ok() || !v->is_object() || (!v->get("return") && !v->get("error"))) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    static constexpr size_t kPieces[] = {1, 3, 64, 4096, SIZE_MAX};
    const size_t piece = kPieces[data[0] % 5];
    std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

    Harness& h = Get();
    RestoreImages(h);
    BlockNodes nodes;
    ExportContext ctx;
    ctx.nodes = &nodes;
    Exports exports(ctx);
    exports.RegisterType("nvme-tcp", StandIn("nvme-tcp"));
    exports.RegisterType("vfio-user", StandIn("vfio-user"));
    qmp::QmpDispatcher dispatcher;
    RegisterQmpCommands(dispatcher, nodes, exports);
    dispatcher.Register("blockdev-add", [&nodes, &h](const Json& a) -> qmp::CommandResult {
        Json args = a;
        if (!ConfineBlockdevArgs(args, h.dir))
            return qmp::QmpError{"GenericError", "fuzz harness: file names must not contain '/'"};
        h.dirty = true;
        Status st = nodes.AddJson(args);
        if (!st.ok()) return qmp::QmpError{"GenericError", st.message()};
        return Json::MakeObject();
    });
    dispatcher.Register("quit", [](const Json& a) -> qmp::CommandResult {
        if (a.size()) return qmp::QmpError{"GenericError", "Parameter '" + a.as_object().front().first + "' is unexpected"};
        return Json::MakeObject();
    });

    qmp::QmpSession session(dispatcher);
    while (!stream.empty()) {
        std::string_view chunk = stream.substr(0, piece);
        stream.remove_prefix(chunk.size());
        session.Receive(chunk, CheckReply);
        if (session.buffered() > qmp::kMaxRequestBytes + chunk.size()) __builtin_trap();
    }
    (void)exports.StopAll();
    (void)nodes.CloseAll();
    return 0;
}
