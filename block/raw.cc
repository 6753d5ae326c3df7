// The raw format: guest offset == file offset.
#include "block/raw.h"

#include <algorithm>
#include <vector>

namespace qzns {
namespace {

class RawImage final : public BlockDriver {
public:
    RawImage(std::unique_ptr<File> file, uint64_t size, bool write)
        : file_(std::move(file)), size_(size), write_(write) {}

    const char* format_name() const override { return "raw"; }
    uint64_t size() const override { return size_; }
    bool read_only() const override { return !write_; }
    AioMode aio_mode() const override { return file_->aio_mode(); }

    Status Read(uint64_t off, void* buf, uint64_t len) override {
        QZNS_TRY(Bounds(off, len));
        return file_->Pread(buf, len, off);
    }
    Status Write(uint64_t off, const void* buf, uint64_t len) override {
        QZNS_TRY(Writable());
        QZNS_TRY(Bounds(off, len));
        return file_->Pwrite(buf, len, off);
    }
    Status WriteZeroes(uint64_t off, uint64_t len, bool) override {
        QZNS_TRY(Writable());
        QZNS_TRY(Bounds(off, len));
        return file_->PunchHole(off, len);
    }
    Status Discard(uint64_t off, uint64_t len) override { return WriteZeroes(off, len, true); }
    Status Flush() override { return write_ ? file_->Sync() : Status::Ok(); }
    Result<BlockStatus> GetStatus(uint64_t off, uint64_t len) override {
        QZNS_TRY(Bounds(off, len));
        BlockStatus bs;
        bs.bytes = len;
        bs.allocated = bs.data = true;
        bs.host_offset = off;
        return bs;
    }
    Status Close() override { return Flush(); }
    bool TrySubmitMapped(FileIo* io, uint64_t off) override {
        if ((io->op == FileIo::Op::kWrite && !write_) || !Bounds(off, io->len).ok()) return false;
        io->off = off;
        file_->Submit(io);
        return true;
    }

private:
    Status Bounds(uint64_t off, uint64_t len) const {
        if (off > size_ || len > size_ - off) return Status::Error(EINVAL, "request beyond the end of the disk");
        return Status::Ok();
    }
    Status Writable() const {
        return write_ ? Status::Ok() : Status::Error(EROFS, "image is opened read-only");
    }

    std::unique_ptr<File> file_;
    uint64_t size_;
    bool write_;
};

}  // namespace

Result<std::unique_ptr<BlockDriver>> OpenRaw(std::unique_ptr<File> file, bool write) {
    QZNS_ASSIGN(uint64_t size, file->Size());
    return std::unique_ptr<BlockDriver>(std::make_unique<RawImage>(std::move(file), size, write));
}

}  // namespace qzns
