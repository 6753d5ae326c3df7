// File on a host file system: pread/pwrite/fdatasync, hole punching, and QEMU-compatible locks.
//
// Locking follows QEMU's raw-posix scheme so QEMU and qzns see each other: an open file
// description (OFD) holds a shared lock on byte 100+bit for every permission it uses and on byte
// 200+bit for every permission it refuses to share. Permission bits: consistent-read (0),
// write (1), write-unchanged (2), resize (3). A writer refuses to share write and resize; a
// reader refuses to share write. Before taking a permission we test the other side's byte.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "block/file.h"

namespace qzns {
namespace {

constexpr int kLockPermBase = 100;
constexpr int kLockSharedBase = 200;
enum PermBit { kConsistentRead = 0, kWrite = 1, kWriteUnchanged = 2, kResize = 3, kNumPerms = 4 };
const char* const kPermNames[kNumPerms] = {"consistent read", "write", "write unchanged", "resize"};

Status ErrnoStatus(int err, const std::string& what) {
    return Status::Error(err, what + ": " + std::strerror(err));
}

int LockByte(int fd, int byte, short type, bool test_only, short* holder_type) {
    struct flock fl = {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    if (fcntl(fd, test_only ? F_OFD_GETLK : F_OFD_SETLK, &fl) < 0) return -errno;
    if (holder_type) *holder_type = fl.l_type;
    return 0;
}

class PosixFile final : public File {
public:
    PosixFile(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
    ~PosixFile() override {
        engine_.reset();  // its threads go before the descriptors they use
        close(fd_);
        if (buffered_fd_ >= 0) close(buffered_fd_);
    }

    // Direct mode: aligned requests use fd_ (O_DIRECT), the others a buffered descriptor.
    Status EnableDirect(const std::string& path, bool write) {
        uint32_t mem = 4096, off = 4096;
#ifdef STATX_DIOALIGN
        struct statx stx = {};
        if (statx(fd_, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
            stx.stx_dio_mem_align && stx.stx_dio_offset_align) {
            mem = stx.stx_dio_mem_align;
            off = stx.stx_dio_offset_align;
        }
#endif
        dio_mem_mask_ = mem - 1;
        dio_off_mask_ = off - 1;
        buffered_fd_ = open(path.c_str(), O_CLOEXEC | (write ? O_RDWR : O_RDONLY));
        if (buffered_fd_ < 0) return ErrnoStatus(errno, "Could not open '" + path + "'");
        return Status::Ok();
    }

    Status Lock(bool write) {
        unsigned perm = 1u << kConsistentRead;
        unsigned unshared = 1u << kWrite;
        if (write) {
            perm |= (1u << kWrite) | (1u << kWriteUnchanged) | (1u << kResize);
            unshared |= 1u << kResize;
        }
        for (int bit = 0; bit < kNumPerms; bit++) {
            if (perm & (1u << bit)) {
                int r = LockByte(fd_, kLockPermBase + bit, F_RDLCK, false, nullptr);
                if (r < 0) return LockError(bit, false, -r);
            }
            if (unshared & (1u << bit)) {
                int r = LockByte(fd_, kLockSharedBase + bit, F_RDLCK, false, nullptr);
                if (r < 0) return LockError(bit, true, -r);
            }
        }
        for (int bit = 0; bit < kNumPerms; bit++) {
            short holder = F_UNLCK;
            // Someone refuses to share a permission we use, or uses one we refuse to share.
            if ((perm & (1u << bit)) &&
                (LockByte(fd_, kLockSharedBase + bit, F_WRLCK, true, &holder) < 0 || holder != F_UNLCK))
                return LockError(bit, false, EAGAIN);
            if ((unshared & (1u << bit)) &&
                (LockByte(fd_, kLockPermBase + bit, F_WRLCK, true, &holder) < 0 || holder != F_UNLCK))
                return LockError(bit, true, EAGAIN);
        }
        return Status::Ok();
    }

    Status Pread(void* buf, uint64_t len, uint64_t off) override {
        auto* p = static_cast<uint8_t*>(buf);
        while (len > 0) {
            ssize_t n = pread(FdFor(p, len, off), p, len, static_cast<off_t>(off));
            if (n < 0) {
                if (errno == EINTR) continue;
                return ErrnoStatus(errno, "read " + name_);
            }
            if (n == 0) {  // EOF: the rest of a sparse image reads as zeros
                std::memset(p, 0, len);
                return Status::Ok();
            }
            p += n;
            len -= static_cast<uint64_t>(n);
            off += static_cast<uint64_t>(n);
        }
        return Status::Ok();
    }
    Status Pwrite(const void* buf, uint64_t len, uint64_t off) override {
        auto* p = static_cast<const uint8_t*>(buf);
        while (len > 0) {
            ssize_t n = pwrite(FdFor(p, len, off), p, len, static_cast<off_t>(off));
            if (n < 0) {
                if (errno == EINTR) continue;
                return ErrnoStatus(errno, "write " + name_);
            }
            p += n;
            len -= static_cast<uint64_t>(n);
            off += static_cast<uint64_t>(n);
        }
        return Status::Ok();
    }
    Status Sync() override {
        if (fdatasync(fd_) < 0) return ErrnoStatus(errno, "fdatasync " + name_);
        return Status::Ok();
    }
    Result<uint64_t> Size() override {
        struct stat st;
        if (fstat(fd_, &st) < 0) return ErrnoStatus(errno, "stat " + name_);
        return static_cast<uint64_t>(st.st_size);
    }
    Status Truncate(uint64_t size) override {
        if (ftruncate(fd_, static_cast<off_t>(size)) < 0) return ErrnoStatus(errno, "truncate " + name_);
        return Status::Ok();
    }
    Status PunchHole(uint64_t off, uint64_t len) override {
        if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                      static_cast<off_t>(len)) == 0)
            return Status::Ok();
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            return ErrnoStatus(errno, "punch hole in " + name_);
        // The file system cannot deallocate: zeros keep the "reads as zeros" promise.
        std::vector<uint8_t> zeros(std::min<uint64_t>(len, 1 << 20), 0);
        while (len > 0) {
            uint64_t n = std::min<uint64_t>(len, zeros.size());
            QZNS_TRY(Pwrite(zeros.data(), n, off));
            off += n;
            len -= n;
        }
        return Status::Ok();
    }
    Result<bool> MayHoldData(uint64_t off, uint64_t len) override {
        off_t d = lseek(fd_, static_cast<off_t>(off), SEEK_DATA);
        if (d < 0) {
            if (errno == ENXIO) return false;  // no data at or after off
            if (errno == EINVAL || errno == EOPNOTSUPP) return true;  // the file system cannot say
            return ErrnoStatus(errno, "seek data in " + name_);
        }
        return static_cast<uint64_t>(d) < off + len;
    }
    Result<uint64_t> AllocatedBytes() override {
        struct stat st;
        if (fstat(fd_, &st) < 0) return ErrnoStatus(errno, "stat " + name_);
        return static_cast<uint64_t>(st.st_blocks) * 512;
    }
    const std::string& name() const override { return name_; }

    void Submit(FileIo* io) override {
        if (!engine_) return File::Submit(io);
        io->fd = io->op == FileIo::Op::kSync ? fd_ : FdFor(io->buf, io->len, io->off);
        io->progress = 0;
        io->file_name = &name_;
        engine_->Submit(io);
    }
    AioMode aio_mode() const override { return engine_ ? engine_->mode() : AioMode::kSync; }

    Status StartEngine(AioMode mode) {
        QZNS_ASSIGN(engine_, NewIoEngine(mode));
        return Status::Ok();
    }

private:
    int FdFor(const void* p, uint64_t len, uint64_t off) const {
        if (buffered_fd_ < 0) return fd_;
        bool aligned = !(reinterpret_cast<uintptr_t>(p) & dio_mem_mask_) && !((len | off) & dio_off_mask_);
        return aligned ? fd_ : buffered_fd_;
    }

    Status LockError(int bit, bool shared, int err) {
        std::string what = std::string(shared ? "Failed to get shared \"" : "Failed to get \"") +
                           kPermNames[bit] + "\" lock";
        if (err == EAGAIN || err == EACCES)
            return Status::Error(EAGAIN, what + " on " + name_ +
                                             ": is another process (QEMU, qemu-img, "
                                             "qzns-storage-daemon) using the image?");
        return ErrnoStatus(err, what + " on " + name_);
    }

    int fd_;
    int buffered_fd_ = -1;  // direct mode only
    uint64_t dio_mem_mask_ = 0, dio_off_mask_ = 0;
    std::string name_;
    // Requests in flight keep the file open: the owner drains them before destroying it.
    std::unique_ptr<IoEngine> engine_;
};

}  // namespace

Result<std::unique_ptr<File>> OpenPosixFile(const std::string& path, FileOpenFlags flags) {
    int oflags = O_CLOEXEC | (flags.write ? O_RDWR : O_RDONLY);
    if (flags.create) oflags |= O_CREAT;  // truncated below, only once the lock is ours
    if (flags.direct) oflags |= O_DIRECT;
    int fd = open(path.c_str(), oflags, 0644);
    if (fd < 0) return ErrnoStatus(errno, "Could not open '" + path + "'");
    auto file = std::make_unique<PosixFile>(fd, path);
    if (flags.lock) QZNS_TRY(file->Lock(flags.write));
    if (flags.create) QZNS_TRY(file->Truncate(0));
    if (flags.direct) QZNS_TRY(file->EnableDirect(path, flags.write));
    if (flags.aio != AioMode::kSync) QZNS_TRY(file->StartEngine(flags.aio));
    return std::unique_ptr<File>(std::move(file));
}

}  // namespace qzns
