// Opening an image by name: format probing and the backing chain.
#include <cstring>

#include "block/block-driver.h"
#include "block/qcow2/qcow2.h"
#include "block/raw.h"

namespace qzns {
namespace {

constexpr int kMaxBackingDepth = 16;

std::string ResolveBacking(const std::string& image, const std::string& backing) {
    if (backing.empty() || backing[0] == '/') return backing;
    auto slash = image.rfind('/');
    if (slash == std::string::npos) return backing;
    return image.substr(0, slash + 1) + backing;
}

Result<std::unique_ptr<BlockDriver>> OpenChain(const std::string& path, const OpenOptions& opts, int depth) {
    if (depth > kMaxBackingDepth)
        return Status::Error(ELOOP, "backing chain deeper than " + std::to_string(kMaxBackingDepth) + " images");
    FileOpenFlags ff;
    ff.write = opts.write;
    ff.lock = opts.lock;
    ff.direct = opts.direct;
    ff.aio = depth == 0 ? opts.aio : AioMode::kSync;
    QZNS_ASSIGN(auto file, OpenPosixFile(path, ff));
    if (depth == 0 && opts.wrap_file) file = opts.wrap_file(std::move(file));
    std::string format = opts.format;
    if (format.empty()) {
        uint8_t magic[4] = {};
        QZNS_TRY(file->Pread(magic, 4, 0));
        format = load_be32(magic) == qcow2::kMagic ? "qcow2" : "raw";
    }
    if (format == "raw") return OpenRaw(std::move(file), opts.write);
    if (format != "qcow2")
        return Status::Error(EINVAL, "unknown image format '" + format + "' (qzns knows qcow2 and raw)");

    qcow2::Image::OpenFlags flags;
    flags.write = opts.write;
    flags.check_mode = opts.check_mode;
    QZNS_ASSIGN(auto img, qcow2::Image::Open(std::move(file), flags, nullptr));
    const std::string& bf = img->info().backing_file;
    if (!bf.empty() && !opts.no_backing) {
        OpenOptions bopts;
        bopts.lock = opts.lock;
        bopts.format = img->info().backing_format;
        auto backing = OpenChain(ResolveBacking(path, bf), bopts, depth + 1);
        if (!backing.ok()) return backing.status().Prefix("Could not open backing file '" + bf + "'");
        img->AttachBacking(std::move(backing).value());
    }
    return std::unique_ptr<BlockDriver>(std::move(img));
}

}  // namespace

Result<std::unique_ptr<BlockDriver>> OpenImage(const std::string& path, const OpenOptions& opts) {
    return OpenChain(path, opts, 0);
}

}  // namespace qzns
