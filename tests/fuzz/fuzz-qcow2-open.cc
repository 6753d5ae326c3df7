// libFuzzer target: arbitrary bytes as a qcow2 image. Opening read-only, reading, block status,
// zone metadata and `check` must fail cleanly on any input, never crash, hang or read wildly.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "block/file.h"
#include "block/qcow2/qcow2.h"

using namespace qzns;
using namespace qzns::qcow2;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto file = NewMemFile("fuzz");
    if (size && !file->Pwrite(data, size, 0).ok()) return 0;
    Image::OpenFlags flags;  // read-only
    auto opened = Image::Open(std::move(file), flags, nullptr);
    if (!opened.ok()) return 0;
    Image& img = **opened;
    uint64_t disk = img.size();
    uint64_t cs = img.cluster_size();

    // Reads at the start, across the first cluster boundary, and at the end of the disk.
    std::vector<uint8_t> buf(std::min<uint64_t>(2 * cs, 1 << 20));
    auto read = [&](uint64_t off, uint64_t len) {
        if (off >= disk) return;
        len = std::min({len, disk - off, uint64_t{buf.size()}});
        (void)img.Read(off, buf.data(), len);
    };
    read(0, buf.size());
    read(cs - 1, 2);
    read(disk > cs ? disk - cs : 0, cs);
    read(disk / 2, 4096);

    // Block status over the disk, bounded so a huge sparse disk costs nothing.
    uint64_t pos = 0;
    for (int i = 0; i < 256 && pos < disk; i++) {
        auto bs = img.GetStatus(pos, disk - pos);
        if (!bs.ok() || bs->bytes == 0) break;
        if (bs->data && !bs->compressed) read(pos, std::min<uint64_t>(bs->bytes, 512));
        pos += bs->bytes;
    }

    if (img.zoned()) {
        uint32_t n = std::min<uint32_t>(img.zoned()->nr_zones, 64);
        std::vector<uint64_t> words(n);
        (void)img.ReadZoneWords(0, n, words.data());
        if (img.zoned()->zd_extension_size) {
            std::vector<uint8_t> zd(img.zoned()->zd_extension_size);
            (void)img.ReadZded(0, zd.data());
        }
    }
    (void)img.Check(RepairMode::kNone);
    return 0;
}
