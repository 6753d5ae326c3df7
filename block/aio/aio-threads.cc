// The thread-pool engine, and the blocking transfer both engines share semantics with.
#include <unistd.h>

#include <cstring>

#include "block/aio/aio.h"

namespace qzns {

const char* AioModeName(AioMode m) {
    switch (m) {
    case AioMode::kSync: return "sync";
    case AioMode::kThreads: return "threads";
    case AioMode::kIoUring: return "io_uring";
    case AioMode::kAuto: return "auto";
    }
    return "?";
}

Result<AioMode> ParseAioMode(const std::string& s) {
    for (AioMode m : {AioMode::kSync, AioMode::kThreads, AioMode::kIoUring, AioMode::kAuto})
        if (s == AioModeName(m)) return m;
    return Status::Error(EINVAL, "aio must be io_uring, threads, sync or auto, not '" + s + "'");
}

Status FileIoError(const FileIo* io, int err) {
    const char* what = io->op == FileIo::Op::kRead ? "read " : io->op == FileIo::Op::kWrite ? "write " : "fdatasync ";
    return Status::Error(err, what + (io->file_name ? *io->file_name : std::string("file")) + ": " + std::strerror(err));
}

Status TransferBlocking(FileIo* io) {
    if (io->op == FileIo::Op::kSync) return fdatasync(io->fd) < 0 ? FileIoError(io, errno) : Status::Ok();
    auto* p = static_cast<uint8_t*>(io->buf);
    while (io->progress < io->len) {
        uint64_t left = io->len - io->progress;
        auto at = static_cast<off_t>(io->off + io->progress);
        ssize_t n = io->op == FileIo::Op::kRead ? pread(io->fd, p + io->progress, left, at)
                                                : pwrite(io->fd, p + io->progress, left, at);
        if (n < 0) {
            if (errno == EINTR) continue;
            return FileIoError(io, errno);
        }
        if (n == 0) {
            if (io->op == FileIo::Op::kWrite) return FileIoError(io, EIO);
            std::memset(p + io->progress, 0, left);  // EOF: a sparse image reads as zeros
            io->progress = io->len;
            break;
        }
        io->progress += static_cast<uint64_t>(n);
    }
    return Status::Ok();
}

namespace {

class ThreadEngine final : public IoEngine {
public:
    explicit ThreadEngine(unsigned threads) : pool_(threads) {}
    AioMode mode() const override { return AioMode::kThreads; }
    void Submit(FileIo* io) override {
        io->task.run = [](PoolTask* t) {
            FileIo* f = FileIo::FromTask(t);
            Status st = TransferBlocking(f);
            f->done(f, std::move(st));
        };
        pool_.Post(&io->task);
    }

private:
    TaskPool pool_;  // last member: its destructor drains the queue while the engine still exists
};

}  // namespace

std::unique_ptr<IoEngine> NewThreadEngine(unsigned threads) { return std::make_unique<ThreadEngine>(threads); }

Result<std::unique_ptr<IoEngine>> NewIoEngine(AioMode mode) {
    switch (mode) {
    case AioMode::kSync: return std::unique_ptr<IoEngine>();
    case AioMode::kThreads: return NewThreadEngine(8);
    case AioMode::kIoUring: return NewUringEngine();
    case AioMode::kAuto: {
        auto u = NewUringEngine();
        if (u.ok()) return u;
        return NewThreadEngine(8);
    }
    }
    return Status::Error(EINVAL, "unknown aio mode");
}

}  // namespace qzns
