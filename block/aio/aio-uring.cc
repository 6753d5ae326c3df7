// The io_uring engine: one ring per file. Any thread submits (the submission queue is guarded by
// a mutex held only to fill SQEs and enter the kernel without waiting); one completion thread
// reaps CQEs, finishes short transfers and runs the callbacks.
#include <liburing.h>

#include <cstring>
#include <thread>

#include "block/aio/aio.h"
#include "util/mutex.h"

// The kernel orders a request's submission before its completion, but ThreadSanitizer cannot
// see through the ring: tell it, or every request looks like a race on its FileIo.
#if defined(__SANITIZE_THREAD__)
#define QZNS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define QZNS_TSAN 1
#endif
#endif
#ifdef QZNS_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace qzns {
namespace {

constexpr unsigned kEntries = 256;

inline void SubmittedBefore([[maybe_unused]] void* io) {
#ifdef QZNS_TSAN
    __tsan_release(io);
#endif
}
inline void CompletedAfter([[maybe_unused]] void* io) {
#ifdef QZNS_TSAN
    __tsan_acquire(io);
#endif
}

class UringEngine final : public IoEngine {
public:
    ~UringEngine() override {
        {
            util::MutexLock lk(sq_mu_);
            io_uring_sqe* sqe = GetSqe();
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data(sqe, nullptr);  // the reaper's stop sign
            io_uring_submit(&ring_);
        }
        reaper_.join();
        io_uring_queue_exit(&ring_);
    }

    Status Init() {
        int r = io_uring_queue_init(kEntries, &ring_, 0);
        if (r < 0) return Status::Error(-r, std::string("io_uring is not available: ") + std::strerror(-r));
        reaper_ = std::thread([this] { Reap(); });
        return Status::Ok();
    }

    AioMode mode() const override { return AioMode::kIoUring; }

    void Submit(FileIo* io) override {
        util::MutexLock lk(sq_mu_);
        Prep(io);
        io_uring_submit(&ring_);
    }

private:
    io_uring_sqe* GetSqe() REQUIRES(sq_mu_) {
        io_uring_sqe* sqe;
        // A full SQ empties into the kernel on submit; completions never block it (NODROP).
        while (!(sqe = io_uring_get_sqe(&ring_))) io_uring_submit(&ring_);
        return sqe;
    }

    void Prep(FileIo* io) REQUIRES(sq_mu_) {
        io_uring_sqe* sqe = GetSqe();
        auto* p = static_cast<uint8_t*>(io->buf) + io->progress;
        auto left = static_cast<unsigned>(std::min<uint64_t>(io->len - io->progress, 1u << 30));
        uint64_t at = io->off + io->progress;
        switch (io->op) {
        case FileIo::Op::kRead: io_uring_prep_read(sqe, io->fd, p, left, at); break;
        case FileIo::Op::kWrite: io_uring_prep_write(sqe, io->fd, p, left, at); break;
        case FileIo::Op::kSync: io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC); break;
        }
        io_uring_sqe_set_data(sqe, io);
        SubmittedBefore(io);
    }

    void Resubmit(FileIo* io) {
        util::MutexLock lk(sq_mu_);
        Prep(io);
        io_uring_submit(&ring_);
    }

    void Reap() {
        for (;;) {
            io_uring_cqe* cqe;
            int r = io_uring_wait_cqe(&ring_, &cqe);
            if (r == -EINTR) continue;
            if (r < 0) {
                // Cannot happen with a valid ring; a reaper that quit would hang every request.
                std::fprintf(stderr, "qzns: io_uring wait failed: %s\n", std::strerror(-r));
                std::abort();
            }
            auto* io = static_cast<FileIo*>(io_uring_cqe_get_data(cqe));
            int res = cqe->res;
            io_uring_cqe_seen(&ring_, cqe);
            if (!io) return;
            CompletedAfter(io);
            Complete(io, res);
        }
    }

    void Complete(FileIo* io, int res) {
        if (res == -EINTR || res == -EAGAIN) return Resubmit(io);
        if (res < 0) return io->done(io, FileIoError(io, -res));
        if (io->op == FileIo::Op::kSync) return io->done(io, Status::Ok());
        if (res == 0) {
            if (io->op == FileIo::Op::kWrite) return io->done(io, FileIoError(io, EIO));
            std::memset(static_cast<uint8_t*>(io->buf) + io->progress, 0, io->len - io->progress);
            io->progress = io->len;  // EOF: a sparse image reads as zeros
        } else {
            io->progress += static_cast<uint64_t>(res);
        }
        if (io->progress < io->len) return Resubmit(io);
        io->done(io, Status::Ok());
    }

    util::Mutex sq_mu_;  // the submission side of ring_
    io_uring ring_{};
    std::thread reaper_;  // the only reader of the completion side
};

}  // namespace

Result<std::unique_ptr<IoEngine>> NewUringEngine() {
    auto e = std::make_unique<UringEngine>();
    QZNS_TRY(e->Init());
    return std::unique_ptr<IoEngine>(std::move(e));
}

}  // namespace qzns
