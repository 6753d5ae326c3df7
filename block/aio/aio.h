// Asynchronous file I/O: a request is submitted and completes later by a plain function pointer,
// so a request in flight costs no allocation and no thread. Two engines do the work: io_uring
// (liburing), and a pool of threads doing pread/pwrite for hosts where io_uring is unavailable
// (old kernels, seccomp profiles that forbid it). The engine is chosen when a file is opened.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "util/status.h"

namespace qzns {

enum class AioMode {
    kSync,     // no engine: requests run to completion in the submitting thread
    kThreads,  // a pool of threads doing blocking I/O
    kIoUring,  // io_uring, one ring and one completion thread per file
    kAuto,     // io_uring when the kernel allows it, else threads
};
const char* AioModeName(AioMode m);
// "sync", "threads", "io_uring", "auto".
Result<AioMode> ParseAioMode(const std::string& s);

// A task for TaskPool: intrusive, so queueing one allocates nothing.
struct PoolTask {
    void (*run)(PoolTask*) = nullptr;
    PoolTask* next = nullptr;  // the pool's
};

// Threads that run PoolTasks in FIFO order. For blocking work only (file I/O, metadata that
// must wait): callers never wait for the pool while holding a lock a task needs.
class TaskPool {
public:
    explicit TaskPool(unsigned threads);
    ~TaskPool();  // runs every queued task, then joins
    TaskPool(const TaskPool&) = delete;
    TaskPool& operator=(const TaskPool&) = delete;
    void Post(PoolTask* t);
    unsigned threads() const;

    struct State;

private:
    std::unique_ptr<State> st_;
};

// One file operation. The submitter owns it (and the buffer) until `done` runs.
struct FileIo {
    enum class Op : uint8_t { kRead, kWrite, kSync };
    Op op = Op::kRead;
    void* buf = nullptr;  // kWrite: only read
    uint64_t len = 0, off = 0;
    // Runs exactly once: the whole range was transferred (reads past EOF are zeros), or the
    // error. It runs on an engine thread (or in Submit for a file without one) and must not
    // block on storage: post blocking work to a TaskPool.
    void (*done)(FileIo* io, Status st) = nullptr;
    void* opaque = nullptr;

    // The file and engine's.
    int fd = -1;
    uint64_t progress = 0;
    const std::string* file_name = nullptr;
    PoolTask task;

    static FileIo* FromTask(PoolTask* t) {
        return reinterpret_cast<FileIo*>(reinterpret_cast<char*>(t) - offsetof(FileIo, task));
    }
};

class IoEngine {
public:
    virtual ~IoEngine() = default;  // no request may still be in flight
    virtual AioMode mode() const = 0;
    // io->fd, buf, len, off, op, done set; progress 0.
    virtual void Submit(FileIo* io) = 0;
};

// kAuto resolves here. kSync has no engine (returns null).
Result<std::unique_ptr<IoEngine>> NewIoEngine(AioMode mode);
Result<std::unique_ptr<IoEngine>> NewUringEngine();
std::unique_ptr<IoEngine> NewThreadEngine(unsigned threads);

// Moves what is left of io's range with pread/pwrite/fdatasync, blocking; the error names the file.
Status TransferBlocking(FileIo* io);
// The error of a failed transfer, as the blocking File methods word it.
Status FileIoError(const FileIo* io, int err);

}  // namespace qzns
