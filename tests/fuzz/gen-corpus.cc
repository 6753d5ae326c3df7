// Writes the seed corpora for the qcow2 fuzzers: small valid images (several cluster sizes and
// refcount widths, plain, zoned, with a backing file name, with data, zero and discarded
// clusters) for fuzz-qcow2-open, and a few operation scripts for fuzz-qcow2-ops.
// Usage: gen-corpus <open-dir> <ops-dir>
#include <cstdio>
#include <string>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"

using namespace qzns;
using namespace qzns::qcow2;

namespace {

bool Save(const std::string& path, const std::vector<uint8_t>& bytes) {
    FILE* f = fopen(path.c_str(), "wb");
    if (!f) return false;
    bool ok = fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    return fclose(f) == 0 && ok;
}

int MakeImage(const std::string& dir, const std::string& name, CreateOptions co, bool fill) {
    auto mem = NewMemFile();
    if (Status st = Create(BorrowFile(mem.get()), co); !st.ok()) {
        fprintf(stderr, "%s: %s\n", name.c_str(), st.message().c_str());
        return 1;
    }
    if (fill) {
        Image::OpenFlags fl;
        fl.write = true;
        auto img = Image::Open(BorrowFile(mem.get()), fl, nullptr);
        if (!img.ok()) return 1;
        std::vector<uint8_t> buf(3 * co.cluster_size / 2, 0x5a);
        bool ok = (*img)->Write(co.cluster_size / 2, buf.data(), buf.size()).ok() &&
                  (*img)->WriteZeroes(4ull * co.cluster_size, co.cluster_size, false).ok() &&
                  (*img)->WriteZeroes(5ull * co.cluster_size, co.cluster_size, true).ok() &&
                  (*img)->Write(7ull * co.cluster_size, buf.data(), 100).ok() &&
                  (*img)->Discard(7ull * co.cluster_size, co.cluster_size).ok() &&
                  (*img)->Close().ok();
        if (!ok) return 1;
    }
    auto size = mem->Size();
    std::vector<uint8_t> bytes(size.ok() ? *size : 0);
    if (!mem->Pread(bytes.data(), bytes.size(), 0).ok() || !Save(dir + "/" + name, bytes)) return 1;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <open-corpus-dir> <ops-corpus-dir>\n", argv[0]);
        return 2;
    }
    std::string open_dir = argv[1], ops_dir = argv[2];
    int bad = 0;
    for (uint32_t cs : {512u, 1024u, 4096u}) {
        for (uint32_t rb : {1u, 16u, 64u}) {
            CreateOptions co;
            co.size = 64ull * cs;
            co.cluster_size = cs;
            co.refcount_bits = rb;
            std::string base = "cs" + std::to_string(cs) + "-rc" + std::to_string(rb);
            bad += MakeImage(open_dir, base + "-empty", co, false);
            bad += MakeImage(open_dir, base + "-data", co, true);
        }
        CreateOptions z;
        z.cluster_size = cs;
        z.size = 16ull * 64 * 1024;
        ZonedGeometry g;
        g.zone_size = 64 * 1024;
        g.zone_capacity = 48 * 1024;
        g.nr_conv_zones = 1;
        g.max_open_zones = 2;
        g.zd_extension_size = 64;
        z.zoned = g;
        bad += MakeImage(open_dir, "zoned-cs" + std::to_string(cs), z, true);
        CreateOptions b;
        b.cluster_size = cs;
        b.size = 32ull * cs;
        b.backing_file = "base.qcow2";
        b.backing_format = "qcow2";
        bad += MakeImage(open_dir, "backing-cs" + std::to_string(cs), b, true);
    }
    // Operation scripts: config byte, then 6-byte records (kind, off16, len16, fill).
    const std::vector<std::vector<uint8_t>> scripts = {
        {0x00, 0, 1, 0, 0x10, 0, 7, 4, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0},
        {0x21, 0, 0, 1, 0, 4, 9, 3, 0, 1, 0, 2, 0, 4, 0, 0, 0, 0, 0, 7, 3, 0, 0, 2, 5},
        {0x83, 5, 1, 0, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 2, 0x55, 6, 0, 0, 0, 0, 0},
        {0x35, 1, 0, 0, 0xff, 0xff, 9, 2, 0, 2, 0, 3, 0, 3, 0, 1, 0, 8, 0, 7, 0, 0, 0, 8, 1},
        {0xb0, 0, 0x10, 0, 0, 0x30, 1, 5, 1, 0, 0, 0, 3, 7, 0x10, 0, 0, 0x30, 4},
    };
    for (size_t i = 0; i < scripts.size(); i++)
        bad += Save(ops_dir + "/script" + std::to_string(i), scripts[i]) ? 0 : 1;
    return bad ? 1 : 0;
}
