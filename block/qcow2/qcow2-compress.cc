// Compressed clusters (read only): raw deflate streams, as QEMU's qemu-img convert -c writes them.
#include <zlib.h>

#include <vector>

#include "block/qcow2/qcow2.h"
#include "block/qcow2/qcow2-entry.h"

namespace qzns::qcow2 {

Status Image::ReadCompressed(uint64_t l2_entry, uint8_t* cluster_buf) {
    CompressedExtent ce = CompressedExtentOf(l2_entry, cluster_bits_);
    QZNS_ASSIGN(uint64_t fsize, file_->Size());
    if (ce.offset >= fsize || ce.offset < cluster_size_)
        return Status::Error(EUCLEAN, "compressed cluster at " + std::to_string(ce.offset) +
                                          " lies outside the image file (image is corrupt)");
    uint64_t len = std::min<uint64_t>(ce.length, fsize - ce.offset);
    std::vector<uint8_t> in(len);
    QZNS_TRY(file_->Pread(in.data(), len, ce.offset));

    z_stream zs = {};
    // Negative window bits: a raw deflate stream without zlib header, 4 KiB window.
    if (inflateInit2(&zs, -12) != Z_OK) return Status::Error(ENOMEM, "zlib initialisation failed");
    zs.next_in = in.data();
    zs.avail_in = static_cast<uInt>(len);
    zs.next_out = cluster_buf;
    zs.avail_out = cluster_size_;
    int ret = inflate(&zs, Z_FINISH);
    bool full = zs.avail_out == 0;
    inflateEnd(&zs);
    // The stored length is rounded up to sectors, so trailing input is normal; a short output is not.
    if (!((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && full))
        return Status::Error(EIO, "compressed cluster at " + std::to_string(ce.offset) +
                                      " does not decompress to a full cluster (image is corrupt)");
    return Status::Ok();
}

}  // namespace qzns::qcow2
